"""Which partition a key goes to, for agents that send one message for several keys."""

from __future__ import annotations

import faust


class KeyPartitions:
    """The partition the producer's own partitioner (``producer_partitioner``) gives a key
    on ``topic``: a batch message for several keys goes to their partition explicitly."""

    def __init__(self, app: faust.App, topic: faust.TopicT) -> None:
        self.app = app
        self.name = topic.get_topic_name()
        self._known = False

    async def __call__(self, key: bytes) -> int:
        if not self._known:
            # The partitioner needs the topic's metadata, which aiokafka loads on a topic's
            # first send; load it the way that send would.
            await self.app.producer._ensure_producer().partitions_for(self.name)
            self._known = True
        return self.app.producer.key_partition(self.name, key).partition
