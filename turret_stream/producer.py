"""Durable writes of accepted events to the events topic.

The API answers 200 only after the broker acknowledged the write with ``acks=all``. The
producer is not idempotent (tansu has no InitProducerId), so a write retried after a
timeout may land twice: consumers deduplicate by ``event_id``, which a client makes stable
across its retries with an ``Idempotency-Key`` header.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from turret_stream.errors import BrokerUnavailable
from turret_stream.settings import KafkaSettings

log = logging.getLogger(__name__)


async def ensure_topic(bootstrap_servers: str, topic: str, partitions: int, replicas: int) -> None:
    """Create ``topic`` unless it exists (so it never gets a broker's auto-create defaults)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        if topic in await admin.list_topics():
            return
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics([NewTopic(topic, partitions, replicas)])
    finally:
        await admin.close()


class EventPublisher:
    """Owns the API process's Kafka producer. Starts lazily, so the API can come up (and
    answer 503) while the broker is still down."""

    def __init__(self, bootstrap_servers: str, settings: KafkaSettings) -> None:
        self._bootstrap = bootstrap_servers
        self._settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._topic_ready = False
        self._lock = asyncio.Lock()

    async def _ready_producer(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self._bootstrap,
                    acks="all",
                    enable_idempotence=False,
                    request_timeout_ms=int(self._settings.produce_timeout_s * 1000),
                )
                try:
                    await producer.start()
                except BaseException:
                    await producer.stop()
                    raise
                self._producer = producer
            if not self._topic_ready:
                s = self._settings
                await ensure_topic(
                    self._bootstrap, s.events_topic, s.partitions, s.replication_factor
                )
                self._topic_ready = True
            return self._producer

    async def _publish(self, key: bytes, value: bytes) -> None:
        producer = await self._ready_producer()
        delivered = await producer.send(self._settings.events_topic, value=value, key=key)
        await delivered

    async def publish(self, key: bytes, value: bytes) -> None:
        """Write one message and wait for ``acks=all``; BrokerUnavailable if not in time."""
        try:
            await asyncio.wait_for(self._publish(key, value), self._settings.produce_timeout_s)
        except (TimeoutError, KafkaError, OSError) as exc:
            # After an outage the broker may have lost the topic (tansu is in-memory):
            # check it again before the next write.
            self._topic_ready = False
            log.warning("event not written to Kafka: %r", exc)
            raise BrokerUnavailable(str(exc) or type(exc).__name__) from exc

    async def broker_reachable(self, timeout: float = 2.0) -> bool:
        try:
            producer = await asyncio.wait_for(self._ready_producer(), timeout)
            await asyncio.wait_for(producer.client.fetch_all_metadata(), timeout)
        except (TimeoutError, KafkaError, OSError):
            return False
        return True

    async def close(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()
