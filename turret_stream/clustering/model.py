"""TopicModel: everything that clusters one (project, dimension), in one object.

It owns a DBSTREAM instance (micro-clusters), the topic registry (stable topic ids), the
theme registry (topics grouped into themes at each reclustering, ``themes.py``) and the
reclustering policy. It does no I/O of its own: centres live in the CentreIndex it is
given, and its owner (the cluster agent) persists what ``take_dirty()`` reports, as the
records this class and its parts make (``clock_record``, ``communities_record``,
``DBSTREAM.micro_cluster_record``, ``TopicRegistry.to_record``, ``ThemeRegistry.to_record``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from turret_stream.clustering.dbstream import DBSTREAM
from turret_stream.clustering.index import CentreIndex
from turret_stream.clustering.macro import micro_cluster_graph, partition
from turret_stream.clustering.themes import ThemeRegistry, group_topics
from turret_stream.clustering.topics import TopicChange, TopicRegistry
from turret_stream.settings import ClusteringSettings


@dataclass(frozen=True)
class Placement:
    """Where one event landed: its micro-cluster, and that micro-cluster's topic now."""

    mc: int
    topic: str | None
    new_mc: bool


class TopicModel:
    def __init__(
        self,
        settings: ClusteringSettings,
        index: CentreIndex,
        *,
        engine: DBSTREAM | None = None,
        registry: TopicRegistry | None = None,
        themes: ThemeRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine or DBSTREAM(
            index,
            clustering_threshold=settings.clustering_threshold,
            fading_factor=settings.fading_factor,
            cleanup_interval=settings.cleanup_interval_s,
            weak_after=settings.weak_after_s,
            intersection_factor=settings.intersection_factor,
            link_neighbours=settings.link_neighbours,
            search_limit=settings.search_limit,
        )
        self.registry = registry or TopicRegistry()
        self.themes = themes or ThemeRegistry()
        # Each micro-cluster's theme before the last reclustering (regroup_themes' start).
        self._themes_before: dict[int, str] = {}
        self.theme_changes: list[TopicChange] = []
        self._since_recluster = 0
        self._last_recluster: float | None = None
        # Seconds the last reclustering cost, with what its owner wrote for it (the owner
        # sets it): the next one waits long enough that reclustering takes at most
        # ``recluster_max_share`` of the time (a bigger dimension reclusters less often).
        self.recluster_cost = 0.0
        # Community of each micro-cluster at the last reclustering (Leiden's start).
        self._communities: dict[int, int] = {}
        self._touched: set[int] = set()
        self._removed: set[int] = set()

    # -- learning -------------------------------------------------------------------------

    def learn(self, vector: np.ndarray, t: float) -> Placement:
        a = self.engine.learn_one(vector, t)
        self._touched |= a.touched
        self._removed.update(a.removed)
        self._touched.difference_update(a.removed)
        for mc in a.removed:
            self.registry.unassign(mc)
        if a.mc not in self.registry.mapping:
            # Until the next reclustering, a new micro-cluster joins the topic of the
            # nearest micro-cluster it is linked to, so its event has a topic at once.
            for other in a.linked:
                topic = self.registry.mapping.get(other)
                if topic is not None:
                    self.registry.assign(a.mc, topic)
                    break
        self._since_recluster += 1
        return Placement(a.mc, self.registry.mapping.get(a.mc), a.created)

    # -- topics ---------------------------------------------------------------------------

    def recluster_due(self, now: float, last_batch: float | None = None) -> bool:
        """Whether to recompute topics now (``ClusteringSettings``: event count, a pause
        of ``recluster_interval_s`` since ``last_batch``, or ``recluster_max_wait_s``
        since the last reclustering; never above ``recluster_max_share`` of the time).
        Without ``last_batch`` (callers that learn in one go) the interval counts from
        the last reclustering."""
        if self._since_recluster == 0:
            return False
        last = self._last_recluster
        if last is None:
            return True
        s = self.settings
        since = now - last
        share = s.recluster_max_share
        if since < self.recluster_cost * (1 - share) / share:
            return False
        # The longest wait is never shorter than the interval: raising the interval
        # (to recluster less) raises it too.
        max_wait = max(s.recluster_max_wait_s, s.recluster_interval_s)
        if self._since_recluster >= s.recluster_every_events or since >= max_wait:
            return True
        quiet = since if last_batch is None else now - last_batch
        return quiet >= s.recluster_interval_s

    def recluster(self, now: float) -> list[TopicChange]:
        s = self.settings
        nodes = list(self.engine.micro_clusters)
        edges = micro_cluster_graph(self.engine, now, s.link_weight)
        communities = partition(
            edges,
            nodes,
            resolution=s.resolution_for(len(nodes)),
            previous=self._communities or None,
        )
        self._communities = {mc: i for i, c in enumerate(communities) for mc in c}
        size = {mc: m.count for mc, m in self.engine.micro_clusters.items()}
        self._themes_before = self.themes.by_micro_cluster(self.registry.mapping)
        changes = self.registry.update(communities, size, now, s.min_topic_events)
        self._since_recluster = 0
        self._last_recluster = now
        return changes

    def regroup_themes(self, centres: Mapping[str, np.ndarray], now: float) -> list[TopicChange]:
        """Group the topics of the last reclustering into themes by their ``centres``
        (``themes.py``; its owner keeps the centres, :meth:`topic_centres` computes
        them); theme ids follow by overlap with the themes before that reclustering."""
        s = self.settings
        members = self.topics()
        live = {t: c for t, c in centres.items() if t in members}
        # Each surviving topic's theme before, for the grouping's hysteresis.
        groups = group_topics(
            live, s.theme_distance, previous=self.themes.of_topic, stickiness=s.theme_stickiness
        )
        # A topic without a centre known (none yet) is a theme of its own.
        grouped = {t for g in groups for t in g}
        groups += [{t} for t in members if t not in grouped]
        size = {mc: m.count for mc, m in self.engine.micro_clusters.items()}
        self.theme_changes = self.themes.update(groups, members, self._themes_before, size, now)
        return self.theme_changes

    def topic_centres(self, members: dict[str, set[int]]) -> dict[str, np.ndarray]:
        """Each topic's centre: its micro-clusters' centres weighted by their events (not
        normalised; a topic with no centre known gets none)."""
        index = self.engine.index
        centres = index.centres({mc for m in members.values() for mc in m})
        live = self.engine.micro_clusters
        out = {}
        for topic, mcs in members.items():
            vecs = [centres[m] * live[m].count for m in mcs if m in centres and m in live]
            if vecs:
                out[topic] = np.sum(vecs, axis=0)
        return out

    def topic_of(self, mc: int) -> str | None:
        """The topic of an event assigned to ``mc``, as of now (following cleanups)."""
        live = self.engine.resolve(mc)
        return None if live is None else self.registry.mapping.get(live)

    def topics(self) -> dict[str, set[int]]:
        return self.registry.members()

    def topic_size(self, members: set[int]) -> int:
        mcs = self.engine.micro_clusters
        return sum(mcs[m].count for m in members if m in mcs)

    # -- persistence ----------------------------------------------------------------------

    def clock_record(self) -> dict[str, Any]:
        """The model's scalars (its engine's included)."""
        return {
            "engine": self.engine.clock_record(),
            "since_recluster": self._since_recluster,
            "last_recluster": self._last_recluster,
        }

    def communities_record(self) -> list[list[int]]:
        """Each micro-cluster's community at the last reclustering (Leiden's start); it
        changes only at a reclustering."""
        return [[mc, c] for mc, c in self._communities.items()]

    def load_records(
        self,
        clock: dict[str, Any],
        micro_clusters: Iterable[dict[str, Any]],
        absorbed: dict[int, int | None],
        communities: Iterable[list[int]],
        registry: TopicRegistry,
        themes: ThemeRegistry | None = None,
    ) -> TopicModel:
        """Replace the learned state by records read back (in any order)."""
        self.engine.load_records(clock["engine"], micro_clusters, absorbed)
        self._since_recluster = int(clock["since_recluster"])
        self._last_recluster = clock["last_recluster"]
        self._communities = {int(mc): int(c) for mc, c in communities}
        self.registry = registry
        self.themes = themes or ThemeRegistry()
        self._touched, self._removed = set(), set()
        return self

    def take_dirty(self) -> tuple[set[int], set[int]]:
        """Micro-clusters changed and removed since the last call; the owner writes them."""
        touched, removed = self._touched, self._removed
        self._touched, self._removed = set(), set()
        return touched & set(self.engine.micro_clusters), removed
