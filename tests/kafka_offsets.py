"""Where a consumer group stands on a topic: committed offset vs end offset, per
partition (for explaining a failed durability test: which stage left events behind)."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition


async def _positions(bootstrap: str, group: str, topics: list[str]) -> dict[str, list]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        out: dict[str, list] = {}
        for topic in topics:
            parts = consumer.partitions_for_topic(topic) or set()
            if not parts:
                await consumer._client.force_metadata_update()
                parts = consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            ends = await consumer.end_offsets(tps) if tps else {}
            rows = []
            for tp in tps:
                committed = await consumer.committed(tp)
                if ends.get(tp) or committed:
                    rows.append((tp.partition, committed, ends.get(tp)))
            out[topic] = rows
        return out
    finally:
        await consumer.stop()


def positions(bootstrap: str, group: str, topics: list[str]) -> str:
    """``topic: [(partition, committed, end), ...]`` for partitions holding records."""
    try:
        found = asyncio.run(asyncio.wait_for(_positions(bootstrap, group, topics), 20))
    except Exception as exc:  # a diagnostic must not hide the failure it explains
        return f"offsets unavailable: {exc!r}"
    return "; ".join(f"{t}: {rows}" for t, rows in found.items())
