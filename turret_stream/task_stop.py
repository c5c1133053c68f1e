"""Stopping asyncio tasks that may miss a cancellation, in bounded time.

On Python 3.11, ``asyncio.wait_for`` returns its inner future's result when the
cancellation arrives as that future completes, so the cancellation is lost (fixed in
3.12). Libraries use it (aiokafka while it starts; ``getaddrinfo`` lookups used to), and
a task that lost one runs on: one ``cancel()`` and an unbounded wait then hang a shutdown.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable


async def cancel_until_done(
    tasks: Iterable[asyncio.Task], timeout_s: float, retry_s: float
) -> set[asyncio.Task]:
    """Cancel ``tasks`` again every ``retry_s`` until they have ended, for at most
    ``timeout_s``; the ones still running then (the caller says so and leaves them)."""
    pending = set(tasks)
    deadline = time.monotonic() + timeout_s
    while pending and time.monotonic() < deadline:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=retry_s)
    return pending
