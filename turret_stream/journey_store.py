"""Rows of the journey aggregates in the store: the sessions actor writes them, the read
side reads cells. The payloads are what ``Cell`` and ``SessionRuns`` serialise
(``journey_book``); this module only places them.

- ``journey_cells``: one row per (dimension, partition of the sessions actor, cell key),
  the cell's counters;
- ``journey_sessions``: one row per (dimension, session): its compact path, from which a
  restarted owner re-derives every contribution (cells are a cache of those);
- ``journey_members``: one small row per (dimension, session): its contribution
  (``Contribution.to_member``) under its cell key, which the read side reads for the
  cells a time window or the drop-off boundary cuts.

A write is one numbered commit per (dimension, partition): the sessions' rows, then their
members (each with the write's number and the contribution the cells counted before it,
``prev``: the undo record), then in one upsert the cells and the partition's commit row.
One upsert is applied whole or not at all (the store's write-ahead log), so a restart
finds the members of a write whose cells did not land by its number (the commit row's
plus one) and puts the stored cells in step from their ``prev``: no session has to be
re-derived to trust the cells (``journey_owner``). Emptied cells are written empty in
the same upsert and deleted after it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from turret_stream.catalog import DimensionNames
from turret_stream.faults import crash_point
from turret_stream.journey_book import Cell, CellKey, Contribution, SessionRuns
from turret_stream.storage import Filter, Point, VectorStore

CELLS = "journey_cells"
SESSIONS = "journey_sessions"
MEMBERS = "journey_members"
_UNIT = [1.0]
PAGE = 1000
# The commit row of a partition sits with the cells (one upsert) under a slug of its own,
# so readers of a dimension's cells never see it.
_COMMIT = "~commit"
# 2: session rows carry their micro-clusters (``mcs``). A partition written in an earlier
# format is rebuilt once, every session rewritten (``journey_owner``).
FORMAT = 2


@dataclass(frozen=True)
class Commit:
    """The last write of a partition whose cells landed."""

    number: int
    version: str  # the topic map version its contributions were derived under
    clock: float  # the partition's latest event time then


@dataclass(frozen=True)
class StoredMember:
    runs_id: str  # the session's row id
    contribution: Contribution
    prev: Contribution | None  # what the cells counted for it before the write of its row


@dataclass(frozen=True)
class CellRow:
    """A stored cell without its counters (``cell_data`` reads those, for the rows whose
    ``seq`` a reader has not decoded yet)."""

    key: CellKey
    partition: int
    version: str
    seq: int
    row_id: str


# What a scan of the cells reads: everything but the counters.
_ROW_FIELDS = ["start_hour", "end_hour", "segments", "partition", "version", "seq"]


class JourneyStore:
    def __init__(self, store: VectorStore) -> None:
        self.store = store
        store.create_collection(
            CELLS,
            1,
            "dot",
            indexes={"slug": "keyword", "partition": "integer", "end_hour": "integer"},
        )
        store.create_collection(
            SESSIONS,
            1,
            "dot",
            indexes={"slug": "keyword", "partition": "integer", "mcs": "integer"},
        )
        store.create_collection(
            MEMBERS,
            1,
            "dot",
            indexes={
                "slug": "keyword",
                "partition": "integer",
                "start_hour": "integer",
                "end_hour": "integer",
                "segments": "keyword",
                "write": "integer",
            },
        )

    # -- write side ---------------------------------------------------------------------

    @staticmethod
    def cell_id(names: DimensionNames, partition: int, key: CellKey) -> str:
        return f"{names.slug}/p{partition}/{key.to_id()}"

    @staticmethod
    def session_row_id(names: DimensionNames, session_id: str) -> str:
        """A session's row id, the same for its path (``journey_sessions``) and its
        member (``journey_members``)."""
        return f"{names.slug}/{session_id}"

    def write(
        self,
        names: DimensionNames,
        partition: int,
        version: str,
        seq: int,
        cells: Mapping[CellKey, Cell | None],
        sessions: list[tuple[SessionRuns, Contribution, Contribution | None]],
        commit: Commit,
        deltas: Mapping[CellKey, tuple[int, Cell]] | None = None,
    ) -> int:
        """Write commit ``commit.number``: changed sessions (each with the contribution the
        cells counted before), then changed cells with the commit row; bytes written.
        ``deltas``: for cells last written at a known ``seq``, (that seq, what changed
        since): a reader holding the cell at that seq applies the change instead of
        decoding the whole cell (``cell_deltas``)."""
        points, gone, size = [], [], 0
        for key, cell in cells.items():
            row_id = self.cell_id(names, partition, key)
            if cell is None:
                gone.append(row_id)
                cell = Cell()  # written empty with the others, deleted after
            data = json.dumps(cell.to_payload(), separators=(",", ":"))
            size += len(data)
            base, delta = (deltas or {}).get(key, (None, None))
            delta_text = (
                None if delta is None else json.dumps(delta.to_payload(), separators=(",", ":"))
            )
            size += len(delta_text or "")
            points.append(
                Point(
                    row_id,
                    _UNIT,
                    {
                        "slug": names.slug,
                        "partition": partition,
                        "start_hour": key.start_hour,
                        "end_hour": key.end_hour,
                        "segments": key.segments,
                        "version": version,
                        "seq": seq,
                        "data": data,
                        "base": None if delta_text is None else base,
                        "delta": delta_text,
                    },
                )
            )
        rows, members = [], []
        for runs, c, prev in sessions:
            row = self._session_point(names, partition, runs)
            member = json.dumps(c.to_member(), separators=(",", ":"))
            undo = None if prev is None else json.dumps(prev.to_record(), separators=(",", ":"))
            size += len(row.payload["data"]) + len(member) + len(undo or "")
            row_id = row.id
            rows.append(row)
            members.append(
                Point(
                    row_id,
                    _UNIT,
                    {
                        "slug": names.slug,
                        "partition": partition,
                        "start_hour": c.key.start_hour,
                        "end_hour": c.key.end_hour,
                        "segments": c.key.segments,
                        "session_id": runs.session_id,
                        "member": member,
                        "write": commit.number,
                        "prev": undo,
                    },
                )
            )
        if rows:
            self.store.upsert(SESSIONS, rows)
            crash_point("journey-sessions")
            self.store.upsert(MEMBERS, members)
        crash_point("journey-members")
        # Cells last, with the commit row: a reader that sees a cell's new ``seq`` finds
        # its members as new, and a restart knows this write's cells landed.
        points.append(self._commit_point(names, partition, commit))
        self.store.upsert(CELLS, points)
        crash_point("journey-cells")
        if gone:
            self.store.delete(CELLS, gone)
        return size

    def rewrite_sessions(
        self, names: DimensionNames, partition: int, sessions: list[SessionRuns]
    ) -> None:
        """Sessions' rows written again as they are (in this ``FORMAT``)."""
        if sessions:
            self.store.upsert(
                SESSIONS, [self._session_point(names, partition, r) for r in sessions]
            )

    @staticmethod
    def _session_point(names: DimensionNames, partition: int, runs: SessionRuns) -> Point:
        data = json.dumps(runs.to_payload(), separators=(",", ":"))
        # Its micro-clusters, indexed: after a topic map change only the sessions through
        # a moved micro-cluster are read back (``session_pages``).
        mcs = runs.micro_clusters()
        payload = {"slug": names.slug, "partition": partition, "mcs": mcs, "data": data}
        return Point(JourneyStore.session_row_id(names, runs.session_id), _UNIT, payload)

    @staticmethod
    def _commit_point(names: DimensionNames, partition: int, commit: Commit) -> Point:
        payload = {
            "slug": names.slug + _COMMIT,
            "partition": partition,
            "format": FORMAT,
            "write": commit.number,
            "version": commit.version,
            "clock": commit.clock,
        }
        return Point(f"{names.slug}/p{partition}/{_COMMIT}", _UNIT, payload)

    # -- a restart ----------------------------------------------------------------------

    def last_commit(self, names: DimensionNames, partition: int) -> Commit | None:
        """The partition's last write whose cells landed (None: none, or written in an
        earlier ``FORMAT``: the owner then rebuilds and rewrites every session)."""
        if not self.store.has_collection(CELLS):
            return None
        found = self.store.retrieve(CELLS, [f"{names.slug}/p{partition}/{_COMMIT}"])
        if not found or found[0].payload.get("format", 1) != FORMAT:
            return None
        p = found[0].payload
        return Commit(int(p["write"]), str(p["version"]), float(p["clock"]))

    def partition_cells(self, names: DimensionNames, partition: int) -> dict[CellKey, Cell]:
        flt = Filter(must={"slug": names.slug, "partition": partition})
        return {
            _cell_key(r.payload): Cell.from_payload(json.loads(r.payload["data"]))
            for r in self._scan(CELLS, flt)
        }

    def stored_members(
        self,
        names: DimensionNames,
        partition: int,
        *,
        write: int | None = None,
        ending_from_hour: int | None = None,
    ) -> Iterator[list[StoredMember]]:
        """The partition's member rows written by commit ``write``, or of sessions whose
        last event is in hour ``ending_from_hour`` or later, a page at a time."""
        must: dict[str, Any] = {"slug": names.slug, "partition": partition}
        if write is not None:
            must["write"] = write
        ranges = {} if ending_from_hour is None else {"end_hour": (ending_from_hour, None)}
        page: list[StoredMember] = []
        for r in self._scan(MEMBERS, Filter(must=must, ranges=ranges)):
            p = r.payload
            undo = p.get("prev")
            prev = (
                None
                if undo is None
                else Contribution.from_record(p["session_id"], json.loads(undo))
            )
            page.append(StoredMember(r.id, _contribution(p), prev))
            if len(page) == PAGE:
                yield page
                page = []
        if page:
            yield page

    def sessions_by_id(self, row_ids: list[str]) -> dict[str, SessionRuns]:
        """Row id -> the session's stored path."""
        return {
            r.id: SessionRuns.from_payload(json.loads(r.payload["data"]))
            for r in self.store.retrieve(SESSIONS, row_ids)
        }

    def session_runs(self, names: DimensionNames, session_ids: list[str]) -> dict[str, SessionRuns]:
        """Session id -> its stored path, for those of ``session_ids`` that have one."""
        rows = self.sessions_by_id([self.session_row_id(names, sid) for sid in session_ids])
        return {runs.session_id: runs for runs in rows.values()}

    def cell_keys(self, names: DimensionNames, partition: int) -> list[CellKey]:
        """The keys of the partition's stored cells."""
        flt = Filter(must={"slug": names.slug, "partition": partition})
        return [_cell_key(r.payload) for r in self._scan(CELLS, flt)]

    def session_pages(
        self, names: DimensionNames, partition: int, moved: set[int] | None = None
    ) -> Iterator[list[tuple[SessionRuns, Contribution | None]]]:
        """The partition's stored sessions (only those through one of the micro-clusters
        ``moved``, if given), a page at a time, each with the contribution its member row
        holds (None: no member row): memory bounded by a page."""
        if not self.store.has_collection(SESSIONS):
            return
        must: dict[str, Any] = {"slug": names.slug, "partition": partition}
        if moved is not None:
            if not moved:
                return
            must["mcs"] = sorted(moved)
        flt = Filter(must=must)
        offset = None
        while True:
            records, offset = self.store.scroll(SESSIONS, filter=flt, limit=PAGE, offset=offset)
            members = {
                r.id: _contribution(r.payload)
                for r in self.store.retrieve(MEMBERS, [r.id for r in records])
                if r.payload.get("partition") == partition
            }
            yield [
                (SessionRuns.from_payload(json.loads(r.payload["data"])), members.get(r.id))
                for r in records
            ]
            if offset is None:
                return

    def stored_contribution(
        self, names: DimensionNames, partition: int, session_id: str
    ) -> Contribution | None:
        """The contribution a session's member row holds, if it was written by
        ``partition`` (what that partition's cells count for the session)."""
        found = self.store.retrieve(MEMBERS, [self.session_row_id(names, session_id)])
        if not found or found[0].payload.get("partition") != partition:
            return None
        return _contribution(found[0].payload)

    # -- read side ----------------------------------------------------------------------

    def cell_rows(self, names: DimensionNames) -> list[CellRow]:
        flt = Filter(must={"slug": names.slug})
        return [
            CellRow(
                _cell_key(r.payload),
                r.payload["partition"],
                r.payload["version"],
                r.payload["seq"],
                r.id,
            )
            for r in self._scan(CELLS, flt, _ROW_FIELDS)
        ]

    def cell_data(self, row_ids: list[str]) -> dict[str, tuple[int, str]]:
        """Row id -> (seq, ``Cell.to_payload`` as JSON text) as stored now (a row
        deleted since it was listed is missing)."""
        return {
            r.id: (r.payload["seq"], r.payload["data"])
            for r in self.store.retrieve(CELLS, row_ids, fields=["seq", "data"])
        }

    def cell_deltas(self, row_ids: list[str]) -> dict[str, tuple[int, int | None, str | None]]:
        """Row id -> (seq, base, delta) as stored now: ``delta`` (JSON text of a signed
        ``Cell``) turns the row at seq ``base`` into the row at ``seq``; None when the
        write did not know the row's previous seq (the first write of a process)."""
        found = self.store.retrieve(CELLS, row_ids, fields=["seq", "base", "delta"])
        return {
            r.id: (r.payload["seq"], r.payload.get("base"), r.payload.get("delta")) for r in found
        }

    def members(self, names: DimensionNames, row: CellRow) -> dict[str, list[Any]]:
        """session id -> ``Contribution.to_member`` of the sessions of one cell."""
        flt = Filter(
            must={
                "slug": names.slug,
                "partition": row.partition,
                "start_hour": row.key.start_hour,
                "end_hour": row.key.end_hour,
                "segments": row.key.segments,
            }
        )
        return {
            r.payload["session_id"]: json.loads(r.payload["member"])
            for r in self._scan(MEMBERS, flt)
        }

    def _scan(self, collection: str, flt: Filter, fields: list[str] | None = None) -> Iterator[Any]:
        if not self.store.has_collection(collection):
            return
        offset = None
        while True:
            records, offset = self.store.scroll(
                collection, filter=flt, limit=PAGE, offset=offset, fields=fields
            )
            yield from records
            if offset is None:
                return


def _cell_key(payload: Mapping[str, Any]) -> CellKey:
    return CellKey(payload["start_hour"], payload["end_hour"], payload["segments"])


def _contribution(payload: Mapping[str, Any]) -> Contribution:
    """A member row back to the contribution it was written from (its cell key included)."""
    return Contribution.from_member(
        payload["session_id"], json.loads(payload["member"]), payload["segments"]
    )
