"""EdgeStore: Qdrant's engine in-process (qdrant-edge-py), on disk.

Layout: one edge *shard* per collection, in ``<path>/<collection>/``, plus a lock file
``<path>/.lock``.

One process only. A shard's write-ahead log is locked while the shard is open, and the
store also takes an exclusive ``flock`` on ``<path>/.lock``, so a second EdgeStore on the
same directory (in another process, or in this one) raises ``StorageLocked`` instead of
corrupting data. Run a single turret-stream worker per data dir, or use the server
backend to share a Qdrant between processes.

Threads. The binding holds the GIL for the whole of every call (searches, updates,
``optimize``), so engine calls never run in parallel anyway; a lock still guards each
store because the collection registry changes under create/drop and a closed shard
must not be used.

HNSW. Edge has no background optimizer: points land in an appendable segment that is
searched by brute force until ``EdgeShard.optimize()`` runs; optimize builds the HNSW
index (and int8 quantized vectors) for segments above ``indexing_threshold``, merges
small segments and vacuums segments with many deleted points. This store calls it
itself after every ``EdgeTuning.indexing_threshold_points`` written points, inside the
write that crosses the mark. Because the GIL is held, an optimize run stops every
thread of the process for its duration: indexing a few thousand 384-dim points takes
a fraction of a second, but a vacuum of a large segment (after ~20% of its points
were rewritten or deleted) takes seconds per 10k points. See benchmarks/store_search.py.
"""

from __future__ import annotations

import fcntl
import json
import math
import shutil
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import qdrant_edge as qe

from turret_stream.storage.base import (
    PAYLOAD_ONLY_DIM,
    AnyOf,
    Between,
    CollectionNotFound,
    Condition,
    Distance,
    Either,
    Eq,
    Filter,
    Hit,
    IndexType,
    Point,
    Record,
    StorageLocked,
    VectorStore,
    check_collection_name,
    check_payload_keys,
    engine_threshold,
    filter_conditions,
    ordered,
    parse_offset,
    point_uuid,
    selected_fields,
    split_payload,
    stored_payload,
    vector_list,
    within_threshold,
)

_DISTANCES: dict[str, Any] = {
    "cosine": qe.Distance.Cosine,
    "euclid": qe.Distance.Euclid,
    "dot": qe.Distance.Dot,
}
_INDEX_TYPES: dict[str, Any] = {
    "keyword": qe.PayloadSchemaType.Keyword,
    "integer": qe.PayloadSchemaType.Integer,
    "float": qe.PayloadSchemaType.Float,
    "bool": qe.PayloadSchemaType.Bool,
}
_INDEX_NAMES = {str(schema): name for name, schema in _INDEX_TYPES.items()}


def _index_params(index_type: str, on_disk: bool) -> Any:
    """What create_field_index gets: the bare type (index in RAM), or parameters that
    leave the index memory-mapped for collections created ``on_disk``."""
    if not on_disk:
        return _INDEX_TYPES[index_type]
    cold = qe.Memory.Cold
    return {
        "keyword": lambda: qe.KeywordIndexParams(memory=cold),
        "integer": lambda: qe.IntegerIndexParams(lookup=True, range=True, memory=cold),
        "float": lambda: qe.FloatIndexParams(memory=cold),
        "bool": lambda: qe.BoolIndexParams(memory=cold),
    }[index_type]()


_CONFIG_FILE = "edge_config.json"  # written by the engine; documented as the persisted config
_LOCK_FILE = ".lock"


@dataclass(frozen=True)
class EdgeTuning:
    """How shards are indexed and searched. Applies to collections created afterwards,
    except ``search_ef`` and the optimize schedule, which apply at once."""

    hnsw_m: int = 16
    hnsw_ef_construct: int = 100
    # Segments whose vectors take less than this (KB) are searched by full scan even
    # when indexed: below it a scan is cheaper than the graph (engine default).
    full_scan_threshold_kb: int = 10_000
    # Beam width of an HNSW search: the main speed/recall knob (engine default ~100).
    search_ef: int | None = 64
    # int8 scalar quantization kept in RAM: ~3x faster HNSW builds and searches; hits
    # are rescored with the original vectors, so scores and thresholds stay exact.
    quantize: bool = True
    # Points the appendable (brute-force) segment may hold before optimize indexes it;
    # also how many written points trigger an optimize run. Each point is indexed once
    # per merge it goes through: at 1,000, event points were indexed again and again on
    # their way to the segment cap (19-27 s of optimize per 20k points written, pauses up
    # to 2.4 s); at 5,000, 5.5 s per 20k and pauses up to 1.7 s (scale README). Below
    # ``full_scan_threshold_kb`` (about 6,500 384-dim points) a segment is searched by
    # full scan even when indexed, so small collections lose nothing.
    indexing_threshold_points: int = 5000
    # Segments the merge optimizer aims for. Not the engine's default (CPUs / 2, at least
    # 2): with 2 segments every optimize merges the freshly indexed points into the big
    # segment, i.e. rebuilds the whole index (~30 s for 100k 384-dim points on 2 cores).
    # With a few more, small segments are merged with each other, cheaply.
    segment_number: int = 4
    # Cap on a segment's size, in points (None: the engine's default, hundreds of MB).
    # Without it the merge optimizer keeps folding new points into the largest segment,
    # so every optimize rebuilt an index the size of the collection: measured on event
    # points, optimize time per 20k points written grew 10 -> 130 s from 20k to 140k
    # points (pauses up to 13 s); capped at 20k it stays ~19 s (pauses <= 2.4 s) at any
    # size, at the price of searching one more segment per 20k points. Vector
    # collections only (not payload tables).
    max_segment_points: int | None = 20_000
    # Collections created ``on_disk`` (a dimension's events: written once per event,
    # searched only by the read API) are indexed once per point: the appendable segment
    # is indexed when it holds this many points, and that is also their segment cap.
    # Measured on event points: optimize 0.35 -> 0.155 ms per point written, flat with
    # size; each run pauses the process ~1.6 s (at 20,000: ~2.9 s).
    on_disk_segment_points: int = 10_000
    auto_optimize: bool = True
    # Threads of each shard's search pool. The binding holds the GIL for a whole call,
    # so a shard never searches from two callers at once; the engine's default (one
    # thread per CPU, per shard) made every text dimension (three shards) cost a dozen
    # threads: a request with 100 text keys took a process to 2,400 threads.
    search_threads: int | None = 1
    # Payload storage held in RAM ("cached", about 34 MB per shard even when nearly
    # empty) or left to the OS page cache (None, the engine default: a few hundred KB).
    payload_cached: bool = False


def _points_to_kb(points: int, dim: int) -> int:
    # The engine sizes segments by their float32 vector storage, in KB.
    return max(1, math.ceil(points * dim * 4 / 1024))


@dataclass(frozen=True)
class IndexStatus:
    """What the engine reports about a collection, plus this store's optimize runs."""

    points: int
    segments: int
    # Vectors in HNSW-indexed segments (the engine counts deleted ones until vacuum).
    indexed_vectors: int
    optimize_runs: int
    optimize_seconds: float
    optimize_max_seconds: float
    # field -> "keyword" | "integer" | "float" | "bool" (or the engine's name for others)
    payload_indexes: dict[str, str] = field(default_factory=dict)
    # Created on_disk: vectors and indexes memory-mapped, not held in the process.
    on_disk: bool = False


@dataclass
class _Collection:
    shard: Any
    dim: int
    distance: Distance
    on_disk: bool = False
    # Written points between optimize runs (None: the tuning's indexing threshold).
    optimize_every: int | None = None
    writes_since_optimize: int = 0
    # Written since the last flush. A flush of a shard costs tens of milliseconds even
    # with nothing to write (it syncs every segment's files): only dirty ones are flushed.
    dirty: bool = True
    optimize_runs: int = 0  # runs that changed something
    optimize_seconds: float = 0.0
    optimize_max_seconds: float = 0.0


class EdgeStore(VectorStore):
    """VectorStore on qdrant-edge shards under ``path`` (created if missing)."""

    exclusive = True  # one process per directory: _acquire_dir_lock

    def __init__(self, path: Path, tuning: EdgeTuning | None = None) -> None:
        self.path = Path(path)
        self.tuning = tuning or EdgeTuning()
        self._lock = threading.RLock()
        self._collections: dict[str, _Collection] = {}
        self._search_params = qe.SearchParams(
            hnsw_ef=self.tuning.search_ef,
            # Edge does not rescore quantized hits by default: scores would be off by
            # up to ~0.01 and score_threshold would cut on approximate scores.
            quantization=qe.QuantizationSearchParams(rescore=True),
        )
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock_file: IO[str] | None = _acquire_dir_lock(self.path)
        try:
            for child in sorted(self.path.iterdir()):
                if (child / _CONFIG_FILE).is_file():
                    self._collections[child.name] = _open_shard(child)
        except BaseException:
            self._release()
            raise

    # --- collections ----------------------------------------------------------------

    def create_collection(
        self,
        name: str,
        dim: int,
        distance: Distance = "cosine",
        indexes: Mapping[str, IndexType] | None = None,
        *,
        on_disk: bool = False,
    ) -> None:
        check_collection_name(name)
        if distance not in _DISTANCES:
            raise ValueError(f"unknown distance {distance!r}")
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        for index_type in (indexes or {}).values():
            if index_type not in _INDEX_TYPES:
                raise ValueError(f"unknown index type {index_type!r}")
        with self._lock:
            self._check_open()
            coll = self._collections.get(name)
            if coll is None:
                coll = self._create_shard(name, dim, distance, on_disk)
            elif (coll.dim, coll.distance) != (dim, distance):
                raise ValueError(
                    f"collection {name!r} exists with dim={coll.dim}, distance={coll.distance}"
                    f" (asked for dim={dim}, distance={distance})"
                )
            existing = {
                key: str(info.data_type) for key, info in coll.shard.info().payload_schema.items()
            }
            for key, index_type in (indexes or {}).items():
                if existing.get(key) != str(_INDEX_TYPES[index_type]):
                    params = _index_params(index_type, on_disk)
                    coll.shard.update(qe.UpdateOperation.create_field_index(key, params))
                    coll.dirty = True

    def has_collection(self, name: str) -> bool:
        with self._lock:
            return name in self._collections

    def list_collections(self) -> list[str]:
        with self._lock:
            return sorted(self._collections)

    def drop_collection(self, name: str) -> None:
        with self._lock:
            self._check_open()
            coll = self._collections.pop(name, None)
            if coll is not None:
                coll.shard.close()
                shutil.rmtree(self.path / name, ignore_errors=True)

    # --- points ---------------------------------------------------------------------

    def upsert(self, name: str, points: Sequence[Point]) -> None:
        with self._lock:
            coll = self._get(name)
            edge_points = []
            for point in points:  # validate everything before writing anything
                vector = vector_list(point.vector, point.id)
                if len(vector) != coll.dim:
                    raise ValueError(
                        f"point {point.id!r}: vector has {len(vector)} dimensions, "
                        f"collection {name!r} has {coll.dim}"
                    )
                payload = stored_payload(point.id, point.payload)
                edge_points.append(qe.Point(point_uuid(point.id), vector, payload))
            if edge_points:
                coll.shard.update(qe.UpdateOperation.upsert_points(edge_points))
                self._written(coll, len(edge_points))

    def set_payload(self, name: str, ids: Sequence[str], payload: Mapping[str, Any]) -> None:
        check_payload_keys(payload)
        with self._lock:
            coll = self._get(name)
            if not ids or not payload:
                return
            # By filter, not by id list: the id-list form fails on a missing id.
            selector = qe.Filter(must=[qe.HasIdCondition({point_uuid(i) for i in ids})])
            coll.shard.update(qe.UpdateOperation.set_payload_by_filter(selector, dict(payload)))
            coll.dirty = True

    def delete(self, name: str, ids: Sequence[str]) -> None:
        with self._lock:
            coll = self._get(name)
            if ids:
                coll.shard.update(qe.UpdateOperation.delete_points([point_uuid(i) for i in ids]))
                self._written(coll, len(ids))

    def retrieve(
        self,
        name: str,
        ids: Sequence[str],
        with_vectors: bool = False,
        fields: Sequence[str] | None = None,
    ) -> list[Record]:
        with self._lock:
            coll = self._get(name)
            if not ids:
                return []
            found = coll.shard.retrieve(
                [point_uuid(i) for i in ids], selected_fields(fields), with_vectors
            )
        records = (_record(r, with_vectors) for r in found)
        return ordered(ids, {r.id: r for r in records})

    def search(
        self,
        name: str,
        vector: Sequence[float],
        limit: int,
        *,
        filter: Filter | None = None,
        score_threshold: float | None = None,
        with_vectors: bool = False,
    ) -> list[Hit]:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        query = qe.Query.Nearest(vector_list(vector))
        edge_filter = _edge_filter(filter)
        with self._lock:
            coll = self._get(name)
            request = qe.SearchRequest(
                query=query,
                limit=limit,
                filter=edge_filter,
                params=self._search_params,
                with_vector=with_vectors,
                with_payload=True,
                score_threshold=engine_threshold(coll.distance, score_threshold),
            )
            scored = coll.shard.search(request)
        hits = []
        for point in scored:
            if not within_threshold(coll.distance, point.score, score_threshold):
                break  # best first: the rest are further away still
            point_id, payload = split_payload(point.payload, point.id)
            vector_out = point.vector if with_vectors else None
            hits.append(Hit(point_id, point.score, payload, vector_out))
        return hits

    def scroll(
        self,
        name: str,
        *,
        filter: Filter | None = None,
        limit: int = 100,
        offset: str | None = None,
        with_vectors: bool = False,
        fields: Sequence[str] | None = None,
    ) -> tuple[list[Record], str | None]:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        request = qe.ScrollRequest(
            offset=parse_offset(offset),
            limit=limit,
            filter=_edge_filter(filter),
            with_payload=selected_fields(fields),
            with_vector=with_vectors,
        )
        with self._lock:
            page, next_offset = self._get(name).shard.scroll(request)
        records = [_record(r, with_vectors) for r in page]
        return records, (str(next_offset) if next_offset is not None else None)

    def count(self, name: str, filter: Filter | None = None) -> int:
        request = qe.CountRequest(exact=True, filter=_edge_filter(filter))
        with self._lock:
            return self._get(name).shard.count(request)

    # --- maintenance ----------------------------------------------------------------

    def optimize(self, name: str | None = None) -> bool:
        """Run the engine's optimizers (index, merge, vacuum) until there is nothing left
        to do, for one collection or all. True if anything was rebuilt.

        Blocks every thread of the process while it runs (the binding holds the GIL).
        """
        with self._lock:
            self._check_open()
            names = [name] if name is not None else list(self._collections)
            changed = False
            for each in names:
                changed |= self._optimize(self._get(each))
            return changed

    def index_status(self, name: str) -> IndexStatus:
        with self._lock:
            coll = self._get(name)
            info = coll.shard.info()
            return IndexStatus(
                points=info.points_count,
                segments=info.segments_count,
                indexed_vectors=info.indexed_vectors_count,
                optimize_runs=coll.optimize_runs,
                optimize_seconds=coll.optimize_seconds,
                optimize_max_seconds=coll.optimize_max_seconds,
                payload_indexes={
                    key: _INDEX_NAMES.get(str(index.data_type), str(index.data_type))
                    for key, index in info.payload_schema.items()
                },
                on_disk=coll.on_disk,
            )

    def flush(self, collections: Sequence[str] | None = None) -> None:
        """Make the writes so far durable: those of ``collections`` (default: all).

        Only collections written since their last flush are flushed: a shard's flush
        syncs its files and holds the GIL while it does (~25 ms even with nothing
        written, measured), so callers that serve requests flush one collection at a
        time (``written_since_flush``), and the lock is taken per collection."""
        with self._lock:
            names = list(self._collections if collections is None else collections)
        for name in names:
            with self._lock:
                coll = self._collections.get(name)  # gone if dropped or closed meanwhile
                if coll is not None and coll.dirty:
                    coll.shard.flush()
                    coll.dirty = False

    def written_since_flush(self) -> list[str]:
        with self._lock:
            return sorted(name for name, c in self._collections.items() if c.dirty)

    def close(self) -> None:
        with self._lock:
            for coll in self._collections.values():
                coll.shard.flush()
                coll.shard.close()
            self._collections.clear()
            self._release()

    # --- internals ------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._lock_file is None:
            raise RuntimeError(f"EdgeStore at {self.path} is closed")

    def _get(self, name: str) -> _Collection:
        self._check_open()
        coll = self._collections.get(name)
        if coll is None:
            raise CollectionNotFound(name)
        return coll

    def _create_shard(self, name: str, dim: int, distance: Distance, on_disk: bool) -> _Collection:
        directory = self.path / name
        if directory.exists():
            # No config file (else it would have been loaded): the remains of a create
            # that did not finish. Nothing in it is readable; start over.
            shutil.rmtree(directory)
        tuning = self.tuning
        # On disk: vectors, their int8 copies and payload indexes are memory-mapped and
        # left to the OS page cache (Memory.Cold) instead of held in the process. Only
        # immutable (optimized) segments honour it; the appendable one stays in memory.
        cold = qe.Memory.Cold if on_disk else None
        # Such collections are written far more than searched: their points are indexed
        # once, when the appendable segment reaches the cap of their segments, instead of
        # at the threshold and again at each merge on the way to the cap.
        index_at = tuning.on_disk_segment_points if on_disk else tuning.indexing_threshold_points
        cap_points = tuning.on_disk_segment_points if on_disk else tuning.max_segment_points
        config = qe.EdgeConfig(
            vectors=qe.EdgeVectorParams(size=dim, distance=_DISTANCES[distance], memory=cold),
            hnsw_config=qe.HnswIndexConfig(
                m=tuning.hnsw_m,
                ef_construct=tuning.hnsw_ef_construct,
                full_scan_threshold=tuning.full_scan_threshold_kb,
            ),
            quantization_config=(
                (
                    qe.ScalarQuantizationConfig(qe.ScalarType.Int8, memory=cold)
                    if on_disk
                    else qe.ScalarQuantizationConfig(qe.ScalarType.Int8, always_ram=True)
                )
                if tuning.quantize
                else None
            ),
            optimizers=qe.EdgeOptimizersConfig(
                # 0: never build a vector index (payload tables).
                indexing_threshold=0 if dim == PAYLOAD_ONLY_DIM else _points_to_kb(index_at, dim),
                default_segment_number=tuning.segment_number,
                # The cap bounds the vector index an optimize rebuilds; payload tables
                # have none, and their one-float vectors say nothing of their size.
                max_segment_size=(
                    None
                    if dim == PAYLOAD_ONLY_DIM or cap_points is None
                    else _points_to_kb(cap_points, dim)
                ),
            ),
            payload_memory=qe.Memory.Cached if tuning.payload_cached else None,
            max_search_threads=tuning.search_threads,
            search_pool_core=tuning.search_threads,
        )
        try:
            shard = qe.EdgeShard.create(str(directory), config)
        except Exception as exc:
            raise _locked_or(exc, directory) from exc
        coll = _Collection(shard, dim, distance, on_disk, index_at if on_disk else None)
        self._collections[name] = coll
        return coll

    def _written(self, coll: _Collection, count: int) -> None:
        coll.dirty = True
        coll.writes_since_optimize += count
        every = coll.optimize_every or self.tuning.indexing_threshold_points
        if self.tuning.auto_optimize and coll.writes_since_optimize >= every:
            self._optimize(coll)

    def _optimize(self, coll: _Collection) -> bool:
        started = time.perf_counter()
        changed = coll.shard.optimize()
        coll.writes_since_optimize = 0
        if changed:
            coll.dirty = True  # rebuilt segments: the next flush syncs them
            took = time.perf_counter() - started
            coll.optimize_runs += 1
            coll.optimize_seconds += took
            coll.optimize_max_seconds = max(coll.optimize_max_seconds, took)
        return changed

    def _release(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # closing the file drops the flock
            self._lock_file = None


def _acquire_dir_lock(path: Path) -> IO[str]:
    lock_file = open(path / _LOCK_FILE, "a+")  # noqa: SIM115 (held open until close())
    try:
        # flock (not fcntl/lockf): it conflicts between two opens in one process too.
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock_file.close()
        raise StorageLocked(path) from None
    return lock_file


def _open_shard(directory: Path) -> _Collection:
    config = json.loads((directory / _CONFIG_FILE).read_text())
    vectors = config["vectors"][""]
    try:
        shard = qe.EdgeShard.load(str(directory))
    except Exception as exc:
        raise _locked_or(exc, directory) from exc
    on_disk = vectors.get("memory") == "cold"
    dim = int(vectors["size"])
    every = None
    if on_disk:  # indexed at the cap it was created with (see _create_shard)
        threshold_kb = config["optimizers"].get("indexing_threshold") or 0
        every = max(1, threshold_kb * 1024 // (4 * dim)) if threshold_kb else None
    return _Collection(shard, dim, vectors["distance"].lower(), on_disk, every)


def _locked_or(exc: Exception, directory: Path) -> Exception:
    """StorageLocked when the engine failed because the shard's WAL is locked."""
    message = str(exc)
    if "WouldBlock" in message or "Can't init WAL" in message:
        return StorageLocked(directory, message)
    return exc


def _record(record: Any, with_vectors: bool) -> Record:
    point_id, payload = split_payload(record.payload, record.id)
    return Record(point_id, payload, record.vector if with_vectors else None)


def _edge_filter(flt: Filter | None) -> Any:
    if flt is None:
        return None
    must, must_not = filter_conditions(flt)
    if not must and not must_not:
        return None
    return qe.Filter(
        must=[_edge_condition(c) for c in must] or None,
        must_not=[_edge_condition(c) for c in must_not] or None,
    )


def _edge_condition(condition: Condition) -> Any:
    match condition:
        case Eq(key, bool() as value):
            # The binding turns a Python bool into the int 1/0, which never matches a
            # stored bool; a numpy bool is converted as a bool.
            return qe.FieldCondition(key, match=qe.MatchValue(np.bool_(value)))
        case Eq(key, value):
            return qe.FieldCondition(key, match=qe.MatchValue(value))
        case AnyOf(key, values):
            return qe.FieldCondition(key, match=qe.MatchAny(list(values)))
        case Between(key, gte, lte):
            return qe.FieldCondition(key, range=qe.RangeFloat(gte=gte, lte=lte))
        case Either(conditions) if conditions:
            return qe.Filter(should=[_edge_condition(c) for c in conditions])
        case Either():
            return qe.HasIdCondition(set())  # matches no point
    raise TypeError(f"unknown condition {condition!r}")
