"""Where each (project, dimension) keeps its data in the vector store, and the catalog
of dimensions per project.

Per dimension, three collections: ``<slug>.events`` (one point per event: its text's
vector and the event), ``<slug>.mc`` (micro-cluster centres) and ``<slug>.topics`` (one
point per live topic: its centre and figures). The ``catalog`` collection lists each
project's metadata keys with their type; ``state`` holds each model's snapshot.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from turret_stream.storage import Filter, Point, VectorStore

log = logging.getLogger(__name__)

CATALOG = "catalog"
STATE = "state"
_UNIT = [1.0]  # catalog and state points carry no meaningful vector


@dataclass(frozen=True)
class DimensionNames:
    project: str
    dimension: str
    slug: str

    @property
    def events(self) -> str:
        return f"{self.slug}.events"

    @property
    def mc(self) -> str:
        return f"{self.slug}.mc"

    @property
    def topics(self) -> str:
        return f"{self.slug}.topics"


def dimension_names(project: str, dimension: str) -> DimensionNames:
    """Collection names are plain and bounded; the hash keeps distinct keys apart."""
    readable = re.sub(r"[^a-z0-9_-]+", "_", dimension.lower())[:40].strip("_") or "key"
    digest = hashlib.sha1(f"{project}\0{dimension}".encode()).hexdigest()[:10]
    return DimensionNames(project, dimension, f"{project}.{readable}-{digest}")


@dataclass(frozen=True)
class DimensionInfo:
    project: str
    key: str
    type: str
    decided: bool
    events: int
    updated_at: float


class Catalog:
    """Reads and writes of the catalog and state collections. Each dimension's entry is
    written only by that dimension's owner."""

    def __init__(self, store: VectorStore) -> None:
        self.store = store
        store.create_collection(
            CATALOG, 1, "dot", indexes={"project": "keyword", "type": "keyword"}
        )
        store.create_collection(STATE, 1, "dot")

    def save_dimension(
        self, project: str, key: str, type_: str, decided: bool, tracker: dict, events: int
    ) -> None:
        payload = {
            "project": project,
            "key": key,
            "type": type_,
            "decided": decided,
            "tracker": tracker,
            "events": events,
            "updated_at": time.time(),
        }
        self.store.upsert(CATALOG, [Point(f"dim:{project}:{key}", _UNIT, payload)])

    def save_capped(self, project: str, key: str) -> None:
        """A text key beyond ``limits.max_text_dimensions``: listed (type ``capped``) so
        the project can see it, but no owner and no collections."""
        payload = {
            "project": project,
            "key": key,
            "type": "capped",
            "decided": True,
            "tracker": None,
            "events": 0,
            "updated_at": time.time(),
        }
        self.store.upsert(CATALOG, [Point(f"capped:{project}:{key}", _UNIT, payload)])

    def dimension(self, project: str, key: str) -> dict[str, Any] | None:
        found = self.store.retrieve(CATALOG, [f"dim:{project}:{key}"])
        return found[0].payload if found else None

    def dimensions(self, project: str) -> list[DimensionInfo]:
        """One project's dimensions, largest first."""
        found = self._scan(Filter(must={"project": project}))
        return sorted(found, key=lambda d: (-d.events, d.key))

    def all_dimensions(self) -> list[DimensionInfo]:
        """Every project's dimensions (for the labeller, which serves all projects)."""
        return self._scan(None)

    def _scan(self, flt: Filter | None) -> list[DimensionInfo]:
        out: list[DimensionInfo] = []
        offset = None
        while True:
            records, offset = self.store.scroll(CATALOG, filter=flt, limit=256, offset=offset)
            for r in records:
                p = r.payload
                out.append(
                    DimensionInfo(
                        p["project"],
                        p["key"],
                        p["type"],
                        p["decided"],
                        p["events"],
                        p["updated_at"],
                    )
                )
            if offset is None:
                return out

    def save_state(self, names: DimensionNames, blob: bytes, part: str = "") -> None:
        """Save a dimension's learned state; ``part`` names a piece saved on its own
        cadence (e.g. "context"), apart from the per-batch snapshot."""
        payload = {"blob": base64.b64encode(blob).decode(), "saved_at": time.time()}
        self.store.upsert(STATE, [Point(_state_id(names, part), _UNIT, payload)])

    def load_state(self, names: DimensionNames, part: str = "") -> bytes | None:
        found = self.store.retrieve(STATE, [_state_id(names, part)])
        return base64.b64decode(found[0].payload["blob"]) if found else None


def _state_id(names: DimensionNames, part: str) -> str:
    return f"state:{names.slug}:{part}" if part else f"state:{names.slug}"


class EnumKeys:
    """A project's metadata keys typed ``enum`` (its segments), from the catalog, read at
    most every ``ttl_s`` per project."""

    def __init__(self, catalog: Catalog, ttl_s: float = 5.0) -> None:
        self.catalog = catalog
        self.ttl_s = ttl_s
        # project -> (read at, enum keys, of which decided)
        self._cache: dict[str, tuple[float, frozenset[str], frozenset[str]]] = {}
        self._unreadable_at: dict[str, float] = {}  # project -> when ``decided`` failed

    def _read(self, project: str) -> tuple[float, frozenset[str], frozenset[str]]:
        now = time.monotonic()
        hit = self._cache.get(project)
        if hit is not None and now - hit[0] < self.ttl_s:
            return hit
        enums = [d for d in self.catalog.dimensions(project) if d.type == "enum"]
        read = (
            now,
            frozenset(d.key for d in enums),
            frozenset(d.key for d in enums if d.decided),
        )
        self._cache[project] = read
        return read

    def of(self, project: str) -> frozenset[str]:
        return self._read(project)[1]

    def decided(self, project: str) -> frozenset[str]:
        """The enum keys whose type is decided (``min_observations`` values seen): the
        embed agent does not embed their values (README, *Dimensions and segments*).

        Only a saving, never needed: while the catalog cannot be read (a store server
        down), none, so every value is embedded as before, and the read is tried again
        ``ttl_s`` later rather than on every batch."""
        failed_at = self._unreadable_at.get(project)
        if failed_at is not None and time.monotonic() - failed_at < self.ttl_s:
            return frozenset()
        try:
            return self._read(project)[2]
        except Exception as exc:
            self._unreadable_at[project] = time.monotonic()
            log.warning(
                "cannot read the catalog (%r): every value of project %s is embedded for "
                "the next %ss",
                exc,
                project,
                self.ttl_s,
            )
            return frozenset()

    def segments(self, project: str, metadata: Mapping[str, Any] | None) -> dict[str, Any]:
        """The enum segments of one event's metadata (scalar values only)."""
        if not metadata:
            return {}
        keys = self.of(project)
        return {
            k: v
            for k, v in metadata.items()
            if k in keys and isinstance(v, str | int | bool) and not isinstance(v, float)
        }
