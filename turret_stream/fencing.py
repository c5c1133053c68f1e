"""Fencing: a dimension's stale owner cannot write after another worker took it over.

Kafka gives each dimension's partition to one worker at a time, but a worker can miss its
eviction: stuck in a long snapshot or index build past the session timeout, it still
holds a ``DimensionOwner`` and would keep writing next to the new owner. So every owner
takes a *lease* when it is created (``Lease.acquire``): the dimension's epoch in the
``leases`` collection goes up by one and names this owner. Every write the owner makes
goes through a ``FencedStore`` that first checks the lease is still its own (same epoch,
same holder); if a newer owner took it, the write is refused with ``StaleOwner`` and the
owner is dropped (``agents/cluster.py``). The batch it held is not acknowledged by this
worker's lost generation, so Kafka redelivers it to the new owner, which drops repeated
event ids.

What a store without transactions allows: the check and the write are two calls, so a
takeover that lands between them lets one last write through (bounded by one batch); and
two owners that acquire at the same instant both bump to the same epoch, the last
writer's holder wins and the other is refused at its first write.

A store only this process can write (``VectorStore.exclusive``: the in-process engine,
which locks its directory) holds exactly the leases this process wrote, so ``check``
compares with those, kept in memory per store, instead of reading the lease back before
every write (that read was 4% of a worker's busy time). Two owners of one dimension in
one process (an old one that missed a rebalance, and the new one) are still told apart.
"""

from __future__ import annotations

import logging
import threading
import uuid
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from turret_stream.errors import TurretError
from turret_stream.storage import Point, VectorStore
from turret_stream.storage.base import Distance, IndexType

log = logging.getLogger(__name__)

LEASES = "leases"


class StaleOwner(TurretError):
    """Another worker took the dimension over: this owner must stop writing."""


# Exclusive store -> {lease key: (epoch, holder)} as this process last wrote it.
_written: weakref.WeakKeyDictionary[VectorStore, dict[str, tuple[int, str | None]]] = (
    weakref.WeakKeyDictionary()
)
_written_lock = threading.Lock()


class Lease:
    """One owner's claim on one dimension (``key``, e.g. its collection slug)."""

    def __init__(self, store: VectorStore, key: str) -> None:
        self.store = store
        self.key = key
        self.holder = uuid.uuid4().hex
        self.epoch = 0

    def _current(self) -> tuple[int, str | None]:
        if self.store.exclusive:
            with _written_lock:
                known = _written.get(self.store, {}).get(self.key)
            if known is not None:
                return known
        found = self.store.retrieve(LEASES, [self.key])
        if not found:
            return 0, None
        payload = found[0].payload
        return int(payload.get("epoch", 0)), payload.get("holder")

    def acquire(self) -> int:
        """Take the dimension over: epoch + 1, held by this owner. Returns the epoch."""
        self.store.create_collection(LEASES, 1, "dot")
        epoch, _ = self._current()
        self.epoch = epoch + 1
        self.store.upsert(
            LEASES,
            [Point(self.key, [1.0], {"epoch": self.epoch, "holder": self.holder})],
        )
        if self.store.exclusive:
            with _written_lock:
                _written.setdefault(self.store, {})[self.key] = (self.epoch, self.holder)
        return self.epoch

    def check(self) -> None:
        """StaleOwner unless this owner still holds the newest epoch."""
        epoch, holder = self._current()
        if (epoch, holder) != (self.epoch, self.holder):
            raise StaleOwner(
                f"{self.key}: taken over by another owner (epoch {epoch}, ours {self.epoch})"
            )


class FencedStore(VectorStore):
    """A VectorStore whose writes are refused once ``lease`` is no longer held.

    Reads pass through; closing is the real store's owner's business, not this view's."""

    def __init__(self, store: VectorStore, lease: Lease) -> None:
        self.inner = store
        self.lease = lease

    # --- writes: checked -------------------------------------------------------------

    def create_collection(
        self,
        name: str,
        dim: int,
        distance: Distance = "cosine",
        indexes: Mapping[str, IndexType] | None = None,
        *,
        on_disk: bool = False,
    ) -> None:
        self.lease.check()
        self.inner.create_collection(name, dim, distance, indexes, on_disk=on_disk)

    def drop_collection(self, name: str) -> None:
        self.lease.check()
        self.inner.drop_collection(name)

    def upsert(self, name: str, points: Sequence[Point]) -> None:
        self.lease.check()
        self.inner.upsert(name, points)

    def set_payload(self, name: str, ids: Sequence[str], payload: Mapping[str, Any]) -> None:
        self.lease.check()
        self.inner.set_payload(name, ids, payload)

    def delete(self, name: str, ids: Sequence[str]) -> None:
        self.lease.check()
        self.inner.delete(name, ids)

    # --- reads and housekeeping: passed through ----------------------------------------

    def has_collection(self, name: str) -> bool:
        return self.inner.has_collection(name)

    def list_collections(self) -> list[str]:
        return self.inner.list_collections()

    def retrieve(self, *args: Any, **kwargs: Any) -> list:
        return self.inner.retrieve(*args, **kwargs)

    def search(self, *args: Any, **kwargs: Any) -> list:
        return self.inner.search(*args, **kwargs)

    def scroll(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.scroll(*args, **kwargs)

    def count(self, *args: Any, **kwargs: Any) -> int:
        return self.inner.count(*args, **kwargs)

    def flush(self, collections: Sequence[str] | None = None) -> None:
        self.inner.flush(collections)

    def written_since_flush(self) -> list[str]:
        return self.inner.written_since_flush()

    def close(self) -> None:
        """The real store outlives this owner's view of it."""

    def __getattr__(self, name: str) -> Any:
        # Backend extras (e.g. the edge store's optimize) are not writes of records.
        return getattr(self.inner, name)
