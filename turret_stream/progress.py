"""How far `up`'s pipeline has got with the events this process accepted.

In `turret-stream up` the API counts the lag itself rather than ask the broker (the
worker, in this process or in its own, reports what it is done with): an accepted event
is *open* from its write to the events topic until the worker is done with it, i.e. the
embed agent has handled the delivery and the cluster agent has handled each of its texts
(or either stage put it in the dead-letter store). Two things read it:

- back-pressure: ``lag`` (open events) against ``pipeline.max_lag_events``;
- the journal: ``confirmed_seq`` is the highest journal sequence number below which
  nothing is open, so journal records up to it can be dropped once the store is flushed.

Reports about events this process did not accept (another API's, or a redelivery from an
external Kafka after a restart) are ignored. All methods run on the event loop.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

# How often ``drained`` looks at the lag (a stop's or a recycle's wait, not a hot path).
DRAIN_POLL_S = 0.05


class ProgressReports(Protocol):
    """What the worker's agents report about each event: ``PipelineProgress`` itself when
    the API shares the worker's process, a ``worker_link.ProgressReporter`` that sends the
    reports to the API's process otherwise."""

    def embedded(self, event_id: str, texts: int) -> None: ...

    def clustered(self, event_id: str) -> None: ...

    def dead_lettered(self, event_id: str, stage: str) -> None: ...


@dataclass
class _Open:
    deliveries: int = 0  # writes to the events topic not yet handled by the embed agent
    texts: int = 0  # texts sent on, not yet handled by the cluster agent
    seqs: list[int] = field(default_factory=list)
    # Counted as processed when done (not an event processed before, written again).
    counts: bool = True


class PipelineProgress:
    def __init__(self) -> None:
        self._open: dict[str, _Open] = {}
        self._heap: list[int] = []  # journal seqs of open events (lazily cleaned)
        self._done_seqs: set[int] = set()
        self._highest_seq = 0
        self.accepted = 0
        self.processed = 0
        self.dead_letters = 0
        self.texts_sent = 0
        self.texts_done = 0

    # -- API side -------------------------------------------------------------------------

    def opened(
        self, event_id: str, seq: int | None = None, *, accepted: bool = True, done: bool = False
    ) -> None:
        """An event is about to be written to the events topic (call before the write, so
        that the worker's report cannot come first). A replay after ``forget_open`` writes
        again what was counted as accepted (``accepted=False``), some of it processed
        already (``done=True``: not counted as processed twice)."""
        entry = self._open.get(event_id)
        if entry is None:
            entry = self._open[event_id] = _Open(counts=not done)
        elif not done:
            entry.counts = True
        entry.deliveries += 1
        if accepted:
            self.accepted += 1
        if seq is not None:
            entry.seqs.append(seq)
            heapq.heappush(self._heap, seq)
            self._highest_seq = max(self._highest_seq, seq)

    def forget_open(self) -> set[int]:
        """The worker and the broker were replaced (a broker recycle, ``broker_recycle.py``):
        nothing open will be reported any more. Forget it all; the caller writes the
        journal's unconfirmed records again, which opens them anew. Returns the journal
        sequence numbers of the events that were open (the others are processed)."""
        still_open = {seq for entry in self._open.values() if entry.counts for seq in entry.seqs}
        self._open.clear()
        self._heap.clear()
        self._done_seqs.clear()
        return still_open

    def abandoned(self, event_id: str) -> None:
        """The write failed (the client got a 503): stop waiting for the worker."""
        entry = self._open.get(event_id)
        if entry is not None:
            entry.deliveries -= 1
            self.accepted -= 1
            self._maybe_close(event_id, entry)

    # -- worker side ----------------------------------------------------------------------

    def embedded(self, event_id: str, texts: int) -> None:
        """The embed agent handled one delivery of the event and sent ``texts`` texts on."""
        entry = self._open.get(event_id)
        if entry is None:
            return
        entry.deliveries -= 1
        entry.texts += texts
        self.texts_sent += texts
        self._maybe_close(event_id, entry)

    def clustered(self, event_id: str) -> None:
        """The cluster agent handled one text of the event (stored, or skipped as seen)."""
        entry = self._open.get(event_id)
        if entry is None:
            return
        # May go below zero for a moment: a text can be handled before the embed agent's
        # report of it arrives.
        entry.texts -= 1
        self.texts_done += 1
        self._maybe_close(event_id, entry)

    def dead_lettered(self, event_id: str, stage: str) -> None:
        """One delivery (stage ``embed``) or one text (stage ``cluster``) of the event went
        to the dead-letter store instead."""
        self.dead_letters += 1
        if stage == "embed":
            self.embedded(event_id, 0)
        else:
            self.clustered(event_id)

    def _maybe_close(self, event_id: str, entry: _Open) -> None:
        if entry.deliveries <= 0 and entry.texts <= 0:
            del self._open[event_id]
            if entry.counts:
                self.processed += 1
            self._done_seqs.update(entry.seqs)

    # -- readers --------------------------------------------------------------------------

    @property
    def lag(self) -> int:
        """Events accepted by this process and not yet through the pipeline."""
        return len(self._open)

    async def drained(self, timeout_s: float, worker_alive: Callable[[], bool]) -> int:
        """Wait until nothing is open, for at most ``timeout_s``, or until the worker is
        gone; returns how many events are still open."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.lag and loop.time() < deadline and worker_alive():
            await asyncio.sleep(DRAIN_POLL_S)
        return self.lag

    def confirmed_seq(self) -> int:
        """Every journal record up to this sequence number is through the pipeline."""
        while self._heap and self._heap[0] in self._done_seqs:
            self._done_seqs.discard(heapq.heappop(self._heap))
        return self._heap[0] - 1 if self._heap else self._highest_seq

    def note_seq(self, seq: int) -> None:
        """The journal's position at start: nothing before it is open."""
        self._highest_seq = max(self._highest_seq, seq)
