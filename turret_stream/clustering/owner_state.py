"""A dimension owner's learned state: a log of per-batch changes plus checkpoints.

Records (collection ``owner_state``; each payload names its ``slug`` and ``kind``, so a
restart finds a dimension's records and reads them back in any order):

==============================  =======================================================
``<slug>:log:<seq>``            what batch ``seq`` changed (:class:`Changes`): the records
                                of the micro-clusters it touched or removed (DBSTREAM's
                                ``micro_cluster_record``), what it counted of their
                                events over time (``McStats.partial_record``),
                                absorptions, its event ids, the model's scalars and, at a
                                reclustering, Leiden's start partition (``blob``); beside
                                it, the centres it moved (``centres``, float32 rows)
``<slug>:checkpoint``           which checkpoint is current: version, parts, last batch
``<slug>:checkpoint@<v>:<i>``   part ``i`` of checkpoint ``v``: the whole state, in chunks
``<slug>:seen:<first>-<last>``  the event ids of batches ``first`` to ``last`` (part of the
                                dedupe window), written once by the checkpoint after them
                                and shared by the checkpoints after it while any of them
                                is still in the window
==============================  =======================================================

A batch writes **one** log record (compressed JSON, its size follows what the batch
changed, not the history); that write is the batch's commit, atomic because it is one
point. Centres (``<slug>.mc``, searched by the model) and the topic map (``topic_map.py``)
are written after it and are redone at a restart from the last log record, since only
the last batch can have been interrupted between its commit and those writes. Records
written whole at a reclustering (the topic map base) go under a new version before the
commit and are only used once it names them.

Compaction: when the log's state (its blobs) since the last checkpoint outgrows that
checkpoint (and ``checkpoint_min_bytes``), the whole state is written as a new checkpoint
version, the pointer is switched to it, and the older checkpoint and the log it covers
are deleted. The cost per batch stays proportional to the batch (each checkpoint is paid
for by at least as many bytes of log), and a restart reads at most about twice the state.
A record's centres do not count: only the last record's are ever read (to redo its
centre writes), and they are most of a batch's bytes (a moved centre is 1.5 KB, its
micro-cluster record about 80 bytes), so counting them made the owner write its whole
state every other batch, a cost that grew with the number of micro-clusters.

Dedupe window: the event ids of the most recent batches, at least ``dedupe_window``
(``clustering.dedupe_window_events``): a redelivery within it is recognised exactly;
older ids are forgotten (checkpoints keep the window only). A checkpoint does not copy
the window's ids into its parts: it writes the ids of the batches since the previous
checkpoint as one ``seen`` record and lists the ``seen`` records the window spans, so
each id is written twice in all (its batch's log record, one ``seen`` record) rather than
once per checkpoint while it is in the window (at the default 200,000 ids, ~7 MB of JSON
compressed at every checkpoint, the largest cost that grew with history).

``WRITE_BOUNDARIES`` are the points between writes; ``faults.crash_point`` stops the
process at one of them in tests.
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from turret_stream.catalog import DimensionNames
from turret_stream.clustering.mc_stats import McStats
from turret_stream.faults import crash_point
from turret_stream.storage import Filter, Point, VectorStore

COLLECTION = "owner_state"
FORMAT = 2
_UNIT = [1.0]
PART_SIZE = 4096  # micro-clusters per checkpoint part

# In the order a batch reaches them.
WRITE_BOUNDARIES = (
    "events",  # the batch's events are in the event store
    "shadow",  # whole-at-reclustering records written under their new version
    "log",  # the batch's changes committed (one record)
    "centres",  # centres moved / deleted
    "topic-map",  # the topic map head written
    "topics",  # the topics collection updated
    "checkpoint-parts",  # a compaction's parts written
    "checkpoint",  # the checkpoint pointer switched
    "compacted",  # the old checkpoint and log deleted
)


def pack(data: Any) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.b64encode(zlib.compress(raw, 3)).decode()


def unpack(blob: str) -> Any:
    return json.loads(zlib.decompress(base64.b64decode(blob)))


def _vector_from_text(text: str) -> np.ndarray:
    """A centre of the previous log layout (one text per centre, inside the blob)."""
    return np.frombuffer(base64.b64decode(text), dtype=np.float32).astype(np.float64)


@dataclass
class Changes:
    """What one batch changed. ``header``: the owner's scalars after the batch (model
    clock, field type tracker, event count, neutral topics, topic map base version)."""

    seq: int
    header: dict[str, Any]
    micro_clusters: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[int, Any] = field(default_factory=dict)
    removed: list[int] = field(default_factory=list)
    centres: dict[int, np.ndarray] = field(default_factory=dict)
    absorbed: dict[int, int | None] = field(default_factory=dict)
    seen: list[str] = field(default_factory=list)
    communities: list[list[int]] | None = None
    # Topic registry changes of this batch (micro-cluster -> topic, None: none any more);
    # a batch that reclustered has none (its topic map base holds the whole mapping).
    assigned: dict[int, str | None] = field(default_factory=dict)

    @property
    def reclustered(self) -> bool:
        return self.header.get("base") == self.seq

    def to_record(self) -> dict[str, Any]:
        """Everything but the centres (see :meth:`centres_record`)."""
        return {
            "seq": self.seq,
            "header": self.header,
            "micro_clusters": self.micro_clusters,
            "stats": [[k, v] for k, v in self.stats.items()],
            "removed": self.removed,
            "absorbed": [[k, v] for k, v in self.absorbed.items()],
            "seen": self.seen,
            "communities": self.communities,
            "assigned": [[k, v] for k, v in self.assigned.items()],
        }

    def centres_record(self) -> dict[str, Any]:
        """The moved centres: their ids and one float32 matrix (exactly what the store
        keeps of a centre)."""
        ids = list(self.centres)
        rows = np.array([self.centres[m] for m in ids], dtype=np.float32)
        return {"ids": ids, "rows": base64.b64encode(rows.tobytes()).decode()}

    @staticmethod
    def centres_from_record(r: Mapping[str, Any]) -> dict[int, np.ndarray]:
        ids = [int(m) for m in r["ids"]]
        if not ids:
            return {}
        rows = np.frombuffer(base64.b64decode(r["rows"]), dtype=np.float32)
        rows = rows.reshape(len(ids), -1).astype(np.float64)
        return dict(zip(ids, rows, strict=True))

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> Changes:
        """Centres are left out (read separately, for the last record only), except in
        records of the previous layout, which kept them in the blob."""
        return cls(
            seq=int(r["seq"]),
            header=r["header"],
            micro_clusters=r["micro_clusters"],
            stats={int(k): v for k, v in r["stats"]},
            removed=[int(x) for x in r["removed"]],
            centres={int(k): _vector_from_text(v) for k, v in r.get("centres", ())},
            absorbed={int(k): (None if v is None else int(v)) for k, v in r["absorbed"]},
            seen=list(r["seen"]),
            communities=r["communities"],
            assigned={int(k): v for k, v in r["assigned"]},
        )


@dataclass
class State:
    """A dimension's whole state as read back: the latest checkpoint with the log after
    it applied, in sequence order."""

    seq: int = 0
    header: dict[str, Any] | None = None
    micro_clusters: dict[int, dict[str, Any]] = field(default_factory=dict)
    stats: dict[int, Any] = field(default_factory=dict)
    absorbed: dict[int, int | None] = field(default_factory=dict)
    # (seq, event ids) per batch, oldest first: the dedupe window
    seen: list[tuple[int, list[str]]] = field(default_factory=list)
    communities: list[list[int]] = field(default_factory=list)
    # Since the topic map base in use: registry changes and absorptions (its head).
    assigned: dict[int, str | None] = field(default_factory=dict)
    absorbed_since: dict[int, int | None] = field(default_factory=dict)
    last: Changes | None = None  # the last batch's changes (redone at a restart)

    def apply(self, c: Changes) -> None:
        if c.reclustered:
            self.assigned, self.absorbed_since = {}, {}
        else:
            self.assigned.update(c.assigned)
            self.absorbed_since.update(c.absorbed)
        self.seq = c.seq
        self.header = c.header
        for r in c.micro_clusters:
            self.micro_clusters[int(r["id"])] = r
        for mc, record in c.stats.items():
            if isinstance(record, dict):  # what the batch counted (McStats.partial_record)
                self.stats[mc] = McStats.apply_partial(self.stats.get(mc), record)
            else:
                self.stats[mc] = record
        for mc in c.removed:
            self.micro_clusters.pop(mc, None)
            self.stats.pop(mc, None)
        self.absorbed.update(c.absorbed)
        if c.seen:
            self.seen.append((c.seq, c.seen))
        if c.communities is not None:
            self.communities = c.communities
        self.last = c


class OwnerStateStore:
    """One dimension's log and checkpoints in the ``owner_state`` collection."""

    def __init__(
        self, store: VectorStore, names: DimensionNames, checkpoint_min_bytes: int = 1 << 20
    ) -> None:
        self.store = store
        self.names = names
        self.slug = names.slug
        self.checkpoint_min_bytes = checkpoint_min_bytes
        indexes = {"slug": "keyword", "kind": "keyword", "seq": "integer"}
        store.create_collection(COLLECTION, 1, "dot", indexes=indexes)  # type: ignore[arg-type]
        # Bytes of the current checkpoint, and of the log written since.
        self.checkpoint_bytes = 0
        self.log_bytes = 0
        self.checkpoint_version = 0
        # The (first, last, bytes) of the ``seen`` records the checkpoint lists.
        self.seen_ranges: list[tuple[int, int, int]] = []

    def _point(self, kind: str, point_id: str, **payload: Any) -> Point:
        return Point(point_id, _UNIT, {"slug": self.slug, "kind": kind, **payload})

    # -- writes ---------------------------------------------------------------------------

    def commit(self, changes: Changes) -> int:
        """Write a batch's changes: one record, the batch's commit. Returns its bytes."""
        blob = pack(changes.to_record())
        centres = changes.centres_record()
        point = self._point(
            "log", f"{self.slug}:log:{changes.seq}", seq=changes.seq, blob=blob, centres=centres
        )
        self.store.upsert(COLLECTION, [point])
        crash_point("log")
        self.log_bytes += len(blob)
        return len(blob) + len(centres["rows"])

    def compaction_due(self) -> bool:
        return self.log_bytes >= max(self.checkpoint_bytes, self.checkpoint_min_bytes)

    def checkpoint(self, state: State) -> int:
        """Write ``state`` whole as a new checkpoint, switch to it, delete what it
        replaces. Returns the bytes written."""
        version = state.seq
        mcs = sorted(state.micro_clusters)
        parts = []
        for start in range(0, max(1, len(mcs)), PART_SIZE):
            chunk = mcs[start : start + PART_SIZE]
            parts.append(
                {
                    "micro_clusters": [state.micro_clusters[m] for m in chunk],
                    "stats": [[m, state.stats[m]] for m in chunk if m in state.stats],
                }
            )
        # The dedupe window: the ``seen`` records still in it, and one more for the
        # batches since the last one.
        window_from = state.seen[0][0] if state.seen else state.seq + 1
        ranges = [r for r in self.seen_ranges if r[1] >= window_from]
        covered = ranges[-1][1] if ranges else 0
        fresh = [[seq, ids] for seq, ids in state.seen if seq > covered]
        points = []
        written = 0
        if fresh:
            blob = pack(fresh)
            written += len(blob)
            ranges.append((fresh[0][0], fresh[-1][0], len(blob)))
            points.append(self._point("seen", self._seen_id(ranges[-1]), blob=blob))
        parts[0].update(
            header=state.header,
            absorbed=[[k, v] for k, v in state.absorbed.items()],
            seen_ranges=[list(r) for r in ranges],
            seen_from=window_from,
            communities=state.communities,
            assigned=[[k, v] for k, v in state.assigned.items()],
            absorbed_since=[[k, v] for k, v in state.absorbed_since.items()],
        )
        parts_bytes = 0
        for i, part in enumerate(parts):
            blob = pack(part)
            parts_bytes += len(blob)
            points.append(self._point("part", f"{self.slug}:checkpoint@{version}:{i}", blob=blob))
        written += parts_bytes
        self.store.upsert(COLLECTION, points)
        crash_point("checkpoint-parts")
        # What a restart reads (the compaction threshold): the parts and every listed
        # ``seen`` record, though only the newest one was written now.
        size = parts_bytes + sum(r[2] for r in ranges)
        pointer = {"version": version, "parts": len(parts), "seq": state.seq, "bytes": size}
        self.store.upsert(
            COLLECTION, [self._point("pointer", f"{self.slug}:checkpoint", **pointer)]
        )
        crash_point("checkpoint")
        self.seen_ranges = ranges
        self._delete_before(version)
        crash_point("compacted")
        self.checkpoint_bytes, self.log_bytes = size, 0
        self.checkpoint_version = version
        return written

    def _seen_id(self, batches: tuple[int, int, int]) -> str:
        return f"{self.slug}:seen:{batches[0]}-{batches[1]}"

    def _delete_before(self, version: int) -> None:
        """Delete log records up to ``version``, checkpoint parts of older versions and
        ``seen`` records the checkpoint no longer lists (or never listed: written by a
        compaction that crashed before its switch)."""
        keep = f"{self.slug}:checkpoint@{version}:"
        log = self._scan("log", fields=("seq",))
        stale = [r.id for r in log if int(r.payload["seq"]) <= version]
        stale += [r.id for r in self._scan("part", fields=()) if not r.id.startswith(keep)]
        listed = {self._seen_id(r) for r in self.seen_ranges}
        stale += [r.id for r in self._scan("seen", fields=()) if r.id not in listed]
        if stale:
            self.store.delete(COLLECTION, stale)

    def _scan(self, kind: str, fields: tuple[str, ...] | None = None) -> Iterable[Any]:
        offset = None
        while True:
            records, offset = self.store.scroll(
                COLLECTION,
                filter=Filter(must={"slug": self.slug, "kind": kind}),
                limit=256,
                offset=offset,
                fields=fields,
            )
            yield from records
            if offset is None:
                return

    # -- reads ----------------------------------------------------------------------------

    def load(self) -> State:
        """The latest checkpoint plus the log after it."""
        state = State()
        found = self.store.retrieve(COLLECTION, [f"{self.slug}:checkpoint"])
        if found:
            pointer = found[0].payload
            version = int(pointer["version"])
            ids = [f"{self.slug}:checkpoint@{version}:{i}" for i in range(int(pointer["parts"]))]
            for record in self.store.retrieve(COLLECTION, ids):
                part = unpack(record.payload["blob"])
                for r in part["micro_clusters"]:
                    state.micro_clusters[int(r["id"])] = r
                state.stats.update({int(k): v for k, v in part["stats"]})
                if "header" in part:
                    state.header = part["header"]
                    state.absorbed = {int(k): v for k, v in part["absorbed"]}
                    state.seen = self._load_seen(part)
                    state.communities = part["communities"]
                    state.assigned = {int(k): v for k, v in part["assigned"]}
                    state.absorbed_since = {int(k): v for k, v in part["absorbed_since"]}
            state.seq = int(pointer["seq"])
            self.checkpoint_bytes = int(pointer["bytes"])
            self.checkpoint_version = version
        else:
            self.seen_ranges = []
        log = sorted(
            (int(r.payload["seq"]), r.id, r.payload["blob"])
            for r in self._scan("log", fields=("seq", "blob"))
            if int(r.payload["seq"]) > state.seq
        )
        self.log_bytes = 0
        for _, _, blob in log:
            state.apply(Changes.from_record(unpack(blob)))
            self.log_bytes += len(blob)
        if log and state.last is not None:
            # Only the last batch's centres are read: its centre writes are redone.
            (last,) = self.store.retrieve(COLLECTION, [log[-1][1]])
            if "centres" in last.payload:
                state.last.centres = Changes.centres_from_record(last.payload["centres"])
        return state

    def _load_seen(self, part: Mapping[str, Any]) -> list[tuple[int, list[str]]]:
        """The checkpoint's dedupe window, oldest batch first."""
        if "seen" in part:  # a checkpoint of the previous layout holds the ids itself
            self.seen_ranges = []
            return [(int(s), ids) for s, ids in part["seen"]]
        self.seen_ranges = [(int(a), int(b), int(n)) for a, b, n in part["seen_ranges"]]
        window_from = int(part["seen_from"])
        found = {
            r.id: r
            for r in self.store.retrieve(COLLECTION, [self._seen_id(r) for r in self.seen_ranges])
        }
        seen = []
        for batches in self.seen_ranges:
            record = found.get(self._seen_id(batches))
            if record is None:
                raise RuntimeError(
                    f"owner state of {self.slug}: the checkpoint lists event ids of batches "
                    f"{batches[0]}-{batches[1]} that are not in the store"
                )
            seen += [
                (int(s), ids) for s, ids in unpack(record.payload["blob"]) if int(s) >= window_from
            ]
        return seen
