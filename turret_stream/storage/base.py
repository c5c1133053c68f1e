"""The storage seam: what turret-stream needs from a vector store, whatever the backend.

Both backends (Qdrant's engine in-process, or a Qdrant server) store points under a UUID
derived from the caller's string id and keep that string in the payload under ``_id``;
this module holds that mapping, the filter semantics and the error types, so the two
backends cannot drift apart.
"""

from __future__ import annotations

import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from turret_stream.errors import TurretError

Distance = Literal["cosine", "euclid", "dot"]
IndexType = Literal["keyword", "integer", "float", "bool"]

# Fixed forever: changing it would orphan every stored point.
ID_NAMESPACE = uuid.UUID("5b3f7a4e-2f6c-5d1e-9a43-7c0b8e6d2a10")
ID_KEY = "_id"

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")


class CollectionNotFound(TurretError):
    """The named collection does not exist."""

    def __init__(self, name: str) -> None:
        super().__init__(f"collection {name!r} does not exist")
        self.name = name


class InvalidOffset(TurretError, ValueError):
    """A scroll offset that no scroll of this store returned (a client's bad cursor)."""


def parse_offset(offset: str | None) -> uuid.UUID | None:
    """A scroll offset as the engine takes it: offsets are the point ids (UUIDs) that
    ``scroll`` returns, anything else raises InvalidOffset."""
    if offset is None:
        return None
    try:
        return uuid.UUID(offset)
    except ValueError:
        raise InvalidOffset(f"invalid cursor {offset[:64]!r}: pass back a next_cursor") from None


class StorageLocked(TurretError):
    """The on-disk store is held by another process (or another store object)."""

    def __init__(self, path: object, detail: str = "") -> None:
        message = (
            f"vector store at {path} is locked: another turret-stream process is probably "
            "running on the same data dir (only one process may open it at a time)"
        )
        super().__init__(f"{message} [{detail}]" if detail else message)
        self.path = path


@dataclass(frozen=True)
class Point:
    id: str
    vector: Sequence[float] | None
    payload: Mapping[str, Any]


@dataclass(frozen=True)
class Record:
    id: str
    payload: dict[str, Any]
    vector: list[float] | None = None


@dataclass(frozen=True)
class Hit:
    id: str
    score: float
    payload: dict[str, Any]
    vector: list[float] | None = None


# Collections of this many dimensions hold payloads only (state records, journey rows,
# catalog, leases...): their one-float vectors are placeholders and are never searched.
# Building an HNSW graph over them was most of the store's work at scale: the journey
# rows, rewritten at every flush, made the engine re-index ever larger segments (README
# *Scale*).
PAYLOAD_ONLY_DIM = 1


@dataclass(frozen=True)
class Filter:
    """Conditions on payload fields; all of them must hold.

    ``must``: field == value, or field in values when the value is a list, tuple, set or
    frozenset. ``ranges``: field -> (gte, lte), either bound may be None. ``must_not``:
    conditions (same forms as ``must``) that must not hold; a point without the field
    does not match the condition, so it passes ``must_not``.
    """

    must: Mapping[str, Any] = field(default_factory=dict)
    ranges: Mapping[str, tuple[float | None, float | None]] = field(default_factory=dict)
    must_not: Mapping[str, Any] = field(default_factory=dict)


# --- ids and payloads ----------------------------------------------------------------


def point_uuid(point_id: str) -> uuid.UUID:
    """The UUID a caller's string id is stored under (Qdrant accepts only UUIDs and ints)."""
    if not isinstance(point_id, str) or not point_id:
        raise ValueError(f"point id must be a non-empty string, got {point_id!r}")
    return uuid.uuid5(ID_NAMESPACE, point_id)


def stored_payload(point_id: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """The payload as stored: the caller's payload plus the original id under ``_id``."""
    check_payload_keys(payload)
    return {**payload, ID_KEY: point_id}


def check_payload_keys(payload: Mapping[str, Any]) -> None:
    if ID_KEY in payload:
        raise ValueError(f"payload key {ID_KEY!r} is reserved for the point id")


def split_payload(payload: Mapping[str, Any] | None, stored_id: object) -> tuple[str, dict]:
    """(original id, payload without ``_id``) of a stored point.

    Points written by something else than this module have no ``_id``: their UUID (or
    int) id is returned as a string instead.
    """
    data = dict(payload or {})
    original = data.pop(ID_KEY, None)
    return (original if isinstance(original, str) else str(stored_id)), data


def selected_fields(fields: Sequence[str] | None) -> bool | list[str]:
    """The engine's payload selector for ``fields`` (None: all), with the stored id."""
    return True if fields is None else [*fields, ID_KEY]


def vector_list(vector: Sequence[float] | None, point_id: str = "") -> list[float]:
    if vector is None:
        raise ValueError(f"point {point_id!r}: a vector is required on upsert")
    tolist = getattr(vector, "tolist", None)  # numpy arrays: much faster than a loop
    return tolist() if tolist is not None else [float(x) for x in vector]


def engine_threshold(distance: Distance, threshold: float | None) -> float | None:
    """The score_threshold to hand the engine, a little wider than the caller's.

    Qdrant's engine compares strictly and in float32 (score > t for cosine/dot, distance
    < t for euclid) while this interface promises inclusive bounds; so the engine gets a
    slightly looser bound and ``within_threshold`` cuts exactly afterwards. The extra
    hits it lets through are the worst ones, so no better hit is lost to ``limit``.
    """
    if threshold is None:
        return None
    margin = 1e-5 * max(1.0, abs(threshold))  # far above float32 rounding (~1e-7)
    return threshold + margin if distance == "euclid" else threshold - margin


def within_threshold(distance: Distance, score: float, threshold: float | None) -> bool:
    if threshold is None:
        return True
    return score <= threshold if distance == "euclid" else score >= threshold


def check_collection_name(name: str) -> None:
    """Names become directory names (edge) and collection names (server): keep them plain."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ValueError(
            f"invalid collection name {name!r}: use letters, digits, '_', '-', '.' "
            "(starting with a letter or digit, at most 200 characters)"
        )


# --- filters in a backend-neutral form -------------------------------------------------
# Each backend turns these into its own filter objects; the choices below (how a list,
# a bool or a float is matched) are made once, here.


@dataclass(frozen=True)
class Eq:
    key: str
    value: str | int | bool


@dataclass(frozen=True)
class AnyOf:
    """key equals one of values; values are all str or all int (Qdrant's MatchAny)."""

    key: str
    values: tuple[str, ...] | tuple[int, ...]


@dataclass(frozen=True)
class Between:
    key: str
    gte: float | None
    lte: float | None


@dataclass(frozen=True)
class Either:
    """At least one of the conditions holds."""

    conditions: tuple[Condition, ...]


Condition = Eq | AnyOf | Between | Either

_LIST_TYPES = (list, tuple, set, frozenset)


def filter_conditions(flt: Filter) -> tuple[list[Condition], list[Condition]]:
    """(conditions that must hold, conditions that must not hold) of a Filter."""
    must = [_condition(key, value) for key, value in flt.must.items()]
    for key, bounds in flt.ranges.items():
        gte, lte = bounds
        if gte is None and lte is None:
            continue  # (None, None) bounds nothing
        must.append(Between(key, gte, lte))
    must_not = [_condition(key, value) for key, value in flt.must_not.items()]
    return must, must_not


def _condition(key: str, value: Any) -> Condition:
    if isinstance(value, _LIST_TYPES):
        values = list(value)
        if values and all(isinstance(v, str) for v in values):
            return AnyOf(key, tuple(values))
        if values and all(_is_int(v) for v in values):
            return AnyOf(key, tuple(values))
        # Empty, mixed, bools or floats: no single MatchAny; an empty Either matches nothing.
        return Either(tuple(_scalar(key, v) for v in values))
    return _scalar(key, value)


def _scalar(key: str, value: Any) -> Condition:
    if isinstance(value, bool | str) or _is_int(value):
        return Eq(key, value)
    if isinstance(value, float):
        # Qdrant has no float equality match; a closed range is the same condition.
        return Between(key, value, value)
    raise TypeError(f"filter on {key!r}: unsupported value {value!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def ordered(ids: Iterable[str], found: Mapping[str, Record]) -> list[Record]:
    """Records in the order of ``ids``, each once, missing ones left out."""
    result: list[Record] = []
    seen: set[str] = set()
    for point_id in ids:
        record = found.get(point_id)
        if record is not None and point_id not in seen:
            seen.add(point_id)
            result.append(record)
    return result


# --- the interface -----------------------------------------------------------------------


class VectorStore(ABC):
    """Collections of points (id, vector, payload) searchable by vector similarity.

    Synchronous and safe to call from several threads at once. Every method except
    ``create_collection``, ``has_collection``, ``list_collections`` and
    ``drop_collection`` raises ``CollectionNotFound`` for an unknown collection. Payload
    key ``_id`` is reserved (the store keeps the caller's id there).
    """

    # True when no other process can write to this store while this object is open (the
    # in-process engine holds a lock on its directory): what this process last wrote is
    # then what the store holds, and fencing need not read its leases back (fencing.py).
    exclusive: bool = False

    @abstractmethod
    def create_collection(
        self,
        name: str,
        dim: int,
        distance: Distance = "cosine",
        indexes: Mapping[str, IndexType] | None = None,
        *,
        on_disk: bool = False,
    ) -> None:
        """Create the collection if missing, and the payload indexes it lacks.

        Idempotent. Raises ValueError when the collection exists with another dim or
        distance. A collection of ``dim`` 1 is a table of payloads (``PAYLOAD_ONLY_DIM``):
        its vectors are placeholders, never searched, so it gets no vector index.

        ``on_disk``: for collections that grow with history and are read far less than
        written (a dimension's events): vectors, quantized vectors and payload indexes
        are memory-mapped and left to the OS page cache instead of held in memory. Set
        when the collection is created (and for indexes when they are created).
        """

    @abstractmethod
    def has_collection(self, name: str) -> bool: ...

    @abstractmethod
    def list_collections(self) -> list[str]:
        """Names of the collections, sorted."""

    @abstractmethod
    def drop_collection(self, name: str) -> None:
        """Delete the collection and its points; no error if it does not exist."""

    @abstractmethod
    def upsert(self, name: str, points: Sequence[Point]) -> None:
        """Insert or replace points (vector and whole payload).

        Every point needs a vector: ValueError if one is None.
        """

    @abstractmethod
    def set_payload(self, name: str, ids: Sequence[str], payload: Mapping[str, Any]) -> None:
        """Merge ``payload``'s keys into the payloads of the points; missing ids are skipped."""

    @abstractmethod
    def delete(self, name: str, ids: Sequence[str]) -> None:
        """Delete points; missing ids are fine."""

    @abstractmethod
    def retrieve(
        self,
        name: str,
        ids: Sequence[str],
        with_vectors: bool = False,
        fields: Sequence[str] | None = None,
    ) -> list[Record]:
        """The points with these ids, in the order of ``ids``; missing ids are left out.
        ``fields``: only those payload fields (None: all)."""

    @abstractmethod
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
        """The ``limit`` points nearest to ``vector`` that match ``filter``, best first.

        ``score`` is what Qdrant returns: for "cosine" and "dot" a similarity (higher is
        better), for "euclid" the euclidean distance (lower is better).
        ``score_threshold`` keeps Qdrant's semantics: for "cosine" and "dot" only hits
        with score >= threshold are returned; for "euclid" only hits with distance <=
        threshold. Both bounds are inclusive on every backend (the engine's own test is
        strict; the stores correct for it). Cosine collections store vectors normalised
        to unit length, so the vectors returned are the normalised ones.
        """

    @abstractmethod
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
        """One page of the points matching ``filter``, and the offset of the next page.

        Start with ``offset=None`` and pass back the returned offset (an opaque string)
        until it is None: every matching point comes exactly once, provided the
        collection is not modified in the meantime. ``fields``: only these payload keys
        come back (None: the whole payload), so a scan for a few small fields does not
        read large ones.
        """

    @abstractmethod
    def count(self, name: str, filter: Filter | None = None) -> int:
        """The exact number of points matching ``filter``."""

    @abstractmethod
    def flush(self, collections: Sequence[str] | None = None) -> None:
        """Make what was written durable (a no-op where writes are durable already): to
        ``collections`` only, or to every collection."""

    def written_since_flush(self) -> list[str]:
        """The collections a ``flush`` would have work to do for (all, unless the store
        keeps track)."""
        return self.list_collections()

    @abstractmethod
    def close(self) -> None:
        """Release the store (files, locks, connections). Idempotent."""

    def __enter__(self) -> VectorStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
