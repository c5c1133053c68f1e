"""A dimension owner's learned state as records, written per batch, crash-consistent.

Records (collection ``owner_state``, every point's payload names its ``slug`` and
``kind``, so a restart reads a dimension's records back in any order):

==========================  ===========================================================
``<slug>:header``           the commit record: batch sequence number, the model's scalars,
                            the field type tracker, the event count, neutral topics and
                            the versions of the two whole-at-reclustering records
``<slug>:mc:<id>``          one per live micro-cluster: weight, count, pairs (DBSTREAM)
``<slug>:stats:<id>``       one per live micro-cluster: its event counts over time
``<slug>:absorbed:<seq>``   the micro-clusters absorbed during batch ``seq``
``<slug>:seen:<seq>``       the event ids learned in batch ``seq`` (the dedupe window)
``<slug>:communities@<v>``  Leiden's start partition, written at reclustering ``v``
``<slug>:journal``          the last batch's changes, whole (see below)
==========================  ===========================================================

Centres are points of the ``<slug>.mc`` collection (``store_index.py``) and the topic map
has its own records (``topic_map.py``).

A batch writes only what it changed (the micro-clusters ``take_dirty`` reports, the
batch's event ids, the topic map head); the two records that describe every
micro-cluster (the topic map base, Leiden's start) are written only at a reclustering,
which reads every micro-cluster anyway.

Crash consistency: the batch's changes are first written whole as the **journal** (one
point, so it lands or not), then applied to the keyed records, then the header is written
(the commit). Records written whole at a reclustering go under a new version before the
journal, and the header names the version in use, so an uncommitted one is never read.
A restart reads the header; if the journal is the next batch, it applies it again (every
write is an idempotent upsert or delete) and commits. So a kill at any point leaves
either the state before the batch (the batch is redelivered by Kafka and learned once) or
the state after it (the redelivered events are in the dedupe window and skipped).
``WRITE_BOUNDARIES`` are the points between writes; ``faults.crash_point`` stops the
process at one of them in tests.

Dedupe window: the event ids of the most recent batches, at least ``dedupe_window``
ids (``clustering.dedupe_window_events``); a redelivery within it is exact (skipped),
older batches' ids are forgotten (their seen records deleted) as new ones arrive.
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
from turret_stream.faults import crash_point
from turret_stream.storage import Filter, Point, VectorStore

COLLECTION = "owner_state"
FORMAT = 2
_UNIT = [1.0]

# In the order a batch reaches them (see the module doc).
WRITE_BOUNDARIES = (
    "events",  # the batch's events are in the event store
    "shadow",  # whole-at-reclustering records written under their new version
    "journal",  # the batch's changes written as one record
    "centres",  # centres moved / deleted
    "records",  # micro-cluster, stats, absorbed and seen records written
    "topic-map",  # the topic map head written
    "header",  # committed
    "topics",  # the topics collection updated
)


def _pack(data: Any) -> str:
    return base64.b64encode(
        zlib.compress(json.dumps(data, separators=(",", ":")).encode(), 3)
    ).decode()


def _unpack(blob: str) -> Any:
    return json.loads(zlib.decompress(base64.b64decode(blob)))


def _vector_to_text(v: np.ndarray) -> str:
    # float32: exactly what the store keeps of a centre.
    return base64.b64encode(np.asarray(v, dtype=np.float32).tobytes()).decode()


def _vector_from_text(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype=np.float32).astype(np.float64)


@dataclass
class Commit:
    """Everything one batch changed, as records (JSON-ready but the centres)."""

    seq: int
    header: dict[str, Any]
    micro_clusters: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[int, Any] = field(default_factory=dict)
    removed: list[int] = field(default_factory=list)
    centres: dict[int, np.ndarray] = field(default_factory=dict)
    absorbed: dict[int, int | None] = field(default_factory=dict)
    seen: list[str] = field(default_factory=list)
    topic_map_head: dict[str, Any] | None = None

    def to_record(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "header": self.header,
            "micro_clusters": self.micro_clusters,
            "stats": [[k, v] for k, v in self.stats.items()],
            "removed": self.removed,
            "centres": [[k, _vector_to_text(v)] for k, v in self.centres.items()],
            "absorbed": [[k, v] for k, v in self.absorbed.items()],
            "seen": self.seen,
            "topic_map_head": self.topic_map_head,
        }

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> Commit:
        return cls(
            seq=int(r["seq"]),
            header=r["header"],
            micro_clusters=r["micro_clusters"],
            stats={int(k): v for k, v in r["stats"]},
            removed=[int(x) for x in r["removed"]],
            centres={int(k): _vector_from_text(v) for k, v in r["centres"]},
            absorbed={int(k): (None if v is None else int(v)) for k, v in r["absorbed"]},
            seen=list(r["seen"]),
            topic_map_head=r["topic_map_head"],
        )


@dataclass
class Loaded:
    """A dimension's records as read back at a restart."""

    header: dict[str, Any] | None = None
    micro_clusters: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[int, Any] = field(default_factory=dict)
    absorbed: dict[int, int | None] = field(default_factory=dict)
    # (seq, event ids) of the seen records, oldest first
    seen: list[tuple[int, list[str]]] = field(default_factory=list)
    communities: list[list[int]] = field(default_factory=list)


class OwnerStateStore:
    """One dimension's records in the ``owner_state`` collection."""

    def __init__(self, store: VectorStore, names: DimensionNames) -> None:
        self.store = store
        self.names = names
        self.slug = names.slug
        store.create_collection(
            COLLECTION, 1, "dot", indexes={"slug": "keyword", "kind": "keyword"}
        )

    def _id(self, *parts: object) -> str:
        return ":".join([self.slug, *map(str, parts)])

    def _point(self, kind: str, point_id: str, **payload: Any) -> Point:
        return Point(point_id, _UNIT, {"slug": self.slug, "kind": kind, **payload})

    # -- writes ---------------------------------------------------------------------------

    def write_communities(self, version: int, record: list[list[int]]) -> int:
        blob = _pack(record)
        self.store.upsert(
            COLLECTION,
            [self._point("communities", f"{self.slug}:communities@{version}", blob=blob)],
        )
        return len(blob)

    def write_journal(self, commit: Commit) -> int:
        blob = _pack(commit.to_record())
        self.store.upsert(
            COLLECTION, [self._point("journal", self._id("journal"), seq=commit.seq, blob=blob)]
        )
        return len(blob)

    def apply(self, commit: Commit, centres: Any, topic_maps: Any) -> int:
        """Write a journalled batch to the keyed records and commit it (idempotent).
        ``centres``: the StoreIndex; ``topic_maps``: the TopicMapStore. Returns the
        bytes written to this collection (payloads)."""
        centres.write(commit.centres, commit.removed)
        crash_point("centres")
        points = [self._point("mc", self._id("mc", r["id"]), r=r) for r in commit.micro_clusters]
        points += [
            self._point("stats", self._id("stats", mc), r=s) for mc, s in commit.stats.items()
        ]
        if commit.absorbed:
            points.append(
                self._point(
                    "absorbed",
                    self._id("absorbed", commit.seq),
                    r=[[k, v] for k, v in commit.absorbed.items()],
                )
            )
        if commit.seen:
            points.append(
                self._point("seen", self._id("seen", commit.seq), seq=commit.seq, ids=commit.seen)
            )
        if points:
            self.store.upsert(COLLECTION, points)
        if commit.removed:
            gone = [self._id(kind, mc) for mc in commit.removed for kind in ("mc", "stats")]
            self.store.delete(COLLECTION, gone)
        crash_point("records")
        if commit.topic_map_head is not None:
            topic_maps.write_head(self.names, commit.topic_map_head)
        crash_point("topic-map")
        header = {**commit.header, "seq": commit.seq}
        self.store.upsert(COLLECTION, [self._point("header", self._id("header"), r=header)])
        crash_point("header")
        return sum(len(json.dumps(dict(p.payload))) for p in points)

    def drop_seen(self, seqs: Iterable[int]) -> None:
        ids = [self._id("seen", s) for s in seqs]
        if ids:
            self.store.delete(COLLECTION, ids)

    def drop_communities(self, version: int) -> None:
        self.store.delete(COLLECTION, [f"{self.slug}:communities@{version}"])

    # -- reads ----------------------------------------------------------------------------

    def header(self) -> dict[str, Any] | None:
        found = self.store.retrieve(COLLECTION, [self._id("header")])
        return found[0].payload["r"] if found else None

    def journal(self) -> Commit | None:
        found = self.store.retrieve(COLLECTION, [self._id("journal")])
        return Commit.from_record(_unpack(found[0].payload["blob"])) if found else None

    def load(self) -> Loaded:
        out = Loaded(header=self.header())
        if out.header is None:
            return out
        seen: list[tuple[int, list[str]]] = []
        for kind in ("mc", "stats", "absorbed", "seen"):
            offset = None
            while True:
                records, offset = self.store.scroll(
                    COLLECTION,
                    filter=Filter(must={"slug": self.slug, "kind": kind}),
                    limit=2048,
                    offset=offset,
                )
                for r in records:
                    p = r.payload
                    if kind == "mc":
                        out.micro_clusters.append(p["r"])
                    elif kind == "stats":
                        out.stats[int(r.id.rsplit(":", 1)[1])] = p["r"]
                    elif kind == "absorbed":
                        out.absorbed.update({int(k): v for k, v in p["r"]})
                    else:
                        seen.append((int(p["seq"]), p["ids"]))
                if offset is None:
                    break
        out.seen = sorted(seen)
        version = out.header.get("communities")
        if version:
            found = self.store.retrieve(COLLECTION, [f"{self.slug}:communities@{version}"])
            if found:
                out.communities = _unpack(found[0].payload["blob"])
        return out
