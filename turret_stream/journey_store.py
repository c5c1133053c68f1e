"""Rows of the journey aggregates in the store: the sessions actor writes them, the read
side reads cells. The payloads are what ``Cell`` and ``SessionRuns`` serialise
(``journey_book``); this module only places them.

- ``journey_cells``: one row per (dimension, partition of the sessions actor, cell key),
  the cell's counters and, apart, its members (read only for cells at a time boundary);
- ``journey_sessions``: one row per (dimension, session): its compact path, from which a
  restarted owner re-derives every contribution (cells are a cache of those).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from turret_stream.catalog import DimensionNames
from turret_stream.journey_book import Cell, CellKey, SessionRuns
from turret_stream.storage import Filter, Point, VectorStore

CELLS = "journey_cells"
SESSIONS = "journey_sessions"
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
        sessions: list[SessionRuns],
    ) -> int:
        """Upsert changed cells (delete emptied ones) and sessions; bytes written."""
        points, gone, size = [], [], 0
        for key, cell in cells.items():
            row_id = self.cell_id(names, partition, key)
            if cell is None:
                gone.append(row_id)
                continue
            data = json.dumps(cell.to_payload(), separators=(",", ":"))
            members = json.dumps(cell.members, separators=(",", ":"))
            size += len(data) + len(members)
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
                        "members": members,
                    },
                )
            )
        if gone:
            self.store.delete(CELLS, gone)
        if points:
            self.store.upsert(CELLS, points)
        rows = []
        for runs in sessions:
            data = json.dumps(runs.to_payload(), separators=(",", ":"))
            size += len(data)
            rows.append(
                Point(
                    f"{names.slug}/{runs.session_id}",
                    _UNIT,
                    {"slug": names.slug, "partition": partition, "data": data},
                )
            )
        if rows:
            self.store.upsert(SESSIONS, rows)
        return size

    def drop_cells(self, names: DimensionNames, partition: int) -> None:
        """Forget the partition's cells (a restarted owner rewrites them all)."""
        ids = [
            r.id
            for r in self._scan(CELLS, Filter(must={"slug": names.slug, "partition": partition}))
        ]
        if ids:
            self.store.delete(CELLS, ids)

    def sessions(self, names: DimensionNames, partition: int) -> Iterator[SessionRuns]:
        for r in self._scan(SESSIONS, Filter(must={"slug": names.slug, "partition": partition})):
            yield SessionRuns.from_payload(json.loads(r.payload["data"]))

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

    def members(self, row_ids: list[str]) -> dict[str, list[Any]]:
        """session id -> ``Contribution.to_member`` of the sessions of these cells."""
        found: dict[str, list[Any]] = {}
        for r in self.store.retrieve(CELLS, row_ids):
            found.update(json.loads(r.payload["members"]))
        return found

    def _scan(self, collection: str, flt: Filter) -> Iterator[Any]:
        if not self.store.has_collection(collection):
            return
        offset = None
        while True:
            records, offset = self.store.scroll(collection, filter=flt, limit=PAGE, offset=offset)
            yield from records
            if offset is None:
                return
