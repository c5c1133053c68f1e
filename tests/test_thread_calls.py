"""A stopping worker waits for its agents' thread calls before the store closes
(thread_calls.py): a call whose awaiting task was cancelled still counts until it ends,
and one cancelled before it started does not count at all."""

from __future__ import annotations

import asyncio
import contextlib
import threading

from turret_stream import thread_calls
from turret_stream.thread_calls import CountingExecutor


async def test_a_cancelled_tasks_thread_call_is_waited_for_until_it_ends():
    loop = asyncio.get_running_loop()
    executor = thread_calls.install(loop)
    assert thread_calls.install(loop) is executor  # once per loop
    release, entered = threading.Event(), threading.Event()

    def store_write() -> None:
        entered.set()
        release.wait(30)

    task = asyncio.create_task(asyncio.to_thread(store_write))
    await asyncio.to_thread(entered.wait, 30)
    task.cancel()  # what Faust does to an agent when the app stops
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert await thread_calls.settle(0.2) == 1  # the write still runs: not yet
    release.set()
    assert await thread_calls.settle(30) == 0


def test_a_call_cancelled_before_it_started_is_not_counted():
    executor = CountingExecutor(max_workers=1)
    release = threading.Event()
    first = executor.submit(release.wait, 30)
    queued = executor.submit(print, "never")
    assert executor.running == 2
    assert queued.cancel()  # still queued behind the first
    assert executor.running == 1
    release.set()
    first.result(30)
    executor.shutdown(wait=True)
    assert executor.running == 0


async def test_settle_without_a_counting_executor_returns_at_once():
    assert await asyncio.wait_for(thread_calls.settle(30), 1) == 0
