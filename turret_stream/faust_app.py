"""A Faust App whose consumers do not sit on empty fetches.

Faust creates its aiokafka consumer with ``fetch_max_wait_ms=1500`` (not configurable).
A Kafka broker answers a fetch as soon as data arrives, but tansu, the embedded broker,
holds every fetch for the whole wait: each hop between agents then cost up to 1.5 s
(measured: 0.5-1.4 s per message at 1500 ms, 2-100 ms at 100 ms). ``TurretApp`` uses a
transport whose consumer waits ``fetch_max_wait_ms`` instead.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka


def _transport_class(fetch_max_wait_ms: int) -> type[faust_aiokafka.Transport]:
    class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            # aiokafka hands this to its Fetcher when the consumer starts.
            consumer._fetch_max_wait_ms = fetch_max_wait_ms
            return consumer

    class ShortFetchConsumer(faust_aiokafka.Consumer):
        def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    class Transport(faust_aiokafka.Transport):
        Consumer = ShortFetchConsumer

    return Transport


class TurretApp(faust.App):
    def __init__(self, *args: Any, fetch_max_wait_ms: int = 100, **kwargs: Any) -> None:
        self._fetch_max_wait_ms = fetch_max_wait_ms
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> Any:
        transport_class = _transport_class(self._fetch_max_wait_ms)
        return transport_class(self.conf.broker_consumer, self)
