"""ServerStore: a Qdrant server through qdrant-client.

Collections are named ``<prefix>_<name>`` on the server, so several deployments can
share one Qdrant; ``list_collections`` shows only this prefix's collections, without
the prefix. Writes wait for the server's acknowledgement (``wait=True``), which makes
them durable in its WAL: ``flush`` has nothing to do.

Also accepts qdrant-client's local mode (``QdrantClient(":memory:")`` or a path), which
the tests use; local mode ignores payload indexes and is not thread-safe, so calls are
serialised with a lock there (the HTTP client of a real server is thread-safe).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

from qdrant_client import QdrantClient, models

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

_DISTANCES: dict[str, models.Distance] = {
    "cosine": models.Distance.COSINE,
    "euclid": models.Distance.EUCLID,
    "dot": models.Distance.DOT,
}
_DISTANCE_NAMES: dict[models.Distance, Distance] = {v: k for k, v in _DISTANCES.items()}
_INDEX_TYPES: dict[str, models.PayloadSchemaType] = {
    "keyword": models.PayloadSchemaType.KEYWORD,
    "integer": models.PayloadSchemaType.INTEGER,
    "float": models.PayloadSchemaType.FLOAT,
    "bool": models.PayloadSchemaType.BOOL,
}


def _index_params(index_type: IndexType, on_disk: bool) -> Any:
    """The bare schema type (index in RAM), or parameters for an on-disk index."""
    if not on_disk:
        return _INDEX_TYPES[index_type]
    return {
        "keyword": lambda: models.KeywordIndexParams(type="keyword", on_disk=True),
        "integer": lambda: models.IntegerIndexParams(
            type="integer", lookup=True, range=True, on_disk=True
        ),
        "float": lambda: models.FloatIndexParams(type="float", on_disk=True),
        "bool": lambda: models.BoolIndexParams(type="bool", on_disk=True),
    }[index_type]()


class ServerStore(VectorStore):
    """VectorStore on a Qdrant server (or qdrant-client's local mode)."""

    def __init__(self, client: QdrantClient, *, prefix: str = "") -> None:
        self.client = client
        self.prefix = prefix
        self._closed = False
        self._distances: dict[str, Distance] = {}  # per collection, for score thresholds
        self._guard: Any = threading.RLock() if _is_local(client) else nullcontext()

    @classmethod
    def connect(
        cls, url: str, api_key: str = "", *, prefix: str = "", timeout: int = 10
    ) -> ServerStore:
        """A store on the Qdrant server at ``url`` (e.g. ``http://qdrant:6333``)."""
        if not url:
            raise ValueError("storage.url is required for the server backend")
        # No version check: it runs in a background thread that only warns, and it would
        # warn on every start that races the server's own start.
        client = QdrantClient(
            url=url, api_key=api_key or None, timeout=timeout, check_compatibility=False
        )
        return cls(client, prefix=prefix)

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
        full = self._full(name)
        with self._guard:
            if not self.client.collection_exists(full):
                try:
                    self.client.create_collection(
                        full,
                        vectors_config=models.VectorParams(
                            size=dim, distance=_DISTANCES[distance], on_disk=on_disk or None
                        ),
                        # 0: never build a vector index (payload tables).
                        optimizers_config=(
                            models.OptimizersConfigDiff(indexing_threshold=0)
                            if dim == PAYLOAD_ONLY_DIM
                            else None
                        ),
                    )
                except Exception:
                    # Another process may have created it in between: then go on.
                    if not self.client.collection_exists(full):
                        raise
            info = self.client.get_collection(full)
            params = info.config.params.vectors
            if isinstance(params, models.VectorParams) and (
                params.size != dim or params.distance != _DISTANCES[distance]
            ):
                raise ValueError(
                    f"collection {name!r} exists with dim={params.size}, "
                    f"distance={params.distance.value.lower()} "
                    f"(asked for dim={dim}, distance={distance})"
                )
            self._distances[name] = distance
            schema = info.payload_schema or {}
            for key, index_type in (indexes or {}).items():
                wanted = _INDEX_TYPES[index_type]
                if key not in schema or schema[key].data_type != wanted:
                    self.client.create_payload_index(
                        full, key, field_schema=_index_params(index_type, on_disk), wait=True
                    )

    def has_collection(self, name: str) -> bool:
        with self._guard:
            return self.client.collection_exists(self._full(name))

    def list_collections(self) -> list[str]:
        with self._guard:
            names = [c.name for c in self.client.get_collections().collections]
        if not self.prefix:
            return sorted(names)
        start = f"{self.prefix}_"
        return sorted(n[len(start) :] for n in names if n.startswith(start))

    def drop_collection(self, name: str) -> None:
        with self._guard:
            self._distances.pop(name, None)
            self.client.delete_collection(self._full(name))

    # --- points ---------------------------------------------------------------------

    def upsert(self, name: str, points: Sequence[Point]) -> None:
        structs = [
            models.PointStruct(
                id=str(point_uuid(p.id)),
                vector=vector_list(p.vector, p.id),
                payload=stored_payload(p.id, p.payload),
            )
            for p in points
        ]
        with self._call(name):
            if structs:
                self.client.upsert(self._full(name), points=structs, wait=True)

    def set_payload(self, name: str, ids: Sequence[str], payload: Mapping[str, Any]) -> None:
        check_payload_keys(payload)
        with self._call(name):
            if not ids or not payload:
                # Nothing to write, but an unknown collection must still be reported.
                self._require(name)
                return
            # By filter, not by id list: a server refuses the id-list form for missing ids.
            selector = models.Filter(must=[models.HasIdCondition(has_id=_uuids(ids))])
            self.client.set_payload(self._full(name), payload=dict(payload), points=selector)

    def delete(self, name: str, ids: Sequence[str]) -> None:
        with self._call(name):
            if not ids:
                self._require(name)
                return
            selector = models.PointIdsList(points=_uuids(ids))
            self.client.delete(self._full(name), points_selector=selector, wait=True)

    def retrieve(
        self,
        name: str,
        ids: Sequence[str],
        with_vectors: bool = False,
        fields: Sequence[str] | None = None,
    ) -> list[Record]:
        with self._call(name):
            if not ids:
                self._require(name)
                return []
            found = self.client.retrieve(
                self._full(name),
                ids=_uuids(ids),
                with_payload=selected_fields(fields),
                with_vectors=with_vectors,
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
        query = vector_list(vector)
        with self._call(name):
            distance = self._distance(name)
            response = self.client.query_points(
                self._full(name),
                query=query,
                limit=limit,
                query_filter=_server_filter(filter),
                score_threshold=engine_threshold(distance, score_threshold),
                with_payload=True,
                with_vectors=with_vectors,
            )
        hits = []
        for point in response.points:
            if not within_threshold(distance, point.score, score_threshold):
                break  # best first: the rest are further away still
            point_id, payload = split_payload(point.payload, point.id)
            hits.append(Hit(point_id, point.score, payload, _vector(point, with_vectors)))
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
        with self._call(name):
            page, next_offset = self.client.scroll(
                self._full(name),
                scroll_filter=_server_filter(filter),
                limit=limit,
                offset=None if offset is None else str(parse_offset(offset)),
                with_payload=selected_fields(fields),
                with_vectors=with_vectors,
            )
        records = [_record(r, with_vectors) for r in page]
        return records, (str(next_offset) if next_offset is not None else None)

    def count(self, name: str, filter: Filter | None = None) -> int:
        with self._call(name):
            result = self.client.count(
                self._full(name), count_filter=_server_filter(filter), exact=True
            )
        return result.count

    def flush(self, collections: Sequence[str] | None = None) -> None:
        """Nothing to do: every write waited for the server's acknowledgement."""

    def written_since_flush(self) -> list[str]:
        return []  # nothing for a flush to do

    def close(self) -> None:
        with self._guard:
            if not self._closed:
                self._closed = True
                self.client.close()

    # --- internals ------------------------------------------------------------------

    def _full(self, name: str) -> str:
        return f"{self.prefix}_{name}" if self.prefix else name

    def _distance(self, name: str) -> Distance:
        """The collection's distance, asked once (thresholds depend on it)."""
        distance = self._distances.get(name)
        if distance is None:
            params = self.client.get_collection(self._full(name)).config.params.vectors
            if not isinstance(params, models.VectorParams):
                raise ValueError(f"collection {name!r} has named vectors: not supported")
            distance = _DISTANCE_NAMES[params.distance]
            self._distances[name] = distance
        return distance

    def _require(self, name: str) -> None:
        if not self.client.collection_exists(self._full(name)):
            raise CollectionNotFound(name)

    @contextmanager
    def _call(self, name: str) -> Iterator[None]:
        """Run a client call, turning "no such collection" into CollectionNotFound.

        The client's error for a missing collection differs by transport (HTTP 404,
        ValueError in local mode), so on an error that looks like it the collection's
        existence is checked, which costs a request only on the error path.
        """
        with self._guard:
            try:
                yield
            except CollectionNotFound:
                raise
            except Exception as exc:
                looks_missing = (
                    getattr(exc, "status_code", None) == 404 or "not found" in str(exc).lower()
                )
                if looks_missing and not self.client.collection_exists(self._full(name)):
                    raise CollectionNotFound(name) from exc
                raise


def _is_local(client: QdrantClient) -> bool:
    from qdrant_client.local.qdrant_local import QdrantLocal

    return isinstance(getattr(client, "_client", None), QdrantLocal)


def _uuids(ids: Sequence[str]) -> list[models.ExtendedPointId]:
    return [str(point_uuid(i)) for i in ids]


def _vector(point: Any, with_vectors: bool) -> list[float] | None:
    if not with_vectors or point.vector is None:
        return None
    return list(point.vector)


def _record(record: Any, with_vectors: bool) -> Record:
    point_id, payload = split_payload(record.payload, record.id)
    return Record(point_id, payload, _vector(record, with_vectors))


def _server_filter(flt: Filter | None) -> models.Filter | None:
    if flt is None:
        return None
    must, must_not = filter_conditions(flt)
    if not must and not must_not:
        return None
    return models.Filter(
        must=[_server_condition(c) for c in must] or None,
        must_not=[_server_condition(c) for c in must_not] or None,
    )


def _server_condition(condition: Condition) -> Any:
    match condition:
        case Eq(key, value):
            return models.FieldCondition(key=key, match=models.MatchValue(value=value))
        case AnyOf(key, values):
            return models.FieldCondition(key=key, match=models.MatchAny(any=list(values)))
        case Between(key, gte, lte):
            return models.FieldCondition(key=key, range=models.Range(gte=gte, lte=lte))
        case Either(conditions) if conditions:
            return models.Filter(should=[_server_condition(c) for c in conditions])
        case Either():
            return models.HasIdCondition(has_id=[])  # matches no point
    raise TypeError(f"unknown condition {condition!r}")
