"""The embed agent embeds the next batch while the one before is still embedded or sent
(``worker.embed_batches_in_flight``), yet texts reach their dimension's owner in the order
their events arrived, and every event lands once."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from turret_stream.records import TrackedEvent, event_key
from turret_stream.stack import running_stack

from .conftest import make_settings, wait_until
from .kafka_offsets import _positions
from .test_pipeline import GROUPS

SHORT = GROUPS["card"]
# About 200 word pieces: many times the cost of a short text in the model.
LONG = " ".join(GROUPS["password"] * 4)


def _event(i: int, prompt: str) -> TrackedEvent:
    return TrackedEvent(
        event_id=f"evt_{i:03d}_{uuid.uuid4().hex[:8]}",
        project="acme",
        name="p",
        metadata={"prompt": prompt},
        session_id="one-session",
        user_id="u",
        received_at=time.time(),
    )


@pytest.mark.timeout(240)
@pytest.mark.parametrize("in_flight", [1, 3])
async def test_batches_in_flight_reach_the_owner_in_arrival_order(tmp_path, broker, in_flight):
    settings = make_settings(
        tmp_path / "data",
        broker.port,
        **{
            "dimensions.overrides": {"prompt": "text"},
            # A batch per event, two model processes: a short text taken after a long
            # one is embedded beside it and done first, so only the agent keeps them
            # in order.
            "embedding.batch_size": 1,
            "worker.embed_processes": 2,
            "worker.embed_batches_in_flight": in_flight,
        },
    )
    events = [_event(i, LONG if i % 2 == 0 else SHORT[i % len(SHORT)]) for i in range(24)]
    async with running_stack(settings, broker=False, worker=True, api=True) as stack:
        assigned: list[str] = []
        stack.topology.owners.listeners.append(lambda a: assigned.append(a.event_id))
        for event in events:  # one after another, as /track publishes them
            await stack.publisher.publish(
                event_key(event.project, event.session_id), event.dumps(), event.event_id
            )
        await wait_until(lambda: len(assigned) >= len(events), 120)
        assert assigned == [e.event_id for e in events]
        # Every event acknowledged: the group's committed offsets reach the topic's end
        # (Faust commits what was acknowledged every few seconds).
        async with asyncio.timeout(60):
            while not await _all_committed(settings):
                await asyncio.sleep(0.5)


async def _all_committed(settings) -> bool:
    topic = settings.kafka.events_topic
    rows = (await _positions(settings.bootstrap_servers, settings.worker.app_id, [topic]))[topic]
    return bool(rows) and all(committed == end for _, committed, end in rows)
