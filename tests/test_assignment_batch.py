"""The assignments topic carries a cluster batch's assignments of one partition per message
(AssignmentBatch), sent to the partition its sessions' keys hash to."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiokafka.partitioner import murmur2

from turret_stream.agents.sessions import unpack
from turret_stream.keys import KeyStore
from turret_stream.records import AssignmentBatch, TopicAssignment, event_key
from turret_stream.stack import running_stack

from .conftest import consume, decode, make_settings, wait_until


def _assignment(i: int, session: str = "s", segments: dict | None = None) -> TopicAssignment:
    return TopicAssignment(
        event_id=f"ev-{i}",
        project="acme",
        dimension="prompt",
        session_id=session,
        user_id=f"user-{session}",
        mc=i % 7,
        topic=f"t{i % 3}",
        received_at=1_700_000_000.0 + i,
        segments=segments if segments is not None else {"plan": "pro"},
        neutral=i % 5 == 0,
    )


def _partition(key: bytes, partitions: int) -> int:
    # Kafka's default partitioner (murmur2), as the Java client and aiokafka compute it.
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def test_split_keeps_order_and_every_field():
    assignments = [_assignment(i, f"s{i % 4}") for i in range(40)]
    messages = AssignmentBatch.split(assignments, 1_000_000)
    assert len(messages) == 1
    assert [a.asdict() for a in messages[0].assignments()] == [a.asdict() for a in assignments]


@pytest.mark.parametrize("value", ["plain " * 30, "ünïcode 🙂 " * 30, '"\\\n' * 60])
def test_split_stays_under_the_byte_bound(value):
    assignments = [_assignment(i, value, {"plan": value, "region": value}) for i in range(60)]
    bound = 16_000
    messages = AssignmentBatch.split(assignments, bound)
    assert len(messages) > 1
    assert all(len(m.dumps(serializer="json")) <= bound for m in messages)
    got = [a.event_id for m in messages for a in m.assignments()]
    assert got == [a.event_id for a in assignments]


def test_a_message_no_cluster_agent_wrote_is_skipped_not_fatal(caplog):
    good = AssignmentBatch.split([_assignment(1), _assignment(2)], 100_000)[0]
    broken = AssignmentBatch(items=[{"event_id": "x"}])
    messages = (good, {"some": "json"}, broken, _assignment(3))
    found = [a.event_id for m in messages for a in unpack(m)]
    assert found == ["ev-1", "ev-2", "ev-3"]
    assert caplog.text.count("skipped a malformed message on the assignments topic") == 2


async def test_sessions_travel_batched_to_their_own_partition(tmp_path, broker):
    settings = make_settings(tmp_path, broker.port)
    key = KeyStore(settings.keys_db_path).create("acme").secret
    sessions = [f"conv-{i}" for i in range(8)]
    async with running_stack(settings, broker=False, worker=True, api=True) as stack:
        moves: list = []
        stack.topology.transition_listeners.append(moves.append)
        placed: list = []
        stack.topology.owners.listeners.append(placed.append)
        async with aiohttp.ClientSession(headers={"X-API-Key": key}) as http:

            async def post(session: str, i: int) -> str:
                body = {
                    "name": "prompt",
                    "metadata": {"prompt": f"how do I reset my password, {session} try {i}"},
                    "session_id": session,
                }
                async with http.post(f"{stack.api_url}/track", json=body) as r:
                    return (await r.json())["event_id"]

            # At once: the cluster agent gets them in one or two batches.
            ids = await asyncio.gather(*(post(s, i) for i in range(3) for s in sessions))
            # Once they made a topic, the sessions' next events enter it: transitions.
            owner = stack.topology.owners.get("acme", "prompt")
            await wait_until(lambda: owner.model is not None and owner.model.topics(), 60)
            ids += await asyncio.gather(*(post(s, i) for i in range(3, 5) for s in sessions))
        # Every session has its row (whether its events found a topic yet or not).
        table = stack.topology.sessions
        await wait_until(lambda: all(f"acme:{s}" in table for s in sessions), timeout=60)
        await wait_until(lambda: len(placed) >= len(ids), timeout=30)
        found = await consume(settings, 1000, timeout=3.0, topic=settings.kafka.assignments_topic)
        told = await consume(settings, 1000, timeout=3.0, topic=settings.kafka.transitions_topic)
        rows = {k: dict(v) for k, v in stack.topology.sessions.items()}

        # A worker before AssignmentBatch sent each assignment alone: one left on the
        # topic by an upgrade is followed too; a malformed message before it is skipped.
        # (A topic of its own, so that following it is a transition the test can await.)
        lone = TopicAssignment(
            **{**placed[0].asdict(), "session_id": "old", "event_id": "e-old", "topic": "t-old"}
        )
        await (await stack.topology.assignments.send(key=b"acme:old", value={"items": [1]}))
        await (await stack.topology.assignments.send(key=b"acme:old", value=lone))
        await wait_until(lambda: any(m.session_id == "old" for m in moves), timeout=30)
    assert [(m.to_topic, m.step) for m in moves if m.session_id == "old"] == [("t-old", 1)]

    partitions = settings.kafka.partitions
    batches = [(m.partition, decode(m)) for m in found]
    assert all("items" in value for _, value in batches)
    items = [(partition, item) for partition, value in batches for item in value["items"]]
    assert sorted(item["event_id"] for _, item in items) == sorted(ids)  # each once
    for partition, item in items:
        assert partition == _partition(event_key("acme", item["session_id"]), partitions)
    assert any(len(value["items"]) > 1 for _, value in batches)  # not a message an event
    # The transitions travel the same way: a message of the sessions agent's is one
    # partition's moves (TransitionBatch), each session's in order, all of them once.
    told_batches = [(m.partition, decode(m)) for m in told]
    moved = [(partition, t) for partition, value in told_batches for t in value["items"]]
    assert sorted(t["event_id"] for _, t in moved) == sorted(
        m.event_id for m in moves if m.session_id in sessions
    )
    assert len(moved) >= len(sessions)  # each session entered a topic at least
    for partition, t in moved:
        assert partition == _partition(event_key("acme", t["session_id"]), partitions)
    assert any(len(value["items"]) > 1 for _, value in told_batches)
    for session in sessions:
        steps = [t["step"] for _, t in moved if t["session_id"] == session]
        assert steps == list(range(1, len(steps) + 1))
    # Each session's row follows its events, in the partition it was written from.
    for session in sessions:
        row = rows[f"acme:{session}"]
        assert row["prompt"]["last_at"] > 0
        assert row[""] == _partition(event_key("acme", session), partitions)
