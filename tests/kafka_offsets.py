"""Where a consumer group stands on a topic: committed offset vs end offset, per
partition (for explaining a failed durability test: which stage left events behind)."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.group import MemberAssignment


async def _members(bootstrap: str, group: str) -> list:
    """The group's state and each member's client id and assigned partitions."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        out: list = []
        for response in await admin.describe_consumer_groups([group]):
            for g in response.groups:
                out.append(("state", g[2]))
                for member in g[5]:
                    try:
                        assigned = MemberAssignment.decode(member[4]).assignment
                    except Exception as exc:  # an empty assignment while rebalancing
                        assigned = repr(exc)
                    out.append((member[0][-8:], member[1], assigned))
        return out
    finally:
        await admin.close()


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
    try:
        members = asyncio.run(asyncio.wait_for(_members(bootstrap, group), 20))
    except Exception as exc:
        members = [repr(exc)]
    return "; ".join(f"{t}: {rows}" for t, rows in found.items()) + f"; group: {members}"
