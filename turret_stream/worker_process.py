"""`up`'s worker in a process of its own (``worker.separate_process``).

The process that runs `up` keeps the public port, /track, the journal, the producer and
the lag count (back-pressure); this child runs what holds the GIL for long: the Faust
agents, the in-process store (whose calls hold it up to 0.2 s) and the read API, which
the parent forwards every other route to on a private loopback port. So an accepted
request never waits for the worker's event loop or GIL (README, *Durability and
back-pressure*).

The child dies with its parent (PR_SET_PDEATHSIG, SIGKILL: after a kill -9 of `up` the
next `up` must find the store unlocked at once); it ignores Ctrl-C and SIGTERM, which
the parent receives and answers by draining first, then asking the child to stop over
the link. It runs at ``worker.process_nice`` (its model processes add ``model_nice``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import socket
import sys
from collections.abc import Awaitable
from typing import TypeVar

from turret_stream.errors import TurretError
from turret_stream.progress import PipelineProgress
from turret_stream.settings import Settings
from turret_stream.worker_link import (
    LINE_LIMIT,
    IngestLink,
    WorkerCancelled,
    WorkerGone,
    WorkerLink,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

# Longest wait, after asking it, for the worker process to stop (its Faust app has 15 s).
STOP_TIMEOUT_S = 30.0


class WorkerProcess:
    """The parent's handle on the worker process: start, link, exit, stop."""

    def __init__(self, settings: Settings, progress: PipelineProgress) -> None:
        self._settings = settings
        self._progress = progress
        self._process: multiprocessing.process.BaseProcess | None = None
        self.link: WorkerLink | None = None
        self.url = ""

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    async def start(self, *, prepare_only: bool = False) -> None:
        """Start the child (from this, the event loop's thread: PR_SET_PDEATHSIG follows
        the thread that started a process) and wait until its private API listens. With
        ``prepare_only``, until it has imported its modules and loaded the model, before
        it opens the store (which one process at a time may hold): ``proceed`` then lets
        it start. A broker recycle prepares the next worker while the current one runs."""
        ours, theirs = socket.socketpair()
        process = multiprocessing.get_context("spawn").Process(
            target=_child_main,
            args=(self._settings, theirs, os.getpid(), prepare_only),
            name="turret-worker",
            daemon=False,
        )
        process.start()
        theirs.close()
        self._process = process
        reader, writer = await asyncio.open_connection(sock=ours, limit=LINE_LIMIT)
        self.link = WorkerLink(
            reader, writer, self._progress, self._settings.worker.liveness_timeout_s
        )
        if prepare_only:
            await self._starting(self.link.wait_prepared())
        else:
            self.url = await self._starting(self.link.wait_ready())

    async def proceed(self) -> None:
        """Let a worker started with ``prepare_only`` open the store and start; returns
        once its private API listens."""
        assert self.link is not None
        self.link.go()
        self.url = await self._starting(self.link.wait_ready())

    async def _starting(self, message: Awaitable[T]) -> T:
        """The child's start message; WorkerStartError with its error if it exited."""
        try:
            return await message
        except WorkerGone as exc:
            await self._reap(5.0)
            raise WorkerStartError(f"the worker did not start: {exc}") from None

    def exit_description(self) -> str:
        """How the child ended, in words (for the one line `up` prints)."""
        code = self._process.exitcode if self._process else None
        if code is None:
            return "closed its link"
        if code < 0:
            return f"was killed by signal {-code} ({signal.Signals(-code).name})"
        return f"exited with status {code}"

    async def wait_exit(self, timeout: float) -> None:
        await self._reap(timeout)

    async def _reap(self, timeout: float) -> None:
        if self._process is not None:
            await asyncio.to_thread(self._process.join, timeout)

    async def stop(self) -> None:
        """Ask the child to stop, wait for it (killed past STOP_TIMEOUT_S)."""
        if self._process is None:
            return
        if self.link is not None:
            self.link.stop()
        await self._reap(STOP_TIMEOUT_S)
        if self._process.is_alive():
            log.warning("the worker process did not stop within %ss; killing it", STOP_TIMEOUT_S)
            self._process.kill()
            await self._reap(5.0)
        if self.link is not None:
            await self.link.close()


class WorkerStartError(TurretError):
    """The worker process could not start (its error, in one line)."""


def _die_with_parent(parent_pid: int) -> None:
    if sys.platform == "linux":
        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PDEATHSIG
    if os.getppid() != parent_pid:  # the parent died before the line above
        os._exit(1)


def _ignore(signum: int, frame: object) -> None:
    pass


def _child_main(
    settings: Settings, sock: socket.socket, parent_pid: int, prepare_only: bool = False
) -> None:
    _die_with_parent(parent_pid)
    # The parent handles both: it drains, then sends "stop" over the link. SIGTERM gets a
    # handler that does nothing rather than SIG_IGN, which the model processes would
    # inherit: their pool stops them, and they die with this process, by SIGTERM.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _ignore)
    if settings.worker.process_nice:
        os.nice(settings.worker.process_nice)
    from turret_stream.logging_setup import setup_logging

    setup_logging(settings)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(settings, sock, prepare_only))


async def _serve(settings: Settings, sock: socket.socket, prepare_only: bool) -> None:
    # Imported here: the parent does not need the worker's modules.
    from turret_stream.stack import running_worker_api

    reader, writer = await asyncio.open_connection(sock=sock, limit=LINE_LIMIT)
    link = IngestLink(reader, writer)
    try:
        before_store = link.prepared if prepare_only else None
        async with running_worker_api(settings, link.reporter, before_store) as (
            url,
            store,
            probe,
            pids,
        ):
            link.ready(url)
            await link.serve(store, probe, pids)
    except WorkerCancelled:
        pass  # a prepared worker the parent no longer needs
    except Exception as exc:
        # One line for the parent to print; a bug's trace in the log too.
        if not isinstance(exc, TurretError | OSError):
            log.exception("the worker failed")
        link.failed(str(exc) or type(exc).__name__)
    finally:
        await link.close()
