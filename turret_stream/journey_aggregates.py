"""The read side of the stream's journey aggregates: sums a dimension's cells
(``journey_store``) into the ``JourneyStats`` the journey endpoints answer from.

Cost: O(cells) (hours x segment combinations x partitions), plus, for a request with a
time window or at the drop-off boundary, the sessions of the cells that straddle it
(their journeys are computed exactly from their stored events, as before). Never
truncated. Cells are decoded once per written version (cached by row id and sequence);
a cell rewritten since a kept sum read it is brought up to date by the change its write
carries (``JourneyStore.cell_deltas``) when that change starts at the version held.
"""

from __future__ import annotations

import json
import math
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from turret_stream.catalog import DimensionNames
from turret_stream.journey_book import (
    CELL_TOTALS,
    MIXED,
    OTHER,
    Cell,
    bump,
    bump_all,
    gap_bin,
    parse_segments_key,
    split_pair,
    split_path,
)
from turret_stream.journey_store import CellRow, JourneyStore
from turret_stream.journeys import JourneyStats, SessionJourney, aggregate, binned_median
from turret_stream.storage import VectorStore

HOUR = 3600.0
# Members of the cells a window cuts, kept between requests: a bound on the sessions held
# (about 0.3 KB each), not on cells. 64 cells had been the bound: a 3-hour window at 1M
# events cuts 84 (6 segment combinations x 2 partitions x the cells across each bound),
# so every request read them all again (1.4 s of 2 s).
MEMBER_CACHE_SESSIONS = 200_000
SUM_CACHE_FILTERS = 16
# Journeys of the sessions listed: session ids -> their journeys within the filter.
Exact = Callable[[list[str]], list[SessionJourney]]
# The counters a cell and a sum both keep, under the same names (beside the totals,
# ``CELL_TOTALS``), with how a cell's key reads in the sum (None: as it is). Users and
# gaps are summed apart.
_COUNTERS: tuple[tuple[str, Callable[[str], Any] | None], ...] = (
    ("entries", None),
    ("visited", None),
    ("ended", None),
    ("transitions", split_pair),
    ("paths", split_path),
    ("back_and_forth", split_pair),
)


def _accepted(value: str | list[Any]) -> set[str]:
    """The ``journey_book._scalar`` texts a segment filter value matches."""
    values = value if isinstance(value, list) else [value]
    texts = set()
    for v in values:
        if isinstance(v, bool):
            texts.add("b:" + ("true" if v else "false"))
        elif isinstance(v, int):
            texts.add(f"i:{v}")
        else:
            texts.add(f"s:{v}")
    return texts


class CellReader:
    def __init__(self, store: VectorStore) -> None:
        self.rows = JourneyStore(store)
        self._decoded: dict[str, tuple[int, Cell]] = {}
        # Members of cells cut by a window, by row id: (seq, members); a cell's members
        # change only with its counters, which give it a new seq.
        self._members: OrderedDict[str, tuple[int, dict[str, list[Any]]]] = OrderedDict()
        self._members_held = 0  # sessions in ``_members``
        self._sums: OrderedDict[tuple, _Sum] = OrderedDict()
        self._lock = threading.Lock()
        self.deltas_applied = 0  # rewritten cells brought up to date by their delta

    @staticmethod
    def answerable(rows: list[CellRow], keys: Iterable[str]) -> bool:
        """Cells know a session's enum segments only: a filter on a key no cell knows (a
        key that is not an enum segment) cannot be answered from them."""
        known: set[str] = set()
        for row in rows:
            known.update(parse_segments_key(row.key.segments) or ())
        return all(k in known for k in keys)

    def _members_of(self, names: DimensionNames, row: CellRow) -> dict[str, list[Any]]:
        with self._lock:
            hit = self._members.get(row.row_id)
            if hit is not None and hit[0] == row.seq:
                self._members.move_to_end(row.row_id)
                return hit[1]
        found = self.rows.members(names, row)
        with self._lock:
            old = self._members.pop(row.row_id, None)
            self._members_held -= 0 if old is None else len(old[1])
            self._members[row.row_id] = (row.seq, found)
            self._members_held += len(found)
            while self._members_held > MEMBER_CACHE_SESSIONS and len(self._members) > 1:
                _, (_, gone) = self._members.popitem(last=False)
                self._members_held -= len(gone)
        return found

    def _cells(self, rows: list[CellRow]) -> dict[str, tuple[int, Cell]]:
        """Row id -> (seq, cell) for ``rows``: decoded once per written seq, the counters
        of the rows not decoded yet read in one call. A row rewritten since it was
        listed comes at its newer seq; one deleted since is missing."""
        found: dict[str, tuple[int, Cell]] = {}
        missing = []
        with self._lock:
            for row in rows:
                hit = self._decoded.get(row.row_id)
                if hit is not None and hit[0] == row.seq:
                    found[row.row_id] = hit
                else:
                    missing.append(row.row_id)
        if missing:
            for row_id, (seq, data) in self.rows.cell_data(missing).items():
                hit = (seq, Cell.from_payload(json.loads(data)))
                with self._lock:
                    self._decoded[row_id] = hit
                found[row_id] = hit
        return found

    def _step(self, entry: _Sum, rows: list[CellRow]) -> set[str]:
        """Bring ``entry``'s cells of ``rows`` to their stored seq by the deltas their
        writes carry (``JourneyStore.cell_deltas``), where a delta starts at the seq held;
        returns the row ids brought up to date."""
        if not rows:
            return set()
        stepped = set()
        for row_id, (seq, base, text) in self.rows.cell_deltas([r.row_id for r in rows]).items():
            held_seq, before, end_hour = entry.cells[row_id]
            if text is None or base != held_seq:
                continue
            delta = Cell.from_payload(json.loads(text))
            with self._lock:
                hit = self._decoded.get(row_id)
            if hit is not None and hit[0] == seq:
                cell = hit[1]
            else:
                cell = before.plus(delta)
                with self._lock:
                    self._decoded[row_id] = (seq, cell)
            entry.add_delta(delta, end_hour)
            entry.cells[row_id] = (seq, cell, end_hour)
            stepped.add(row_id)
        self.deltas_applied += len(stepped)
        return stepped

    def _summed(
        self, signature: tuple, rows: list[CellRow], idle_hour: int
    ) -> tuple[JourneyStats, Counter[str]]:
        """The sum of ``rows``' cells (``_Sum.copy``: read only but for ``dropped``) with
        the sessions ended in cells whose last hour is before ``idle_hour`` as dropped,
        and its users, kept per filter and brought up to date by retracting and adding
        only the cells written since: a request costs the cells that changed, not all."""
        with self._lock:
            entry = self._sums.pop(signature, None)
        if entry is None:
            entry = _Sum(idle_hour)
        elif entry.idle_hour != idle_hour:
            entry.at_idle_hour(idle_hour)
        wanted = {r.row_id: r for r in rows}
        for row_id, (_, cell, end_hour) in list(entry.cells.items()):
            if row_id not in wanted:
                entry.add(cell, -1, end_hour)
                del entry.cells[row_id]
        held = entry.cells
        changed = [r for r in rows if r.row_id not in held or held[r.row_id][0] != r.seq]
        # Rewritten since this sum read them: where the write says what changed since
        # the seq held, that change alone (not the whole cell decoded and compared).
        stepped = self._step(entry, [r for r in changed if r.row_id in held])
        changed = [r for r in changed if r.row_id not in stepped]
        cells = self._cells(changed)
        for row_id, (seq, cell) in cells.items():
            before = held.get(row_id)
            end_hour = wanted[row_id].key.end_hour
            if before is None:
                entry.add(cell, 1, end_hour)
            else:
                # Rewritten since (the hour's cells, at every flush): only what differs.
                entry.replace(before[1], cell, end_hour)
            held[row_id] = (seq, cell, end_hour)
        for r in changed:  # deleted since it was listed
            if r.row_id not in cells and r.row_id in held:
                _, cell, end_hour = held.pop(r.row_id)
                entry.add(cell, -1, end_hour)
        copy = entry.copy()
        with self._lock:
            self._sums[signature] = entry
            while len(self._sums) > SUM_CACHE_FILTERS:
                self._sums.popitem(last=False)
        return copy

    def stats(
        self,
        names: DimensionNames,
        *,
        since: float | None,
        until: float | None,
        segments: list[tuple[str, str | list[Any]]],
        now: float,
        dropoff_timeout_s: float,
        exact: Exact,
    ) -> tuple[JourneyStats, set[str]] | None:
        """The aggregates of the filtered sessions, and the topic map versions the cells
        read were derived under; None when the cells cannot answer (``answerable``)."""
        rows = self.rows.cell_rows(names)
        if not rows or not self.answerable(rows, [k for k, _ in segments]):
            return None
        wanted = [(k, _accepted(v)) for k, v in segments]
        idle_before = now - dropoff_timeout_s
        idle_hour = math.floor(idle_before / HOUR)
        versions: set[str] = set()
        boundary: list[CellRow] = []  # cells whose sessions are computed one by one
        at_idle: list[CellRow] = []  # whole cells at the drop-off boundary hour
        inside_rows: list[CellRow] = []
        for row in rows:
            key = row.key
            first_from, last_to = key.start_hour * HOUR, (key.end_hour + 1) * HOUR
            if until is not None and first_from > until:
                continue
            if since is not None and last_to <= since:
                continue
            segs = parse_segments_key(key.segments)
            if segs is not None and not all(segs.get(k) in ok for k, ok in wanted):
                continue
            inside = (since is None or first_from >= since) and (until is None or last_to <= until)
            if not inside or (wanted and key.segments in (MIXED, OTHER)):
                boundary.append(row)
                continue
            versions.add(row.version)
            inside_rows.append(row)
            if key.end_hour == idle_hour:
                at_idle.append(row)
        signature = (names.slug, since, until, tuple((k, tuple(sorted(ok))) for k, ok in wanted))
        stats, users = self._summed(signature, inside_rows, idle_hour)
        if at_idle:
            members = {}
            for row in at_idle:
                members.update(self._members_of(names, row))
            for m in members.values():
                last_at, path = m[1], m[4]
                if path and last_at < idle_before:
                    stats.dropped[path[-1]] += 1
        if boundary:
            # A session wholly inside the window counts whole, from what its cell keeps
            # of it; one the window cuts (or, under a segment filter, one whose segments
            # changed) is computed from its events within the filter.
            extra = JourneyStats()
            whole: list[list[Any]] = []  # members of the sessions that count whole
            cut: list[str] = []
            for row in boundary:
                versions.add(row.version)
                by_event = bool(wanted) and row.key.segments in (MIXED, OTHER)
                for sid, m in self._members_of(names, row).items():
                    first_at, last_at = m[0], m[1]
                    if (since is not None and last_at < since) or (
                        until is not None and first_at > until
                    ):
                        continue
                    inside = (since is None or first_at >= since) and (
                        until is None or last_at <= until
                    )
                    if inside and not by_event:
                        whole.append(m)
                        path = m[4]
                        if path and last_at < idle_before:
                            stats.dropped[path[-1]] += 1
                    else:
                        cut.append(sid)
            summed = Cell()
            summed.add_members(whole)
            more: Counter[str] = Counter()
            _add_cell(extra, more, summed)
            _add_exact(extra, more, exact(cut) if cut else [], now, dropoff_timeout_s)
            _merge(stats, extra)
            stats.users += sum(1 for u in more if u not in users)
        return stats, versions


@dataclass
class _Sum:
    """One filter's sum of cells, kept between requests, with the medians of the pairs
    whose histograms have not changed since they were computed (most of the cost of an
    answer with thousands of pairs) and every pair's histogram summed."""

    idle_hour: int
    cells: dict[str, tuple[int, Cell, int]] = field(default_factory=dict)  # seq, cell, end
    stats: JourneyStats = field(default_factory=JourneyStats)
    users: Counter[str] = field(default_factory=Counter)
    medians: dict[tuple[str, str], float | None] = field(default_factory=dict)
    all_bins: Counter[float] = field(default_factory=Counter)
    # Sessions ended in the cells whose last hour is before ``idle_hour``: dropped.
    dropped: Counter[str] = field(default_factory=Counter)

    def add(self, cell: Cell, sign: int, end_hour: int) -> None:
        _add_cell(self.stats, self.users, cell, sign)
        for pair, bins in cell.gaps.items():
            self.medians.pop(split_pair(pair), None)
            for b, n in bins.items():
                bump(self.all_bins, b, sign * n)
        if end_hour < self.idle_hour:
            _add_counts(self.dropped, cell.ended, sign)

    def replace(self, old: Cell, new: Cell, end_hour: int) -> None:
        """``add(old, -1)`` then ``add(new, 1)``, touching only the counts that differ:
        a flush rewrites a few big cells, and retracting and adding them whole made every
        read after it cost their size (``_add_diff``)."""
        s = self.stats
        for name in CELL_TOTALS:
            setattr(s, name, getattr(s, name) + getattr(new, name) - getattr(old, name))
        _add_diff(self.users, old.users, new.users)
        for name, key_of in _COUNTERS:
            _add_diff(getattr(s, name), getattr(old, name), getattr(new, name), key_of)
        empty: Counter[float] = Counter()
        for pair in old.gaps.keys() | new.gaps.keys():
            was, now = old.gaps.get(pair, empty), new.gaps.get(pair, empty)
            if was == now:
                continue
            key = split_pair(pair)
            self.medians.pop(key, None)
            mine = s.gap_bins.get(key)
            if mine is None:
                mine = s.gap_bins[key] = Counter()
            _add_diff(mine, was, now)
            _add_diff(self.all_bins, was, now)
            if not mine:
                del s.gap_bins[key]
        if end_hour < self.idle_hour:
            _add_diff(self.dropped, old.ended, new.ended)

    def add_delta(self, delta: Cell, end_hour: int) -> None:
        """A rewritten cell's change (signed counts: ``JourneyBook.cell_deltas``), as
        ``replace`` of the cell before and after would apply it."""
        s = self.stats
        for name in CELL_TOTALS:
            setattr(s, name, getattr(s, name) + getattr(delta, name))
        bump_all(self.users, delta.users)
        for name, key_of in _COUNTERS:
            bump_all(getattr(s, name), getattr(delta, name), key_of)
        for pair, bins in delta.gaps.items():
            key = split_pair(pair)
            self.medians.pop(key, None)
            mine = s.gap_bins.get(key)
            if mine is None:
                mine = s.gap_bins[key] = Counter()
            bump_all(mine, bins)
            bump_all(self.all_bins, bins)
            if not mine:
                del s.gap_bins[key]
        if end_hour < self.idle_hour:
            bump_all(self.dropped, delta.ended)

    def at_idle_hour(self, idle_hour: int) -> None:
        """The drop-off boundary moved (hourly): dropped recounted."""
        self.idle_hour, self.dropped = idle_hour, Counter()
        for _, cell, end_hour in self.cells.values():
            if end_hour < idle_hour:
                _add_counts(self.dropped, cell.ended, 1)

    def copy(self) -> tuple[JourneyStats, Counter[str]]:
        """The sum for one answer, and its users. Its counters are this sum's, shared and
        read only: ``_merge`` replaces those it adds to, and ``dropped`` is the answer's
        own (copying paths and users at every request was most of a warm one)."""
        s = self.stats
        for pair, bins in s.gap_bins.items():
            if pair not in self.medians:
                self.medians[pair] = binned_median(bins)
        return (
            JourneyStats(
                events=s.events,
                sessions=s.sessions,
                users=len(self.users),
                sessions_with_topic=s.sessions_with_topic,
                transitions=s.transitions,
                gap_bins=s.gap_bins,
                gap_medians=self.medians,
                all_gap_bins=self.all_bins,
                entries=s.entries,
                paths=s.paths,
                back_and_forth=s.back_and_forth,
                back_and_forth_sessions=s.back_and_forth_sessions,
                visited=s.visited,
                ended=s.ended,
                dropped=Counter(self.dropped),
            ),
            self.users,
        )


def _add_cell(stats: JourneyStats, users: Counter[str], cell: Cell, sign: int = 1) -> None:
    """Add (``sign`` 1) or retract (-1) one cell's counters."""
    for name in CELL_TOTALS:
        setattr(stats, name, getattr(stats, name) + sign * getattr(cell, name))
    _add_counts(users, cell.users, sign)
    for name, key_of in _COUNTERS:
        _add_counts(getattr(stats, name), getattr(cell, name), sign, key_of)
    for pair, bins in cell.gaps.items():
        key = split_pair(pair)
        mine = stats.gap_bins.get(key)
        if mine is None:
            mine = stats.gap_bins[key] = Counter()
        _add_counts(mine, bins, sign)
        if not mine:
            del stats.gap_bins[key]


def _add_counts(
    mine: Counter, theirs: Mapping[Any, int], sign: int, key_of: Callable | None = None
) -> None:
    """``mine`` += ``sign`` x ``theirs`` (keys through ``key_of``), keeping no zeros. A
    cell's counts are positive, so an addition never makes one: that loop is the first
    read's cost and is written for it."""
    if sign > 0:
        get = mine.get
        if key_of is None:
            for key, n in theirs.items():
                mine[key] = get(key, 0) + n
        else:
            for key, n in theirs.items():
                k = key_of(key)
                mine[k] = get(k, 0) + n
        return
    bump_all(mine, theirs, key_of, sign)


def _add_diff(
    mine: Counter,
    old: Mapping[Any, int],
    new: Mapping[Any, int],
    key_of: Callable | None = None,
) -> None:
    """``mine`` += ``new`` - ``old`` (keys through ``key_of``), keeping no zeros: one pass
    over each, a change only for the counts that differ (a rewritten cell's are mostly the
    same)."""
    get_old = old.get
    for key, n in new.items():
        d = n - get_old(key, 0)
        if d:
            bump(mine, key if key_of is None else key_of(key), d)
    for key, n in old.items():
        if key not in new:
            bump(mine, key if key_of is None else key_of(key), -n)


def _merge(stats: JourneyStats, extra: JourneyStats) -> None:
    """Add ``extra`` to a sum from ``_Sum.copy``, whose counters are shared: each one
    ``extra`` adds to is replaced by a new one (medians of the pairs it adds to are
    recomputed)."""
    for name in CELL_TOTALS:
        setattr(stats, name, getattr(stats, name) + getattr(extra, name))
    for name, _ in _COUNTERS:  # ``extra``'s keys are read already
        theirs = getattr(extra, name)
        if theirs:
            mine = Counter(getattr(stats, name))
            mine.update(theirs)
            setattr(stats, name, mine)
    stats.dropped.update(extra.dropped)  # the answer's own
    if extra.gap_bins:
        bins_of, medians = dict(stats.gap_bins), dict(stats.gap_medians)
        for pair, bins in extra.gap_bins.items():
            merged = Counter(bins_of.get(pair, ()))
            merged.update(bins)
            bins_of[pair] = merged
            medians.pop(pair, None)
        stats.gap_bins, stats.gap_medians = bins_of, medians
        if stats.all_gap_bins is not None:  # else the overall median merges gap_bins
            every = Counter(stats.all_gap_bins)
            for bins in extra.gap_bins.values():
                every.update(bins)
            stats.all_gap_bins = every


def _add_exact(
    stats: JourneyStats,
    users: Counter[str],
    journeys: list[SessionJourney],
    now: float,
    dropoff_timeout_s: float,
) -> None:
    """Add the aggregate of ``journeys`` (computed from events), their gaps binned as the
    cells bin them."""
    part = aggregate(journeys, now=now, dropoff_timeout_s=dropoff_timeout_s)
    users.update(j.user_id for j in journeys)
    part.gap_bins = {p: Counter(gap_bin(g) for g in gaps) for p, gaps in part.gaps.items()}
    part.gaps = {}
    _merge(stats, part)
