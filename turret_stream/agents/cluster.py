"""The cluster agent: the one owner of each (project, dimension)'s topics.

Its input, the texts topic, is keyed by project:dimension, so every text of a dimension
reaches the same agent instance, in order. The instance keeps a DimensionOwner per
dimension it has seen, hands it each batch, and publishes where every event landed on
the assignments topic (keyed by project:session_id for the session actors).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence

import faust

from turret_stream.catalog import Catalog, dimension_names
from turret_stream.clustering.owner import DimensionOwner
from turret_stream.fencing import FencedStore, Lease, StaleOwner
from turret_stream.records import EmbeddedText, TopicAssignment, event_key
from turret_stream.settings import Settings
from turret_stream.storage import VectorStore

log = logging.getLogger(__name__)


class Owners:
    """This worker's DimensionOwners, created (and restored from the store) on first use."""

    def __init__(self, store: VectorStore, settings: Settings, dim: int) -> None:
        self.store = store
        self.catalog = Catalog(store)
        self.settings = settings
        self.dim = dim
        self._owners: dict[tuple[str, str], DimensionOwner] = {}
        # Batches and timer ticks run in worker threads; one at a time touches owners.
        self._lock = threading.Lock()
        # Writes refused because another worker had taken the dimension over.
        self.stale_refused = 0
        # Tests and the pipeline benchmark watch assignments as they happen.
        self.listeners: list[Callable[[TopicAssignment], None]] = []

    def get(self, project: str, dimension: str) -> DimensionOwner:
        owner = self._owners.get((project, dimension))
        if owner is None:
            # Take the dimension over before reading its state: from here on an owner
            # elsewhere that missed its eviction can no longer write (fencing.py).
            lease = Lease(self.store, dimension_names(project, dimension).slug)
            lease.acquire()
            owner = DimensionOwner(
                FencedStore(self.store, lease),
                self.catalog,
                project,
                dimension,
                self.settings,
                self.dim,
            )
            self._owners[(project, dimension)] = owner
        return owner

    def _drop_stale(self, key: tuple[str, str], exc: StaleOwner) -> None:
        log.warning("stopped owning %s:%s: %s", key[0], key[1], exc)
        self._owners.pop(key, None)
        self.stale_refused += 1

    def process(self, items: Sequence[EmbeddedText]) -> list[TopicAssignment]:
        groups: dict[tuple[str, str], list[EmbeddedText]] = {}
        for item in items:
            groups.setdefault((item.project, item.dimension), []).append(item)
        out: list[TopicAssignment] = []
        with self._lock:
            for key, group in groups.items():
                try:
                    out.extend(self.get(*key).process(group))
                except StaleOwner as exc:
                    # Its partition moved: the new owner gets these texts redelivered.
                    self._drop_stale(key, exc)
        return out

    def tick(self) -> int:
        """Recluster every owner that is due; returns how many did."""
        # A batch in progress reclusters on its own when due: do not queue behind it.
        if not self._lock.acquire(blocking=False):
            return 0
        try:
            now = time.time()
            done = 0
            for key, owner in list(self._owners.items()):
                try:
                    done += owner.tick(now)
                except StaleOwner as exc:
                    self._drop_stale(key, exc)
            return done
        finally:
            self._lock.release()

    def clear(self) -> None:
        """Forget in-memory owners (after a rebalance a dimension may have moved to
        another worker; if it comes back, its owner is restored from the store)."""
        with self._lock:
            self._owners.clear()


def register_cluster_agent(
    app: faust.App,
    texts: faust.TopicT,
    assignments: faust.TopicT,
    owners: Owners,
) -> None:
    @app.on_partitions_revoked.connect
    async def forget_owners(app: faust.App, revoked: object, **_: object) -> None:
        await asyncio.to_thread(owners.clear)

    # Check often; each owner reclusters only when due (recluster_interval_s since its last).
    tick = min(0.5, owners.settings.clustering.recluster_interval_s / 4)

    @app.timer(tick, name="turret.recluster")
    async def recluster_idle() -> None:
        await asyncio.to_thread(owners.tick)

    @app.agent(texts, name="turret.cluster")
    async def cluster(stream: faust.StreamT[EmbeddedText]) -> None:
        async for batch in stream.take(256, within=0.05):
            placed = await asyncio.to_thread(owners.process, batch)
            sent = []
            for a in placed:
                sent.append(await assignments.send(key=event_key(a.project, a.session_id), value=a))
                for listener in owners.listeners:
                    listener(a)
            # Delivered before take() acknowledges the batch's texts.
            await asyncio.gather(*sent)
