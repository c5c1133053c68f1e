"""Is any worker alive? For an API that runs apart from the workers (/readyz).

Each worker sends a heartbeat to the workers topic every ``worker.liveness_interval_s``
(``agents/liveness.py``). The probe reads the newest message of that one-partition topic
and calls the workers alive when it is younger than ``worker.liveness_timeout_s``. The
answer is kept for a second, so a burst of health checks costs one read.
"""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from turret_stream.http.keys import WorkerProbe
from turret_stream.settings import Settings

# How long one answer is reused.
CACHE_S = 1.0


async def newest_heartbeat_age(settings: Settings, timeout: float = 3.0) -> float | None:
    """Seconds since the newest worker heartbeat; None when there is none."""
    partition = TopicPartition(settings.kafka.workers_topic, 0)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=settings.kafka.fetch_max_wait_ms,
    )
    await consumer.start()
    try:
        if partition.topic not in await consumer.topics():
            return None  # no worker has ever started
        consumer.assign([partition])
        end = (await consumer.end_offsets([partition]))[partition]
        if end == 0:
            return None
        consumer.seek(partition, end - 1)
        batch = await consumer.getmany(partition, timeout_ms=int(timeout * 1000), max_records=1)
        records = batch.get(partition, [])
        if not records:
            return None
        return max(0.0, time.time() - records[-1].timestamp / 1000.0)
    finally:
        await consumer.stop()


def heartbeat_probe(settings: Settings) -> WorkerProbe:
    """Ready when a worker's heartbeat is newer than ``worker.liveness_timeout_s``."""
    cached: list[tuple[float, bool]] = []

    async def probe() -> bool:
        now = time.monotonic()
        if cached and now - cached[0][0] < CACHE_S:
            return cached[0][1]
        try:
            age = await asyncio.wait_for(newest_heartbeat_age(settings), 5.0)
        except (TimeoutError, KafkaError, OSError):
            age = None
        alive = age is not None and age < settings.worker.liveness_timeout_s
        cached[:] = [(now, alive)]
        return alive

    return probe
