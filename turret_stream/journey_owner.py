"""The sessions actor's journey books: feeds each assignment to its dimension's book on
the assignment's partition, keeps the books under the newest topic map, and writes what
changed to the store (``journey_store``) for the read side.

Per (partition, dimension) one ``JourneyBook`` (``journey_book``). Events arrive in order
per session (the assignments topic is keyed by session); one that does not come after
the session's last event (a replay after a restart, a late event) makes the owner
rebuild that session's compact path from its stored events, so a replay never counts
twice and a late event lands in its place. A session's first event in a process rebuilds
it from the store too (one filtered read per session and process, as the live actor's
bootstrap does), which brings back events whose assignments were lost with the embedded
broker's in-memory log.

When the dimension's topic map changes (merge, split, neutral flag, late topic), new
events are derived under the new map at once and every older session is re-derived in
batches (``rederive``; logged with its duration), at most every
``journeys.rederive_interval_s``. Until then old sessions keep the journeys of the map
they were last derived under; ``caught_up`` says when all are derived under the newest.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from turret_stream.catalog import DimensionNames, dimension_names
from turret_stream.clustering.topic_map import TopicMap, TopicMapReader
from turret_stream.journey_book import JourneyBook, SessionRuns, hour_of
from turret_stream.journey_store import Commit, JourneyStore
from turret_stream.journeys import JourneyEvent
from turret_stream.records import TopicAssignment
from turret_stream.settings import JourneySettings
from turret_stream.storage import Filter, VectorStore

log = logging.getLogger(__name__)
# The most moved micro-clusters a re-derivation filters the stored sessions by.
MOVED_FILTER_MAX = 1024


def _version_text(version: Any) -> str:
    return ".".join(str(v) for v in version) if isinstance(version, tuple) else str(version)


@dataclass
class _Slot:
    names: DimensionNames
    partition: int
    book: JourneyBook
    topic_map: TopicMap
    checked_at: float = 0.0
    seq: int = 0
    flushed_at: float = 0.0
    pending: bool = False
    rederived_at: float = float("-inf")
    rederive_took: float = 0.0
    stale: bool = False
    written: int = 0  # the number of the last write (journey_store: commits)
    # The map the book's contributions were derived under, when known: a change is then
    # matched against it (``TopicMap.moved_since``) and only the sessions through a moved
    # micro-cluster are re-derived. None (restored under a map no longer stored): all.
    derived_map: TopicMap | None = None
    rederive_read: int = 0  # stored sessions read back by the last re-derivation
    # The seq each cell was last written at by this slot: its next write carries what
    # changed since (``JourneyStore.write``'s deltas). Unknown after a restore.
    cell_seqs: dict[Any, int] = field(default_factory=dict)


@dataclass
class JourneyOwner:
    store: VectorStore
    min_switch_events: int
    neutral_topics: bool = True
    max_segment_keys: int = 256
    flush_interval_s: float = 1.0
    rederive_interval_s: float = 10.0
    map_check_s: float = 0.5
    # Sessions idle this long (event time) leave memory once written; None: never.
    idle_after_s: float | None = None
    slots: dict[tuple[int, str], _Slot] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rows = JourneyStore(self.store)
        self.maps = TopicMapReader(self.store)
        # The agent (in a thread), the timer and the commit hook (in the event loop)
        # take turns on the books.
        self.lock = threading.RLock()

    # -- per event ----------------------------------------------------------------------

    def _neutral(self, topic_map: TopicMap) -> frozenset[str]:
        return topic_map.neutral if self.neutral_topics else frozenset()

    def _slot(self, partition: int, names: DimensionNames) -> _Slot:
        slot = self.slots.get((partition, names.slug))
        if slot is None:
            slot = self._restore(partition, names)
            self.slots[(partition, names.slug)] = slot
        return slot

    def _restore(self, partition: int, names: DimensionNames) -> _Slot:
        """The partition's book as written: its cells, and in memory only the sessions
        still active (all without eviction). Without a numbered commit (nothing written
        yet, or data of an earlier version) every stored session is re-derived."""
        started = time.perf_counter()
        topic_map = self.maps.get(names)
        commit = self.rows.last_commit(names, partition)
        if commit is None:
            book = self._rebuild(partition, names, topic_map)
            written = 0
        else:
            book = self._from_commit(partition, names, topic_map, commit)
            written = commit.number
        slot = _Slot(names, partition, book, topic_map, checked_at=time.monotonic())
        slot.written = written
        slot.derived_map = topic_map if book.version == topic_map.version else None
        # Cells derived under an older map: re-derived in the background, as after a change.
        slot.stale = book.version != topic_map.version
        slot.pending = bool(book.dirty_cells or book.dirty_evicted or book.dirty_sessions)
        if book.cells or book.sessions:
            log.info(
                "journeys %s p%d: restored %d cells and %d active sessions in %.2f s",
                names.slug,
                partition,
                len(book.cells),
                len(book.sessions),
                time.perf_counter() - started,
            )
        return slot

    def _from_commit(
        self, partition: int, names: DimensionNames, topic_map: TopicMap, commit: Commit
    ) -> JourneyBook:
        """Cost: the cells, the sessions of one unfinished write, and the active sessions;
        not the history."""
        book = JourneyBook(self.min_switch_events, self.max_segment_keys)
        version = (
            topic_map.version
            if commit.version == _version_text(topic_map.version)
            else ("written", commit.version)
        )
        book.restore_cells(self.rows.partition_cells(names, partition), version, commit.clock)
        # The write after the commit wrote its sessions, not its cells (a crash between):
        # the cells still count each one's previous contribution.
        for page in self.rows.stored_members(names, partition, write=commit.number + 1):
            runs = self.rows.sessions_by_id([m.runs_id for m in page])
            for m in page:
                if m.runs_id in runs:
                    book.redo(runs[m.runs_id], m.prev, m.contribution)
        redone = set(book.dirty_evicted)
        current = book.version == topic_map.version
        neutral = self._neutral(topic_map)
        active_from = None if self.idle_after_s is None else book.clock - self.idle_after_s
        ending_from = None if active_from is None else hour_of(active_from)
        for page in self.rows.stored_members(names, partition, ending_from_hour=ending_from):
            active = [
                m for m in page if active_from is None or m.contribution.last_at >= active_from
            ]
            runs = self.rows.sessions_by_id([m.runs_id for m in active])
            for m in active:
                found = runs.get(m.runs_id)
                if found is None:
                    continue
                sid = found.session_id
                counted = book.evicted_contribution(sid) or m.contribution
                if (
                    current
                    and sid not in redone
                    and (found.events, found.last_at) == (counted.events, counted.last_at)
                ):
                    book.adopt(found, counted)  # its path and its member are one write's
                    continue
                book.put(found, topic_map.topic_of, neutral, counted)
                if book.contributions[sid] == counted and sid not in redone:
                    book.dirty_sessions.discard(sid)  # as written: nothing to write again
                    book.written.pop(sid, None)
        book.order_activity()
        return book

    def _rebuild(self, partition: int, names: DimensionNames, topic_map: TopicMap) -> JourneyBook:
        """Every stored session derived afresh under the newest map; cells rewritten
        whole. Sessions whose contribution is unchanged have their rows rewritten at once,
        a page at a time (stored in an earlier format: ``journey_store.FORMAT``)."""
        book = JourneyBook(self.min_switch_events, self.max_segment_keys)
        neutral = self._neutral(topic_map)
        for page in self.rows.session_pages(names, partition):
            same = []
            for runs, stored in page:
                book.put(runs, topic_map.topic_of, neutral)
                if book.contributions[runs.session_id] == stored:
                    book.dirty_sessions.discard(runs.session_id)  # its member stays
                    book.written.pop(runs.session_id, None)
                    same.append(runs)
            self.rows.rewrite_sessions(names, partition, same)
            if self.idle_after_s is not None:
                # Idle against the clock so far is idle against the final one too.
                book.evict_idle(self.idle_after_s, [runs.session_id for runs, _ in page])
        book.order_activity()
        if self.idle_after_s is not None:
            book.evict_idle(self.idle_after_s)
        book.version = topic_map.version
        # Every rebuilt cell is dirty (rewritten at the next flush); stored cells the
        # rebuild has no more are deleted then (readers meanwhile see the old rows).
        book.dirty_cells.update(self.rows.cell_keys(names, partition))
        return book

    def _current_map(self, slot: _Slot) -> TopicMap:
        now = time.monotonic()
        if now - slot.checked_at >= self.map_check_s:
            slot.checked_at = now
            newest = self.maps.get(slot.names)
            if newest.version != slot.topic_map.version:
                slot.topic_map = newest
                slot.stale = True
        return slot.topic_map

    def observe(self, partition: int, a: TopicAssignment) -> None:
        """One assignment: the session's compact path and its contribution follow it."""
        with self.lock:
            self._observe(partition, a)

    def observe_all(self, partition: int, assignments: Iterable[TopicAssignment]) -> None:
        """Assignments of one partition, in order (one message's worth: one lock, one
        thread hand-off for them all)."""
        with self.lock:
            for a in assignments:
                self._observe(partition, a)

    def _observe(self, partition: int, a: TopicAssignment) -> None:
        names = dimension_names(a.project, a.dimension)
        slot = self._slot(partition, names)
        topic_map = self._current_map(slot)
        book = slot.book
        runs = book.sessions.get(a.session_id)
        evicted = None
        if runs is None or not runs.verified:
            # A session's first event in this process: its path is rebuilt from the event
            # store, which holds every event placed so far. Assignments in flight when a
            # worker died can be lost (the embedded broker keeps its log in memory) while
            # their events are stored; this is where they come back.
            if runs is None:
                # Evicted while idle (or never seen): the cells may still count it.
                evicted = book.evicted_contribution(a.session_id) or (
                    self.rows.stored_contribution(names, slot.partition, a.session_id)
                )
            runs = self._from_store(names, a) or SessionRuns(a.session_id, a.user_id)
            runs.verified = True
            runs.add(a.received_at, a.event_id, a.mc, a.segments)  # unless stored already
        elif not runs.add(a.received_at, a.event_id, a.mc, a.segments):
            rebuilt = self._from_store(names, a)
            if rebuilt is None:
                return
            runs = rebuilt
            runs.verified = True
        book.put(runs, topic_map.topic_of, self._neutral(topic_map), evicted, topic_map.version)
        slot.pending = True

    def _from_store(self, names: DimensionNames, a: TopicAssignment) -> SessionRuns | None:
        enum_keys = list(a.segments or {})
        events: list[JourneyEvent] = []
        segments: dict[str, dict[str, Any]] = {}
        offset = None
        while True:
            records, offset = self.store.scroll(
                names.events,
                filter=Filter(must={"session_id": a.session_id}),
                limit=1000,
                offset=offset,
            )
            for r in records:
                p = r.payload
                events.append(
                    JourneyEvent(p["event_id"], a.session_id, p["user_id"], p["ts"], p["mc"])
                )
                meta = p.get("metadata") or {}
                segments[p["event_id"]] = {k: meta[k] for k in enum_keys if k in meta}
            if offset is None:
                break
        if not events:
            return None
        return SessionRuns.from_events(events, lambda eid: segments.get(eid, {}))

    # -- background: re-derivation and flushing ------------------------------------------

    def rederive_due(self) -> list[_Slot]:
        """Slots whose topic map changed, last re-derived at least
        ``rederive_interval_s`` ago, and never more than a tenth of the time (a re-derivation
        that took 2 s waits 18 s before the next)."""
        now = time.monotonic()
        due = []
        with self.lock:
            for slot in self.slots.values():
                self._current_map(slot)
                wait = max(self.rederive_interval_s, 9 * slot.rederive_took)
                if slot.stale and now - slot.rederived_at >= wait:
                    due.append(slot)
        return due

    def rederive(self, slot: _Slot) -> Iterator[int]:
        """Re-derive the slot's sessions under its newest map, in batches (the lock is
        held for one batch at a time: events go on between batches)."""
        started = time.perf_counter()
        topic_map = slot.topic_map
        slot.stale = False
        done = read = 0
        book = slot.book
        neutral = self._neutral(topic_map)
        moved = (
            None
            if slot.derived_map is None
            else topic_map.moved_since(slot.derived_map, self.neutral_topics)
        )
        # The version is set once the evicted sessions are re-derived too.
        steps = book.rederive(topic_map.topic_of, neutral, book.version, moved=moved)
        while True:
            with self.lock:
                step = next(steps, None)
            if step is None:
                break
            done = step
            yield done
        if self.idle_after_s is not None:
            # Sessions evicted from memory: read back a page at a time, under the lock
            # (a session coming back meanwhile is re-derived in memory instead).
            # A change that moves most micro-clusters is read whole: the filter would
            # select about everything anyway, at a higher cost per row.
            narrow = moved if moved is not None and len(moved) <= MOVED_FILTER_MAX else None
            pages = self.rows.session_pages(slot.names, slot.partition, narrow)
            while True:
                with self.lock:
                    page = next(pages, None)
                    if page is None:
                        break
                    read += len(page)
                    for runs, stored in page:
                        if runs.session_id in book.sessions or stored is None:
                            continue
                        book.rederive_evicted(runs, stored, topic_map.topic_of, neutral)
                        done += 1
                yield done
        with self.lock:
            book.version = topic_map.version
        slot.derived_map = topic_map
        slot.rederived_at = time.monotonic()
        slot.rederive_took = time.perf_counter() - started
        slot.rederive_read = read
        slot.pending = True
        log.info(
            "journeys %s p%d: re-derived %d sessions (%s; %d read back from the store) "
            "under topic map %s in %.2f s",
            slot.names.slug,
            slot.partition,
            done,
            "all" if moved is None else f"through {len(moved)} moved micro-clusters",
            read,
            _version_text(topic_map.version),
            time.perf_counter() - started,
        )

    def flush(self, force: bool = False) -> int:
        """Write what changed (at most every ``flush_interval_s`` unless ``force``)."""
        with self.lock:
            return self._flush(force)

    def _flush(self, force: bool) -> int:
        now = time.monotonic()
        written = 0
        for slot in self.slots.values():
            if not slot.pending or (not force and now - slot.flushed_at < self.flush_interval_s):
                continue
            known = slot.cell_seqs
            deltas = slot.book.cell_deltas(known)
            cells, sessions = slot.book.take_dirty()
            # Unique across restarts too: readers cache a row by (id, seq).
            slot.seq = max(slot.seq + 1, time.time_ns())
            version = _version_text(slot.book.version if not slot.stale else ("stale",))
            slot.written += 1
            commit = Commit(slot.written, _version_text(slot.book.version), slot.book.clock)
            try:
                written += self.rows.write(
                    slot.names,
                    slot.partition,
                    version,
                    slot.seq,
                    cells,
                    sessions,
                    commit,
                    {k: (known[k], d) for k, d in deltas.items() if k in cells},
                )
            except BaseException:
                known.clear()  # what landed is unknown: the next writes carry no deltas
                raise
            for key, cell in cells.items():
                if cell is None:
                    known.pop(key, None)
                else:
                    known[key] = slot.seq
            slot.flushed_at, slot.pending = now, False
            if self.idle_after_s is not None:
                slot.book.evict_idle(self.idle_after_s)
        return written

    def forget(self, partitions: set[int]) -> None:
        """Partitions taken away (a rebalance): write what they changed and drop their
        books; whoever gets them next restores them from the store."""
        with self.lock:
            self._flush(force=True)
            for key in [k for k in self.slots if k[0] in partitions]:
                del self.slots[key]

    def caught_up(self) -> bool:
        return all(not s.stale and not s.pending for s in self.slots.values())

    def catch_up(self) -> None:
        """Re-derive every stale slot now and flush (tests, benchmarks, shutdown)."""
        for slot in self.slots.values():
            slot.checked_at = float("-inf")
            self._current_map(slot)
            if slot.stale:
                for _ in self.rederive(slot):
                    pass
        self.flush(force=True)


def journey_owner(store: VectorStore, settings: JourneySettings) -> JourneyOwner | None:
    """The owner the settings ask for (None: aggregates off)."""
    if not settings.aggregates:
        return None
    return JourneyOwner(
        store,
        settings.min_switch_events,
        neutral_topics=settings.neutral_topics,
        max_segment_keys=settings.aggregate_segment_combinations,
        flush_interval_s=settings.aggregate_flush_s,
        rederive_interval_s=settings.aggregate_rederive_s,
        idle_after_s=settings.dropoff_timeout_s if settings.aggregate_evict_idle else None,
    )
