"""The link between `up`'s two processes: the ingest process (the public port, /track,
the journal, the producer, the lag) and its worker process (the Faust agents, the store,
the read API). One Unix socket pair, one JSON message a line.

worker -> ingest::

    {"t": "prepared"}                                 started with ``prepare_only``: the
                                                     model is loaded; waits for "go" before
                                                     it opens the store
    {"t": "ready", "url": "http://127.0.0.1:PORT"}   the private read API listens
    {"t": "failed", "error": "..."}                  the worker could not start
    {"t": "progress", "ops": [["e", id, texts], ["c", id], ["d", id, stage], ...]}
    {"t": "status", "running": true}                 every STATUS_INTERVAL_S
    {"t": "reply", "id": N, "result": ..., "error": null}

ingest -> worker::

    {"t": "go"}                                      a prepared worker may open the store
    {"t": "call", "id": N, "op": "written_since_flush" | "flush", "names": [...] | null}
    {"t": "stop"}

Progress reports are batched (``ProgressReporter``): the agents report each event, the
ingest process applies them to its ``PipelineProgress`` in one go per batch. A flush asked
for after a report arrived runs after the store writes that report describes (they happen
before the report is made, in the worker's one event loop), which is what the journal
checkpoint relies on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from turret_stream.errors import TurretError
from turret_stream.progress import PipelineProgress
from turret_stream.storage import VectorStore

log = logging.getLogger(__name__)

# Longest line on the link (a progress batch of tens of thousands of reports fits).
LINE_LIMIT = 64 * 1024 * 1024
STATUS_INTERVAL_S = 1.0
# Reports wait at most this long to be sent together.
REPORT_DELAY_S = 0.02


class WorkerGone(Exception):
    """The worker process closed the link (it died or is stopping)."""


class WorkerCancelled(TurretError):
    """A prepared worker was told to stop before it started."""


def _send(writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
    writer.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")


async def _receive(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    """The next message; None when the other side is gone."""
    try:
        line = await reader.readline()
    except (ConnectionError, asyncio.IncompleteReadError):
        return None
    if not line:
        return None
    return json.loads(line)


class WorkerLink:
    """The ingest process's end: applies the worker's progress reports to ``progress``,
    knows whether the worker runs, and asks it to flush the store (the journal
    checkpoint)."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        progress: PipelineProgress,
        status_timeout_s: float,
    ) -> None:
        self._reader, self._writer = reader, writer
        self._progress = progress
        self._status_timeout_s = status_timeout_s
        self._running = False
        self._status_at = 0.0
        self._calls: dict[int, asyncio.Future[Any]] = {}
        # The worker's model processes, as its last status said (/metrics).
        self.model_pids: list[int] = []
        self._next_id = 0
        self._task: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()

    async def _starting(self, expected: str) -> dict[str, Any]:
        message = await _receive(self._reader)
        if message is None or message.get("t") == "failed":
            self.closed.set()
            if message is None:
                raise WorkerGone("the worker process exited while starting")
            raise WorkerGone(str(message.get("error")))
        assert message.get("t") == expected, message
        return message

    async def wait_prepared(self) -> None:
        """Until a worker started with ``prepare_only`` has loaded the model and waits
        for ``go``; WorkerGone with its error when it could not."""
        await self._starting("prepared")

    def go(self) -> None:
        """Let a prepared worker open the store and start."""
        _send(self._writer, {"t": "go"})

    async def wait_ready(self) -> str:
        """The worker's private API URL once it has started; WorkerGone with its error
        when it could not."""
        message = await self._starting("ready")
        self._running, self._status_at = True, time.monotonic()
        self._task = asyncio.create_task(self._read(), name="worker-link")
        return str(message["url"])

    async def _read(self) -> None:
        try:
            while (message := await _receive(self._reader)) is not None:
                kind = message.get("t")
                if kind == "progress":
                    self._apply(message["ops"])
                elif kind == "status":
                    self._running, self._status_at = bool(message["running"]), time.monotonic()
                    self.model_pids = [int(p) for p in message.get("model_pids") or []]
                elif kind == "reply":
                    future = self._calls.pop(message["id"], None)
                    if future is not None and not future.done():
                        if message.get("error"):
                            future.set_exception(RuntimeError(message["error"]))
                        else:
                            future.set_result(message.get("result"))
        finally:
            self._running = False
            self.closed.set()
            for future in self._calls.values():
                if not future.done():
                    future.set_exception(WorkerGone("the worker process is gone"))
            self._calls.clear()

    def _apply(self, ops: list[list[Any]]) -> None:
        progress = self._progress
        for op in ops:
            if op[0] == "e":
                progress.embedded(op[1], op[2])
            elif op[0] == "c":
                progress.clustered(op[1])
            else:
                progress.dead_lettered(op[1], op[2])

    @property
    def alive(self) -> bool:
        return not self.closed.is_set()

    async def running(self) -> bool:
        """The worker's Faust app runs and said so recently (/readyz)."""
        fresh = time.monotonic() - self._status_at < self._status_timeout_s
        return self.alive and self._running and fresh

    async def _call(self, op: str, names: list[str] | None = None) -> Any:
        if not self.alive:
            raise WorkerGone("the worker process is gone")
        self._next_id += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._calls[self._next_id] = future
        _send(self._writer, {"t": "call", "id": self._next_id, "op": op, "names": names})
        return await future

    async def written_since_flush(self) -> list[str]:
        return list(await self._call("written_since_flush"))

    async def flush(self, names: list[str] | None = None) -> None:
        await self._call("flush", names)

    def stop(self) -> None:
        """Ask the worker to stop (it closes the link when it has)."""
        if self.alive and not self._writer.is_closing():
            _send(self._writer, {"t": "stop"})

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._writer.close()


class ProgressReporter:
    """The worker's end of the progress reports (``progress.ProgressReports``): the
    agents' calls are batched and sent within ``REPORT_DELAY_S``."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._ops: list[list[Any]] = []
        self._scheduled = False

    def embedded(self, event_id: str, texts: int) -> None:
        self._add(["e", event_id, texts])

    def clustered(self, event_id: str) -> None:
        self._add(["c", event_id])

    def dead_lettered(self, event_id: str, stage: str) -> None:
        self._add(["d", event_id, stage])

    def _add(self, op: list[Any]) -> None:
        self._ops.append(op)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_later(REPORT_DELAY_S, self.send)

    def send(self) -> None:
        self._scheduled = False
        if self._ops and not self._writer.is_closing():
            ops, self._ops = self._ops, []
            _send(self._writer, {"t": "progress", "ops": ops})


class IngestLink:
    """The worker process's end: says when it is ready (or why it failed), reports its
    status, and answers the ingest process's flush calls until asked to stop or until
    the ingest process is gone."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer
        self.reporter = ProgressReporter(writer)

    def ready(self, url: str) -> None:
        _send(self._writer, {"t": "ready", "url": url})

    async def prepared(self) -> None:
        """Say the model is loaded, then wait for ``go``; WorkerCancelled when told to
        stop instead, or when the ingest process is gone."""
        _send(self._writer, {"t": "prepared"})
        message = await _receive(self._reader)
        if message is None or message.get("t") != "go":
            raise WorkerCancelled("stopped before it opened the store")

    def failed(self, error: str) -> None:
        _send(self._writer, {"t": "failed", "error": error})

    async def serve(
        self,
        store: VectorStore,
        running: Callable[[], Awaitable[bool]],
        model_pids: Callable[[], list[int]] = list,
    ) -> None:
        """Until a stop message, or the ingest process closed the link. Each status
        report also names the model processes (``model_pids``), for the ingest's /metrics."""
        status = asyncio.create_task(self._report_status(running, model_pids))
        try:
            while (message := await _receive(self._reader)) is not None:
                if message.get("t") == "stop":
                    return
                if message.get("t") == "call":
                    await self._answer(store, message)
            log.warning("the ingest process closed the link; stopping the worker")
        finally:
            status.cancel()
            self.reporter.send()

    async def _answer(self, store: VectorStore, message: dict[str, Any]) -> None:
        # Reports made before the call go out before its reply.
        self.reporter.send()
        result: Any = None
        error = None
        try:
            if message["op"] == "written_since_flush":
                result = await asyncio.to_thread(store.written_since_flush)
            elif message["op"] == "flush":
                await asyncio.to_thread(store.flush, message.get("names"))
            else:
                error = f"unknown call {message['op']!r}"
        except Exception as exc:  # reported to the caller, which logs and retries later
            error = f"{type(exc).__name__}: {exc}"
        _send(self._writer, {"t": "reply", "id": message["id"], "result": result, "error": error})

    async def _report_status(
        self, running: Callable[[], Awaitable[bool]], model_pids: Callable[[], list[int]]
    ) -> None:
        while True:
            report = {"t": "status", "running": await running(), "model_pids": model_pids()}
            _send(self._writer, report)
            await asyncio.sleep(STATUS_INTERVAL_S)

    async def close(self) -> None:
        self.reporter.send()
        with contextlib.suppress(ConnectionError):
            await self._writer.drain()
        self._writer.close()
