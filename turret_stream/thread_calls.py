"""The event loop's thread pool, counting the calls that run in it, so that a stopping
worker can wait for them before it closes the store.

Faust stops an agent by cancelling its task. An agent awaiting ``asyncio.to_thread`` (the
dimension owners' batch, the journey books' flush) is cancelled at once, but its thread
runs on, and closing the store then pulled it from under a write in progress (seen when a
busy worker was stopped for a broker recycle: "EdgeStore ... is closed", and the batch
retried one by one against the closed store). ``CountingExecutor`` counts each call from
its submission to its end, or to its cancellation before it started; ``settle`` waits
until none runs.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

# Poll interval of ``settle`` (a shutdown path: a few hundredths of a second do not matter).
SETTLE_POLL_S = 0.02

_installed: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, CountingExecutor] = (
    weakref.WeakKeyDictionary()
)


class CountingExecutor(ThreadPoolExecutor):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._count_lock = threading.Lock()
        self._running = 0

    @property
    def running(self) -> int:
        """Calls submitted and not yet ended (nor cancelled before they started)."""
        return self._running

    def _add(self, n: int) -> None:
        with self._count_lock:
            self._running += n

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        def call() -> Any:
            try:
                return fn(*args, **kwargs)
            finally:
                self._add(-1)

        self._add(1)
        try:
            future = super().submit(call)
        except BaseException:
            self._add(-1)
            raise
        # Cancelled before it ran: ``call`` never runs, so it never counts itself out.
        future.add_done_callback(lambda f: self._add(-1) if f.cancelled() else None)
        return future


def install(loop: asyncio.AbstractEventLoop) -> CountingExecutor:
    """Make a ``CountingExecutor`` the loop's default executor (``asyncio.to_thread``
    uses it), once per loop. Call it before the loop's first ``to_thread``: the default
    executor it replaces is dropped with its threads, and processes started from one of
    them with PR_SET_PDEATHSIG (the model pool's) would die with it."""
    executor = _installed.get(loop)
    if executor is None:
        executor = _installed[loop] = CountingExecutor(thread_name_prefix="asyncio")
        loop.set_default_executor(executor)
    return executor


async def settle(timeout_s: float) -> int:
    """Wait until no call runs in this loop's counting executor, for at most
    ``timeout_s``; returns how many still run (0 without one installed)."""
    executor = _installed.get(asyncio.get_running_loop())
    if executor is None:
        return 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while executor.running and loop.time() < deadline:
        await asyncio.sleep(SETTLE_POLL_S)
    return executor.running
