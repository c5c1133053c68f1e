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
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from turret_stream.catalog import DimensionNames
from turret_stream.journey_book import Cell, CellKey, Contribution, SessionRuns
from turret_stream.storage import Filter, Point, VectorStore

CELLS = "journey_cells"
SESSIONS = "journey_sessions"
MEMBERS = "journey_members"
_UNIT = [1.0]
PAGE = 1000


@dataclass(frozen=True)
class CellRow:
    key: CellKey
    partition: int
    version: str
    seq: int
    data: str  # Cell.to_payload as JSON text (decoded lazily, cached by seq)
    row_id: str


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
            SESSIONS, 1, "dot", indexes={"slug": "keyword", "partition": "integer"}
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
            },
        )

    # -- write side ---------------------------------------------------------------------

    @staticmethod
    def cell_id(names: DimensionNames, partition: int, key: CellKey) -> str:
        return f"{names.slug}/p{partition}/{key.to_id()}"

    def write(
        self,
        names: DimensionNames,
        partition: int,
        version: str,
        seq: int,
        cells: Mapping[CellKey, Cell | None],
        sessions: list[tuple[SessionRuns, Contribution]],
    ) -> int:
        """Upsert changed cells (delete emptied ones) and sessions; bytes written."""
        points, gone, size = [], [], 0
        for key, cell in cells.items():
            row_id = self.cell_id(names, partition, key)
            if cell is None:
                gone.append(row_id)
                continue
            data = json.dumps(cell.to_payload(), separators=(",", ":"))
            size += len(data)
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
                    },
                )
            )
        rows, members = [], []
        for runs, c in sessions:
            data = json.dumps(runs.to_payload(), separators=(",", ":"))
            member = json.dumps(c.to_member(), separators=(",", ":"))
            size += len(data) + len(member)
            row_id = f"{names.slug}/{runs.session_id}"
            rows.append(
                Point(row_id, _UNIT, {"slug": names.slug, "partition": partition, "data": data})
            )
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
                    },
                )
            )
        if rows:
            self.store.upsert(SESSIONS, rows)
            self.store.upsert(MEMBERS, members)
        # Cells last: a reader that sees a cell's new ``seq`` finds its members as new.
        if gone:
            self.store.delete(CELLS, gone)
        if points:
            self.store.upsert(CELLS, points)
        return size

    def cell_keys(self, names: DimensionNames, partition: int) -> list[CellKey]:
        """The keys of the partition's stored cells."""
        flt = Filter(must={"slug": names.slug, "partition": partition})
        return [
            CellKey(r.payload["start_hour"], r.payload["end_hour"], r.payload["segments"])
            for r in self._scan(CELLS, flt)
        ]

    def session_pages(
        self, names: DimensionNames, partition: int
    ) -> Iterator[list[tuple[SessionRuns, Contribution | None]]]:
        """The partition's stored sessions, a page at a time, each with the contribution
        its member row holds (None: no member row): memory bounded by a page."""
        if not self.store.has_collection(SESSIONS):
            return
        flt = Filter(must={"slug": names.slug, "partition": partition})
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
        found = self.store.retrieve(MEMBERS, [f"{names.slug}/{session_id}"])
        if not found or found[0].payload.get("partition") != partition:
            return None
        return _contribution(found[0].payload)

    # -- read side ----------------------------------------------------------------------

    def cell_rows(self, names: DimensionNames) -> list[CellRow]:
        return [
            CellRow(
                CellKey(r.payload["start_hour"], r.payload["end_hour"], r.payload["segments"]),
                r.payload["partition"],
                r.payload["version"],
                r.payload["seq"],
                r.payload["data"],
                r.id,
            )
            for r in self._scan(CELLS, Filter(must={"slug": names.slug}))
        ]

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

    def _scan(self, collection: str, flt: Filter) -> Iterator[Any]:
        if not self.store.has_collection(collection):
            return
        offset = None
        while True:
            records, offset = self.store.scroll(collection, filter=flt, limit=PAGE, offset=offset)
            yield from records
            if offset is None:
                return


def _contribution(payload: Mapping[str, Any]) -> Contribution:
    """A member row back to the contribution it was written from (its cell key included)."""
    c = Contribution.from_member(payload["session_id"], json.loads(payload["member"]))
    key = CellKey(payload["start_hour"], payload["end_hour"], payload["segments"])
    return Contribution(key, c.user_id, c.session_id, c.events, c.first_at, c.last_at, c.derived)
