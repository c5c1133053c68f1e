"""The journal checkpoint of `up` (stack.py) around /track traffic: it flushes the store and
confirms the journal in a quiet moment, never later than `pipeline.checkpoint_max_delay_s`
under constant traffic, and at once on stop. Real journal, real edge store."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from turret_stream.journal import Journal
from turret_stream.producer import EventPublisher
from turret_stream.progress import PipelineProgress
from turret_stream.settings import Settings
from turret_stream.stack import RunningStack, _checkpoint, _start_store_flushes
from turret_stream.storage import Point, open_store


@pytest.fixture
async def stack(tmp_path):
    """A stack whose worker is done with three journaled events, one of them in the store."""
    settings = Settings(data_dir=tmp_path, pipeline={"checkpoint_quiet_s": 0.2})
    store = open_store(settings)
    store.create_collection("c", 4)
    journal = Journal(settings.journal_path)
    journal.open()
    progress = PipelineProgress()
    for i in range(3):
        seq = await journal.append(f"evt_{i}", b"k", b"v")
        progress.opened(f"evt_{i}", seq)
        progress.embedded(f"evt_{i}", 1)
        progress.clustered(f"evt_{i}")
    store.upsert("c", [Point("p", [1.0, 0.0, 0.0, 0.0], {})])
    publisher = EventPublisher("127.0.0.1:1", settings.kafka, pipeline=settings.pipeline)
    running = RunningStack(
        settings, store=store, journal=journal, progress=progress, publisher=publisher
    )
    yield running
    await journal.close()
    store.close()


async def _traffic(stack: RunningStack) -> None:
    """/track requests every 50 ms (what check_capacity records of each), until cancelled."""
    publisher = stack.publisher
    while True:
        publisher.check_capacity()
        await asyncio.sleep(0.05)


async def test_checkpoint_waits_for_a_quiet_moment_then_confirms(stack):
    traffic = asyncio.create_task(_traffic(stack))
    checkpoint = asyncio.create_task(_checkpoint(stack, asyncio.Event()))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(checkpoint), 1.0)
    assert stack.journal.confirmed == 0  # nothing flushed or confirmed while /track is busy
    traffic.cancel()
    await asyncio.wait_for(checkpoint, 30)
    assert stack.journal.confirmed == 3


async def test_checkpoint_under_constant_traffic_confirms_after_the_max_delay(stack):
    pipeline = stack.settings.pipeline.model_copy(update={"checkpoint_max_delay_s": 0.5})
    stack.settings = stack.settings.model_copy(update={"pipeline": pipeline})
    traffic = asyncio.create_task(_traffic(stack))
    try:
        await asyncio.wait_for(_checkpoint(stack, asyncio.Event()), 30)
    finally:
        traffic.cancel()
    assert stack.journal.confirmed == 3


async def test_checkpoint_on_stop_does_not_wait(stack):
    traffic = asyncio.create_task(_traffic(stack))
    stop = asyncio.Event()
    stop.set()
    try:
        await asyncio.wait_for(_checkpoint(stack, stop), 30)
    finally:
        traffic.cancel()
    assert stack.journal.confirmed == 3


async def test_without_a_journal_the_store_is_still_flushed_while_running(tmp_path):
    """`journal_enabled: false` or a separate `worker`: no checkpoint confirms anything,
    but the in-process store, which holds unflushed writes in memory, is flushed every
    `pipeline.checkpoint_interval_s` all the same."""
    settings = Settings(data_dir=tmp_path, pipeline={"checkpoint_interval_s": 0.05})
    store = open_store(settings)
    store.create_collection("c", 4)
    store.flush()
    running = RunningStack(settings, store=store)
    flushed = asyncio.Event()
    flush = store.flush

    def flush_and_tell(collections=None):
        flush(collections)
        if not store.written_since_flush():
            flushed.set()

    store.flush = flush_and_tell
    async with contextlib.AsyncExitStack() as exits:
        _start_store_flushes(running, exits)
        store.upsert("c", [Point("p", [1.0, 0.0, 0.0, 0.0], {})])
        assert store.written_since_flush() == ["c"]
        await asyncio.wait_for(flushed.wait(), 10)
    assert store.written_since_flush() == []
    store.close()
