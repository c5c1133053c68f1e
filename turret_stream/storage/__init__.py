"""Vector storage: one interface (VectorStore), two Qdrant backends.

``open_store(settings)`` picks the backend from ``settings.storage.backend``:

- "edge": Qdrant's engine in this process, on disk under ``settings.qdrant_path``
  (one process per data dir, see ``edge.py``);
- "server": a Qdrant server at ``settings.storage.url``, collection names prefixed with
  ``settings.storage.collection_prefix`` so deployments can share it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from turret_stream.storage.base import (
    CollectionNotFound,
    Distance,
    Filter,
    Hit,
    IndexType,
    InvalidOffset,
    Point,
    Record,
    StorageLocked,
    VectorStore,
    point_uuid,
)

if TYPE_CHECKING:
    from turret_stream.settings import Settings

__all__ = [
    "CollectionNotFound",
    "Distance",
    "Filter",
    "Hit",
    "IndexType",
    "InvalidOffset",
    "Point",
    "Record",
    "StorageLocked",
    "VectorStore",
    "open_store",
    "point_uuid",
]


def open_store(settings: Settings) -> VectorStore:
    """The VectorStore the settings ask for. The caller closes it."""
    storage = settings.storage
    # Imported here: each backend pulls in its own client library.
    if storage.backend == "edge":
        from turret_stream.storage.edge import EdgeStore

        return EdgeStore(settings.qdrant_path)
    if storage.backend == "server":
        from turret_stream.storage.server import ServerStore

        return ServerStore.connect(storage.url, storage.api_key, prefix=storage.collection_prefix)
    raise ValueError(f"unknown storage backend {storage.backend!r}")
