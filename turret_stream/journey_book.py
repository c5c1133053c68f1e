"""Journey aggregates kept by the stream (write side, pure: no I/O).

The sessions actor owns, per session, a **compact path** (``SessionRuns``): the session's
events run-length encoded at micro-cluster granularity (micro-cluster, count, first and
last time). A session's journey under any topic map is derived from its runs alone
(``derive``), by the one switch rule (``journeys.follow_topic``), and is identical to the
journey ``journeys.session_path`` computes from the session's stored events.

What a session adds to the aggregates (``Contribution``) lands in one **cell**, keyed by
the hour of its first event, the hour of its last event and its enum segment values
(``CellKey``). A cell (``Cell``) holds additive counters: events, sessions, users,
entries, transitions with a histogram of the seconds between steps, paths, visits, ends,
back-and-forth, and the sessions that end in it (for drop-offs at any ``now``). When a
session gets a new event, the owner retracts its previous contribution and adds the new
one, so a cell is always the exact sum of its sessions' current journeys.

Every contribution is derived under a topic map. ``JourneyBook`` re-derives every
session's contribution under the newest map when it changes (``rederive``), so merges,
splits, late topics and neutral flags change old figures as they do in the computation
from stored events. Cells serialise themselves (``Cell.to_payload``/``from_payload``);
readers sum cells in O(cells), never O(events).
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from turret_stream.journeys import JourneyEvent, follow_topic, ordered

TopicOf = Callable[[int], str | None]
HOUR = 3600.0
# Sessions whose enum segments differ between their events, or whose segment values fall
# beyond the cap: a segment filter cannot be answered from their cells.
MIXED = "~mixed"
OTHER = "~other"
SEP = "\x1f"  # joins topics of a path and members of a pair in serialised keys


def hour_of(ts: float) -> int:
    return math.floor(ts / HOUR)


def gap_bin(seconds: float) -> float:
    """The histogram bin a gap between steps is counted in: to the millisecond below
    100 s, to 4 significant digits above (the median read back is off by at most that)."""
    if seconds < 100:
        return round(seconds, 3)
    digits = 3 - math.floor(math.log10(seconds))
    return round(seconds, digits)


# -- one session's compact path ---------------------------------------------------------


@dataclass(slots=True)
class SessionRuns:
    """A session's events, run-length encoded by micro-cluster, in journey order (time,
    then event id). ``runs``: ``[mc, count, first_ts, last_ts]``."""

    session_id: str
    user_id: str
    runs: list[list[Any]] = field(default_factory=list)
    events: int = 0
    first_at: float = 0.0
    last_at: float = 0.0
    last_id: str = ""
    segments: dict[str, Any] | str | None = None  # None: not seen yet; MIXED
    segments_text: str | None = None  # ``segments_key`` of ``segments``, once computed
    # Checked against the event store by this process (not serialised): see journey_owner.
    verified: bool = False

    def add(self, ts: float, event_id: str, mc: int, segments: Mapping[str, Any] | None) -> bool:
        """Append one event; False (nothing changed) when it is the last one again or not
        after it in journey order (a replay or a late event: the caller rebuilds from the
        store). Times are kept to the microsecond, as the API stamps them: the event store
        gives back a float of 17 significant digits an ulp off (README *Known limits*), so
        a path rebuilt from the store can hold its last event's time 1 us early, and that
        event redelivered is recognised by its id, not by its time."""
        ts = round(ts, 6)
        if self.events and (
            event_id == self.last_id or (ts, event_id) <= (self.last_at, self.last_id)
        ):
            return False
        seg = dict(segments or {})
        if self.segments is None:
            self.segments = seg
        elif self.segments != MIXED and self.segments != seg:
            self.segments = MIXED
            self.segments_text = None
        if self.runs and self.runs[-1][0] == mc:
            run = self.runs[-1]
            run[1] += 1
            run[3] = ts
        else:
            self.runs.append([mc, 1, ts, ts])
        if not self.events:
            self.first_at = ts
        self.events += 1
        self.last_at, self.last_id = ts, event_id
        return True

    def micro_clusters(self) -> list[int]:
        """The distinct micro-clusters of the session's events (noise excluded), sorted:
        the keys a topic map change is matched against (``TopicMap.moved_since``)."""
        return sorted({run[0] for run in self.runs if run[0] is not None})

    def touches(self, mcs: Container[int]) -> bool:
        return any(run[0] in mcs for run in self.runs)

    @classmethod
    def from_events(
        cls, events: Iterable[JourneyEvent], segments_of: Callable[[str], Mapping[str, Any]]
    ) -> SessionRuns:
        """Rebuilt from a session's stored events (``segments_of``: event id -> its enum
        segments)."""
        in_order = ordered(events)
        runs = cls(in_order[0].session_id, in_order[0].user_id) if in_order else cls("", "")
        for e in in_order:
            runs.add(e.ts, e.event_id, e.mc, segments_of(e.event_id))
        return runs

    def events_within(self, since: float | None, until: float | None) -> list[JourneyEvent] | None:
        """The session's events with ``since <= ts <= until``, as far as its runs tell:
        None when a bound falls inside a run (how many of its events lie on each side is
        not kept). A journey reads only where runs start and end (a step starts at the
        first event of a run, a session ends at its last one), so the events inside a run
        get its first event's time; ids keep journey order."""
        out: list[JourneyEvent] = []
        for mc, count, first, last in self.runs:
            if (since is not None and last < since) or (until is not None and first > until):
                continue
            if (since is not None and first < since) or (until is not None and last > until):
                return None
            for i in range(count):
                ts = last if i == count - 1 else first
                event_id = f"{self.session_id}/{len(out):010d}"
                out.append(JourneyEvent(event_id, self.session_id, self.user_id, ts, mc))
        return out

    def to_payload(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "user_id": self.user_id,
            "runs": self.runs,
            "events": self.events,
            "first_at": self.first_at,
            "last_at": self.last_at,
            "last_id": self.last_id,
            "segments": self.segments,
        }

    @classmethod
    def from_payload(cls, p: Mapping[str, Any]) -> SessionRuns:
        return cls(
            p["session_id"],
            p["user_id"],
            [list(r) for r in p["runs"]],
            p["events"],
            p["first_at"],
            p["last_at"],
            p["last_id"],
            p["segments"],
        )


@dataclass(frozen=True, slots=True)
class Derived:
    """A session's journey as the aggregates need it: its topics and when each step began."""

    path: tuple[str, ...]
    step_starts: tuple[float, ...]


def derive(
    runs: SessionRuns, topic_of: TopicOf, min_switch_events: int, neutral: Container[str]
) -> Derived:
    """The session's steps from its runs; the same as ``journeys.session_path`` on its
    events. All events of a run share a topic, so a run of n events is n calls of the
    switch rule, of which the first ``min_switch_events + 1`` can change anything."""
    path: list[str] = []
    starts: list[float] = []
    follow_runs(runs.runs, {}, path, starts, topic_of, min_switch_events, neutral)
    return Derived(tuple(path), tuple(starts))


def follow_runs(
    runs: Iterable[list[Any]],
    position: dict[str, Any],
    path: list[str],
    starts: list[float],
    topic_of: TopicOf,
    min_switch_events: int,
    neutral: Container[str],
) -> None:
    """``derive``'s loop: follow ``runs`` from ``position``, appending the steps they make
    to ``path`` and ``starts`` (all three mutated)."""
    for mc, count, first_ts, _ in runs:
        topic = topic_of(mc)
        if topic is None:
            continue
        is_neutral = topic in neutral
        for _ in range(min(count, min_switch_events + 1)):
            # The mark is the run's first event: a run of switch evidence always starts
            # at the first event of a run of one micro-cluster.
            moved = follow_topic(position, topic, is_neutral, min_switch_events, first_ts)
            if moved is not None:
                path.append(moved.target)
                starts.append(moved.mark)


@dataclass(slots=True)
class DerivedPrefix:
    """Where ``derive`` stood after a session's complete runs (all but the last: only the
    last run of a session still grows), under one topic map (``basis``): a new event
    follows only the runs completed since and the last one, not the whole session, so
    an event costs the same in a session of ten events or of ten thousand. The steps so
    far are not copied here: they are the first ``steps`` of the journey this prefix
    last derived (``last``), which the book holds as the session's contribution."""

    runs: SessionRuns
    basis: Any
    done: int = 0  # runs followed
    steps: int = 0  # steps they made
    position: dict[str, Any] = field(default_factory=dict)
    last: Derived | None = None

    def derive(
        self,
        topic_of: TopicOf,
        min_switch_events: int,
        neutral: Container[str],
        previous: Derived | None,
    ) -> Derived:
        """The session's steps, as ``derive`` gives them; advances the prefix.
        ``previous``: the journey the book counts for the session now; from the start
        again unless it is the one this prefix derived last."""
        if previous is None or previous is not self.last:
            self.done, self.steps, self.position = 0, 0, {}
            path: list[str] = []
            starts: list[float] = []
        else:
            path = list(previous.path[: self.steps])
            starts = list(previous.step_starts[: self.steps])
        complete = len(self.runs.runs) - 1
        if self.done < complete:
            runs = self.runs.runs[self.done : complete]
            follow_runs(runs, self.position, path, starts, topic_of, min_switch_events, neutral)
            self.done, self.steps = complete, len(path)
        follow_runs(
            self.runs.runs[complete:],
            dict(self.position),
            path,
            starts,
            topic_of,
            min_switch_events,
            neutral,
        )
        self.last = Derived(tuple(path), tuple(starts))
        return self.last


# -- what one session adds to the aggregates ----------------------------------------------


@dataclass(frozen=True, slots=True)
class CellKey:
    start_hour: int
    end_hour: int
    segments: str  # canonical "k=v" pairs joined by SEP, or MIXED / OTHER

    def to_id(self) -> str:
        return f"{self.start_hour}/{self.end_hour}/{self.segments}"

    @classmethod
    def from_id(cls, text: str) -> CellKey:
        start, end, segments = text.split("/", 2)
        return cls(int(start), int(end), segments)


def segments_key(segments: Mapping[str, Any]) -> str:
    """Canonical text of a session's enum segments (JSON scalars keep their type)."""
    return SEP.join(f"{k}={_scalar(v)}" for k, v in sorted(segments.items()))


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "b:" + ("true" if value else "false")
    if isinstance(value, int):
        return f"i:{value}"
    return f"s:{value}"


def parse_segments_key(text: str) -> dict[str, str] | None:
    """Key -> ``_scalar`` text; None for MIXED / OTHER."""
    if text in (MIXED, OTHER):
        return None
    if not text:
        return {}
    return dict(part.split("=", 1) for part in text.split(SEP))


@dataclass(frozen=True, slots=True)
class Contribution:
    key: CellKey
    user_id: str
    session_id: str
    events: int
    first_at: float
    last_at: float
    derived: Derived

    def to_member(self) -> list[Any]:
        """What a cell keeps of each of its sessions: enough to count the session again
        on its own where a time window cuts the cell (``from_member``)."""
        d = self.derived
        return [self.first_at, self.last_at, self.user_id, self.events, d.path, d.step_starts]

    @classmethod
    def from_member(cls, session_id: str, m: list[Any], segments: str = "") -> Contribution:
        first_at, last_at, user_id, events, path, starts = m
        key = CellKey(hour_of(first_at), hour_of(last_at), segments)
        derived = Derived(tuple(path), tuple(starts))
        return cls(key, user_id, session_id, events, first_at, last_at, derived)

    def to_record(self) -> list[Any]:
        """The whole contribution, its cell's segments included (``from_record``)."""
        return [self.key.segments, self.to_member()]

    @classmethod
    def from_record(cls, session_id: str, record: list[Any]) -> Contribution:
        segments, member = record
        return cls.from_member(session_id, member, segments)


# -- a cell: additive counters -------------------------------------------------------------


def _pair(a: str, b: str) -> str:
    return f"{a}{SEP}{b}"


# A cell's totals and its counters (key -> sessions), beside its gaps: what ``Cell.plus``
# adds, and what the read side sums (``journey_aggregates``).
CELL_TOTALS = ("events", "sessions", "sessions_with_topic", "back_and_forth_sessions")
CELL_COUNTERS = ("users", "entries", "transitions", "paths", "visited", "ended", "back_and_forth")


@dataclass
class Cell:
    """The sum of the contributions of the sessions in one ``CellKey``."""

    events: int = 0
    sessions: int = 0
    sessions_with_topic: int = 0
    users: Counter[str] = field(default_factory=Counter)
    entries: Counter[str] = field(default_factory=Counter)
    transitions: Counter[str] = field(default_factory=Counter)  # "a SEP b"
    gaps: dict[str, Counter[float]] = field(default_factory=dict)  # pair -> bin -> n
    paths: Counter[str] = field(default_factory=Counter)  # topics joined by SEP
    visited: Counter[str] = field(default_factory=Counter)
    ended: Counter[str] = field(default_factory=Counter)
    back_and_forth: Counter[str] = field(default_factory=Counter)  # "a SEP via"
    back_and_forth_sessions: int = 0

    def apply(self, c: Contribution, sign: int) -> None:
        """Add (``sign`` 1) or retract (-1) one session's contribution."""
        self.events += sign * c.events
        self.sessions += sign
        bump(self.users, c.user_id, sign)
        path = c.derived.path
        if path:
            self._add_path(path, sign)
            self._add_gaps(path, c.derived.step_starts, sign)

    def extend(self, old: Contribution, new: Contribution) -> bool:
        """Swap a session's contribution ``old`` for ``new`` when ``new`` is ``old`` with
        events added at its end (the same cell, user and steps, maybe more steps): only
        what the added steps change, where ``apply`` -1 then +1 would redo every step.
        False, with nothing changed, when ``new`` is not such an extension."""
        if old.key != new.key or old.user_id != new.user_id:
            return False
        before, after = old.derived, new.derived
        n = len(before.path)
        if after.path[:n] != before.path or after.step_starts[:n] != before.step_starts:
            return False
        self.events += new.events - old.events
        path, starts = after.path, after.step_starts
        if len(path) == n:
            return True
        if n == 0:
            self._add_path(path, 1)
            self._add_gaps(path, starts, 1)
            return True
        old_path = before.path
        bump(self.paths, SEP.join(old_path), -1)
        bump(self.paths, SEP.join(path), 1)
        bump(self.ended, old_path[-1], -1)
        bump(self.ended, path[-1], 1)
        for topic in set(path[n:]):
            if topic not in old_path:
                bump(self.visited, topic, 1)
        for i in range(n - 1, len(path) - 1):
            bump(self.transitions, _pair(path[i], path[i + 1]), 1)
        self._add_gaps(path, starts, 1, first=n - 1)
        returns = {
            _pair(path[i], path[i + 1])
            for i in range(max(0, n - 2), len(path) - 2)
            if path[i] == path[i + 2]
        }
        if returns:
            had = back_and_forth_pairs(old_path)  # a scan of the path, only on a return
            if not had:
                self.back_and_forth_sessions += 1
            for pair in returns - had:
                bump(self.back_and_forth, pair, 1)
        return True

    def add_members(self, members: Iterable[list[Any]]) -> None:
        """Add the sessions of ``members`` (``Contribution.to_member`` lists), as ``apply``
        of each would, with what depends on the path alone counted once per distinct
        path: a window's boundary cells add thousands of sessions per read."""
        users, paths = self.users, Counter[tuple[str, ...]]()
        for _, _, user_id, events, path, starts in members:
            self.events += events
            self.sessions += 1
            users[user_id] = users.get(user_id, 0) + 1
            if path:
                paths[tuple(path)] += 1
                if len(path) > 1:
                    self._add_gaps(path, starts, 1)
        for path, n in paths.items():
            self._add_path(path, n)

    def _add_path(self, path: Sequence[str], n: int) -> None:
        """``n`` sessions (negative: retracted) of this path: all but the gaps."""
        self.sessions_with_topic += n
        bump(self.entries, path[0], n)
        bump(self.paths, SEP.join(path), n)
        for topic in set(path):
            bump(self.visited, topic, n)
        bump(self.ended, path[-1], n)
        for i in range(len(path) - 1):
            bump(self.transitions, _pair(path[i], path[i + 1]), n)
        pairs = back_and_forth_pairs(path)
        if pairs:
            self.back_and_forth_sessions += n
            for p in pairs:
                bump(self.back_and_forth, p, n)

    def _add_gaps(
        self, path: Sequence[str], starts: Sequence[float], sign: int, first: int = 0
    ) -> None:
        """The gaps of the path's steps from step ``first`` on."""
        for i in range(first, len(path) - 1):
            pair = _pair(path[i], path[i + 1])
            bins = self.gaps.setdefault(pair, Counter())
            bump(bins, gap_bin(starts[i + 1] - starts[i]), sign)
            if not bins:  # retracted, or a signed cell (``cell_deltas``) back to zero
                del self.gaps[pair]

    @property
    def empty(self) -> bool:
        return self.sessions == 0

    def plus(self, delta: Cell) -> Cell:
        """A new cell: this one with ``delta``'s signed counts added (``cell_deltas``);
        this one is left as it is (readers share it)."""
        gaps = dict(self.gaps)
        for pair, bins in delta.gaps.items():
            mine = gaps[pair] = Counter(gaps.get(pair, ()))
            bump_all(mine, bins)
            if not mine:
                del gaps[pair]
        out = Cell(gaps=gaps, **{n: getattr(self, n) + getattr(delta, n) for n in CELL_TOTALS})
        for name in CELL_COUNTERS:
            mine = Counter(getattr(self, name))
            bump_all(mine, getattr(delta, name))
            setattr(out, name, mine)
        return out

    def to_payload(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "sessions": self.sessions,
            "sessions_with_topic": self.sessions_with_topic,
            "users": dict(self.users),
            "entries": dict(self.entries),
            "transitions": dict(self.transitions),
            "gaps": {p: [[b, n] for b, n in bins.items()] for p, bins in self.gaps.items()},
            "paths": dict(self.paths),
            "visited": dict(self.visited),
            "ended": dict(self.ended),
            "back_and_forth": dict(self.back_and_forth),
            "back_and_forth_sessions": self.back_and_forth_sessions,
        }

    @classmethod
    def from_payload(cls, p: Mapping[str, Any]) -> Cell:
        return cls(
            events=p["events"],
            sessions=p["sessions"],
            sessions_with_topic=p["sessions_with_topic"],
            users=Counter(p["users"]),
            entries=Counter(p["entries"]),
            transitions=Counter(p["transitions"]),
            gaps={pair: Counter({b: n for b, n in bins}) for pair, bins in p["gaps"].items()},
            paths=Counter(p["paths"]),
            visited=Counter(p["visited"]),
            ended=Counter(p["ended"]),
            back_and_forth=Counter(p["back_and_forth"]),
            back_and_forth_sessions=p["back_and_forth_sessions"],
        )


def back_and_forth_pairs(path: Sequence[str]) -> set[str]:
    """The (a, via) pairs of a path's returns a -> via -> a."""
    return {_pair(a, b) for a, b, c in zip(path, path[1:], path[2:], strict=False) if a == c}


def bump(counter: Counter, key: Any, sign: int) -> None:
    """Add ``sign`` to ``counter[key]``, dropping the key at zero (cells and their sums
    keep no zero entries)."""
    n = counter.get(key, 0) + sign
    if n:
        counter[key] = n
    else:
        counter.pop(key, None)


def bump_all(
    counter: Counter, counts: Mapping[Any, int], key_of: Callable | None = None, sign: int = 1
) -> None:
    """``bump`` each of ``counts`` (keys through ``key_of``) times ``sign``: counts may be
    negative (a delta)."""
    for key, n in counts.items():
        bump(counter, key if key_of is None else key_of(key), sign * n)


def split_pair(text: str) -> tuple[str, str]:
    a, b = text.split(SEP)
    return a, b


def split_path(text: str) -> tuple[str, ...]:
    return tuple(text.split(SEP))


# -- the owner's book for one dimension ----------------------------------------------------


@dataclass
class JourneyBook:
    """One dimension's sessions (compact paths) and cells, on one partition of the
    sessions actor. ``version`` is the topic map version the contributions were derived
    under. ``max_segment_keys``: distinct segment combinations given their own cells;
    the rest share ``OTHER`` cells (documented: a segment filter falls back to stored
    events for those)."""

    min_switch_events: int
    max_segment_keys: int = 256
    sessions: dict[str, SessionRuns] = field(default_factory=dict)
    contributions: dict[str, Contribution] = field(default_factory=dict)
    cells: dict[CellKey, Cell] = field(default_factory=dict)
    version: Any = None
    segment_keys: set[str] = field(default_factory=set)
    dirty_cells: set[CellKey] = field(default_factory=set)
    dirty_sessions: set[str] = field(default_factory=set)
    # Evicted sessions (idle, out of memory, their contributions still in the cells)
    # re-derived under a new map and not yet written: session id -> (runs, contribution).
    dirty_evicted: dict[str, tuple[SessionRuns, Contribution]] = field(default_factory=dict)
    # Latest event time seen (the partition's clock for idleness) and the order of the
    # sessions' last activity (oldest first) for ``evict_idle``.
    clock: float = 0.0
    activity: OrderedDict[str, float] = field(default_factory=OrderedDict)
    # The undo record of the next write: for each session changed since the last
    # ``take_dirty``, the contribution the written cells count for it (None: none). A
    # crash after the sessions' rows are written and before the cells are lets a restart
    # put the stored cells in step (``journey_owner``) without re-deriving every session.
    written: dict[str, Contribution | None] = field(default_factory=dict)
    # Per session in memory, where deriving its path stood (``put`` with a ``basis``).
    prefixes: dict[str, DerivedPrefix] = field(default_factory=dict)

    def _segments(self, runs: SessionRuns) -> str:
        if runs.segments == MIXED or runs.segments is None:
            return MIXED
        if runs.segments_text is None:
            runs.segments_text = segments_key(runs.segments)
        key = runs.segments_text
        if key in self.segment_keys:
            return key
        if len(self.segment_keys) >= self.max_segment_keys:
            return OTHER
        self.segment_keys.add(key)
        return key

    def contribution(
        self, runs: SessionRuns, topic_of: TopicOf, neutral: Container[str]
    ) -> Contribution:
        return self._contribution(runs, derive(runs, topic_of, self.min_switch_events, neutral))

    def _contribution(self, runs: SessionRuns, derived: Derived) -> Contribution:
        key = CellKey(hour_of(runs.first_at), hour_of(runs.last_at), self._segments(runs))
        return Contribution(
            key, runs.user_id, runs.session_id, runs.events, runs.first_at, runs.last_at, derived
        )

    def _apply(self, c: Contribution, sign: int) -> None:
        cell = self.cells.get(c.key)
        if cell is None:
            cell = self.cells[c.key] = Cell()
        cell.apply(c, sign)
        self.dirty_cells.add(c.key)

    def put(
        self,
        runs: SessionRuns,
        topic_of: TopicOf,
        neutral: Container[str],
        evicted: Contribution | None = None,
        basis: Any = None,
    ) -> None:
        """The session ``runs`` changed: swap its old contribution for its new one.
        ``evicted``: the contribution the cells hold for a session evicted from memory
        (``evicted_contribution``), which comes back with a new event. ``basis``: what
        ``topic_of`` and ``neutral`` are (the topic map's version); with it, an event
        added to a session costs what it adds, not what the whole session holds (the
        session's derivation so far is kept, and the cell takes the difference)."""
        sid = runs.session_id
        self.sessions[sid] = runs
        old = self.contributions.get(sid, evicted)
        self.written.setdefault(sid, old)
        self.dirty_evicted.pop(sid, None)
        if basis is None:
            new = self.contribution(runs, topic_of, neutral)
        else:
            prefix = self.prefixes.get(sid)
            if prefix is None or prefix.runs is not runs or prefix.basis != basis:
                prefix = self.prefixes[sid] = DerivedPrefix(runs, basis)
            counted = self.contributions.get(sid)
            derived = prefix.derive(
                topic_of,
                self.min_switch_events,
                neutral,
                None if counted is None else counted.derived,
            )
            new = self._contribution(runs, derived)
        self.contributions[sid] = new
        cell = self.cells.get(new.key)
        if old is not None and cell is not None and cell.extend(old, new):
            self.dirty_cells.add(new.key)
        else:
            if old is not None:
                self._apply(old, -1)
            self._apply(new, 1)
        self.dirty_sessions.add(sid)
        self.clock = max(self.clock, runs.last_at)
        self.activity[sid] = runs.last_at
        self.activity.move_to_end(sid)

    # -- bounded memory: idle sessions leave, their contributions stay in the cells -------

    def evict_idle(self, idle_after_s: float, candidates: Iterable[str] | None = None) -> int:
        """Drop from memory the sessions idle for ``idle_after_s`` of event time (before
        ``clock``) whose rows are written (not dirty); their contributions stay in the
        cells and their paths in the store. Without ``candidates``: oldest activity
        first, stopping at the first session still active (events arrive about in time
        order). Returns how many left."""
        before = self.clock - idle_after_s
        gone = 0
        if candidates is not None:
            for sid in candidates:
                last_at = self.activity.get(sid)
                if last_at is not None and last_at < before and sid not in self.dirty_sessions:
                    self._evict(sid)
                    gone += 1
            return gone
        while self.activity:
            sid, last_at = next(iter(self.activity.items()))
            if last_at >= before or sid in self.dirty_sessions:
                break
            self._evict(sid)
            gone += 1
        return gone

    def _evict(self, sid: str) -> None:
        del self.activity[sid]
        self.sessions.pop(sid, None)
        self.contributions.pop(sid, None)
        self.prefixes.pop(sid, None)

    # -- a restart from the written cells -------------------------------------------------

    def restore_cells(self, cells: Mapping[CellKey, Cell], version: Any, clock: float) -> None:
        """Start from cells as written (empty ones are deleted at the next write)."""
        for key, cell in cells.items():
            if cell.empty:
                self.dirty_cells.add(key)
            else:
                self.cells[key] = cell
            if key.segments not in (MIXED, OTHER):
                self.segment_keys.add(key.segments)
        self.version, self.clock = version, clock

    def adopt(self, runs: SessionRuns, counted: Contribution) -> None:
        """Back in memory as written: the cells count ``counted``, derived from ``runs``
        under the book's version (the caller checked)."""
        sid = runs.session_id
        self.sessions[sid] = runs
        self.contributions[sid] = counted
        self.clock = max(self.clock, runs.last_at)
        self.activity[sid] = runs.last_at

    def redo(self, runs: SessionRuns, counted: Contribution | None, new: Contribution) -> None:
        """A session written by a write whose cells were not: the cells count ``counted``
        for it; make them count ``new`` (its written row), and write them again."""
        if counted is not None:
            self._apply(counted, -1)
        self._apply(new, 1)
        self.written.setdefault(runs.session_id, counted)
        self.dirty_evicted[runs.session_id] = (runs, new)

    def order_activity(self) -> None:
        """Oldest activity first (after a restore, which reads sessions in store order)."""
        self.activity = OrderedDict(sorted(self.activity.items(), key=lambda kv: kv[1]))

    def evicted_contribution(self, session_id: str) -> Contribution | None:
        """What the cells hold for an evicted session, if it was re-derived since its row
        was last written (else the caller reads the stored member)."""
        pending = self.dirty_evicted.get(session_id)
        return pending[1] if pending is not None else None

    def rederive_evicted(
        self,
        runs: SessionRuns,
        stored: Contribution,
        topic_of: TopicOf,
        neutral: Container[str],
    ) -> bool:
        """An evicted session, read back from the store with the contribution the cells
        hold for it (``stored``), re-derived under a new map; True if it changed."""
        sid = runs.session_id
        if sid in self.sessions:
            return False  # it came back meanwhile: the in-memory pass covers it
        old = self.evicted_contribution(sid) or stored
        new = self.contribution(runs, topic_of, neutral)
        if new == old:
            return False
        self.written.setdefault(sid, old)
        self._apply(old, -1)
        self._apply(new, 1)
        self.dirty_evicted[sid] = (runs, new)
        return True

    def rederive(
        self,
        topic_of: TopicOf,
        neutral: Container[str],
        version: Any,
        batch: int = 2000,
        moved: Container[int] | None = None,
    ) -> Iterator[int]:
        """Re-derive every session under a new topic map, ``batch`` sessions at a time
        (yields the number done after each batch, so the caller can let others run and
        log progress). Cells change only where a session's journey did. ``moved``: the
        micro-clusters the change concerns (``TopicMap.moved_since``); sessions without
        any derive the same and are skipped (None: all are re-derived)."""
        done = 0
        for sid in list(self.sessions):
            runs = self.sessions.get(sid)
            if runs is None or (moved is not None and not runs.touches(moved)):
                continue
            old = self.contributions.get(sid)
            new = self.contribution(runs, topic_of, neutral)
            if old != new:
                self.written.setdefault(sid, old)
                if old is not None:
                    self._apply(old, -1)
                self.contributions[sid] = new
                self._apply(new, 1)
                self.dirty_sessions.add(sid)  # its stored member changes too
            done += 1
            if done % batch == 0:
                yield done
        self.version = version
        yield done

    def cell_deltas(self, keys: Container[CellKey]) -> dict[CellKey, Cell]:
        """Of the cells ``keys``, what changed since the last ``take_dirty``: per cell,
        the signed difference (``Cell.plus``), from the sessions changed since (their
        contribution then, ``written``, against now). Call before ``take_dirty``."""
        deltas: dict[CellKey, Cell] = {}

        def delta_of(key: CellKey) -> Cell:
            delta = deltas.get(key)
            if delta is None:
                delta = deltas[key] = Cell()
            return delta

        def add(c: Contribution, sign: int) -> None:
            if c.key in keys:
                delta_of(c.key).apply(c, sign)

        for sid, old in self.written.items():
            pending = self.dirty_evicted.get(sid)
            new = pending[1] if pending is not None else self.contributions.get(sid)
            if old == new:
                continue
            if (
                old is not None
                and new is not None
                and old.key == new.key
                and new.key in keys
                and delta_of(new.key).extend(old, new)
            ):
                continue  # a session that grew: only its added steps
            if old is not None:
                add(old, -1)
            if new is not None:
                add(new, 1)
        return deltas

    def take_dirty(
        self,
    ) -> tuple[
        dict[CellKey, Cell | None], list[tuple[SessionRuns, Contribution, Contribution | None]]
    ]:
        """The cells (None: now empty) and sessions changed since the last call, each
        with its contribution and the one the cells counted at the last call (``written``)."""
        cells: dict[CellKey, Cell | None] = {}
        for k in self.dirty_cells:
            c = self.cells.get(k)
            cells[k] = c if c is not None and not c.empty else None
            if c is not None and c.empty:
                del self.cells[k]
        written = self.written
        sessions = [
            (self.sessions[s], self.contributions[s], written.get(s))
            for s in self.dirty_sessions
            if s in self.sessions
        ]
        sessions.extend((r, c, written.get(s)) for s, (r, c) in self.dirty_evicted.items())
        self.dirty_cells.clear()
        self.dirty_sessions.clear()
        self.dirty_evicted.clear()
        self.written = {}
        return cells, sessions
