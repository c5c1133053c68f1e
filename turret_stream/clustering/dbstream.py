"""DBSTREAM (Hahsler & Bolaños 2016) over a centre index.

Micro-clusters with fading weights, shared density between micro-clusters that a point
falls into together, and cleanup of weak ones: the same update rules as river's
``river.cluster.DBSTREAM`` (Algorithms 1 and 2 of the paper), with two differences:

* neighbours come from a :class:`~turret_stream.clustering.index.CentreIndex` (Qdrant in
  production) instead of a scan of every micro-cluster, and at most ``search_limit`` of
  them are considered;
* besides shared density, each point adds a *link* between the micro-cluster it is
  assigned to and its ``link_neighbours`` nearest other micro-clusters within
  ``link_radius``. Shared density only connects micro-clusters whose radii overlap; links
  also connect close ones that do not, which the macro step (``macro.py``) needs to find
  whole topics rather than fragments.

Time is whatever the caller passes as ``t`` (seconds in the worker, the event index when
replaying river's step-based semantics through :meth:`DBSTREAM.learn_one` without ``t``).
A weight fades as ``2 ** (-fading_factor * elapsed)``.

Removed (weak) micro-clusters are not forgotten silently: each is *absorbed* into its
nearest surviving micro-cluster within ``link_radius`` if there is one, so the events that
were assigned to it keep a home (see :meth:`DBSTREAM.resolve`).

>>> import numpy as np
>>> from turret_stream.clustering.index import ExactIndex
>>> model = DBSTREAM(ExactIndex(dim=2), clustering_threshold=0.5)
>>> a = model.learn_one(np.array([1.0, 0.0]))
>>> b = model.learn_one(np.array([0.99, 0.1]))
>>> c = model.learn_one(np.array([0.0, 1.0]))
>>> a.mc == b.mc, a.mc == c.mc, len(model.micro_clusters)
(True, False, 2)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from turret_stream.clustering.index import CentreIndex, Neighbour

Pair = tuple[int, int]


@dataclass
class MicroCluster:
    id: int
    weight: float
    last_update: float
    created: float
    # Events assigned to this micro-cluster (never faded): topic sizes are event counts.
    count: int = 0


@dataclass
class Decayed:
    """A faded counter: ``value`` as of time ``t``."""

    value: float
    t: float

    def at(self, now: float, fading: float) -> float:
        return self.value * 2 ** (-fading * (now - self.t))

    def add_one(self, now: float, fading: float) -> None:
        self.value = self.at(now, fading) + 1.0
        self.t = now


@dataclass(frozen=True)
class Assignment:
    """The outcome of one ``learn_one``."""

    mc: int
    created: bool
    # Micro-clusters whose state changed (weights, centres, shared density, links).
    touched: frozenset[int] = frozenset()
    removed: tuple[int, ...] = ()
    # The other micro-clusters this point was linked to, nearest first.
    linked: tuple[int, ...] = ()


@dataclass
class _Changes:
    touched: set[int] = field(default_factory=set)
    removed: list[int] = field(default_factory=list)


def _pair(a: int, b: int) -> Pair:
    return (a, b) if a < b else (b, a)


class DBSTREAM:
    """Online density-based micro-clustering; one instance per (project, dimension).

    Parameters keep river's names and meaning; ``clustering_threshold`` is a Euclidean
    radius (on unit vectors, ``r`` corresponds to cosine similarity ``1 - r**2 / 2``).
    """

    def __init__(
        self,
        index: CentreIndex,
        clustering_threshold: float = 0.5,
        fading_factor: float = 0.0,
        cleanup_interval: float = 3600.0,
        intersection_factor: float = 0.3,
        minimum_weight: float = 1.0,
        link_neighbours: int = 5,
        link_radius: float | None = None,
        search_limit: int = 32,
        weak_after: float | None = None,
    ) -> None:
        self.index = index
        self.clustering_threshold = clustering_threshold
        self.fading_factor = fading_factor
        self.cleanup_interval = cleanup_interval
        # River ties "how often to clean up" to "how long until a lone point is noise"
        # (t_gap). Over wall-clock time they differ: clean up hourly, but let a
        # micro-cluster wait days for company before it counts as weak.
        self.weak_after = cleanup_interval if weak_after is None else weak_after
        self.intersection_factor = intersection_factor
        self.minimum_weight = minimum_weight
        self.link_neighbours = link_neighbours
        self.link_radius = 2 * clustering_threshold if link_radius is None else link_radius
        self.search_limit = max(search_limit, link_neighbours + 1)

        self._mcs: dict[int, MicroCluster] = {}
        self._shared: dict[Pair, Decayed] = {}
        self._links: dict[Pair, Decayed] = {}
        # Adjacency of both pair maps, so cleanup and persistence find a cluster's pairs.
        self._pairs_of: dict[int, set[Pair]] = {}
        self._absorbed: dict[int, int | None] = {}
        self._next_id = 0
        self._step = 0
        self._last_cleanup: float | None = None

    # -- learning -------------------------------------------------------------------------

    def learn_one(self, x: np.ndarray, t: float | None = None) -> Assignment:
        """Add one point; return the micro-cluster it was assigned to.

        Without ``t`` the time is the number of points seen so far and cleanup runs every
        ``cleanup_interval`` points, exactly as river does.
        """
        changes = _Changes()
        step_mode = t is None
        now = float(self._step) if step_mode else float(t)
        self._step += 1
        if self._last_cleanup is None:
            self._last_cleanup = now

        r = self.clustering_threshold
        # Most points have a few neighbours: ask for few, and ask again for up to
        # search_limit only when all of those were inside the radius.
        first = min(self.search_limit, self.link_neighbours + 2)
        candidates = self.index.nearest(x, first, self.link_radius)
        if len(candidates) == first and candidates[-1].distance < r:
            candidates = self.index.nearest(x, self.search_limit, self.link_radius)
        within = sorted((n for n in candidates if n.distance < r), key=lambda n: n.id)
        if not within:
            mc = self._create(x, now)
            created = True
        else:
            mc = min(within, key=lambda n: n.distance).id
            created = False
            self._update_neighbours(x, now, within, changes)
        self._mcs[mc].count += 1
        changes.touched.add(mc)
        linked = self._link(mc, candidates, now, changes)

        if step_mode:
            if self._step % self.cleanup_interval == 0:
                self._cleanup(float(self._step), changes)
        elif now - self._last_cleanup >= self.cleanup_interval:
            self._cleanup(now, changes)
            self._last_cleanup = now
        changes.touched.difference_update(changes.removed)
        return Assignment(mc, created, frozenset(changes.touched), tuple(changes.removed), linked)

    def _create(self, x: np.ndarray, now: float) -> int:
        mc_id = self._next_id
        self._next_id += 1
        self._mcs[mc_id] = MicroCluster(mc_id, 1.0, now, created=now)
        self.index.put(mc_id, np.asarray(x, dtype=np.float64))
        return mc_id

    def _update_neighbours(
        self, x: np.ndarray, now: float, within: list[Neighbour], changes: _Changes
    ) -> None:
        fading = self.fading_factor
        sigma = self.clustering_threshold / 3
        before = self.index.centres(n.id for n in within)  # one read for all of them
        after: dict[int, np.ndarray] = {}
        for n in within:
            mc = self._mcs[n.id]
            mc.weight = mc.weight * 2 ** (-fading * (now - mc.last_update)) + 1
            mc.last_update = now
            h = math.exp(-(n.distance**2) / (2 * sigma**2))
            centre = before[n.id]
            after[n.id] = centre + h * (x - centre)
            changes.touched.add(n.id)
        ids = [n.id for n in within]
        for a in range(len(ids)):
            for b in range(a + 1, len(ids)):
                self._bump(self._shared, _pair(ids[a], ids[b]), now)
        # Keep micro-clusters from collapsing into each other: a pair that moved closer
        # than the radius goes back to where it was (river's rule, pair by pair).
        r = self.clustering_threshold
        for a in range(len(ids)):
            for b in range(a + 1, len(ids)):
                i, j = ids[a], ids[b]
                if np.linalg.norm(after[i] - after[j]) < r:
                    after[i], after[j] = before[i], before[j]
        for i in ids:
            self.index.put(i, after[i])

    def _link(
        self, mc: int, candidates: list[Neighbour], now: float, changes: _Changes
    ) -> tuple[int, ...]:
        linked: list[int] = []
        for n in candidates:
            if len(linked) >= self.link_neighbours or n.distance >= self.link_radius:
                break
            if n.id == mc:
                continue
            self._bump(self._links, _pair(mc, n.id), now)
            changes.touched.add(n.id)
            linked.append(n.id)
        return tuple(linked)

    def _bump(self, pairs: dict[Pair, Decayed], pair: Pair, now: float) -> None:
        entry = pairs.get(pair)
        if entry is None:
            pairs[pair] = Decayed(1.0, now)
            self._pairs_of.setdefault(pair[0], set()).add(pair)
            self._pairs_of.setdefault(pair[1], set()).add(pair)
        else:
            entry.add_one(now, self.fading_factor)

    # -- cleanup (Algorithm 2) ------------------------------------------------------------

    def _cleanup(self, now: float, changes: _Changes) -> None:
        fading = self.fading_factor
        weak_weight = 2 ** (-fading * self.weak_after)
        weak = [
            mc.id
            for mc in self._mcs.values()
            if mc.weight * 2 ** (-fading * (now - mc.last_update)) < weak_weight
        ]
        counts = {mc_id: self._mcs[mc_id].count for mc_id in weak}
        for mc_id in weak:
            self._remove(mc_id, changes)
        if weak:
            # A home's count grows: it is changed state, to be persisted.
            changes.touched.update(h for h in self._absorb(weak, counts) if h is not None)
        threshold = self.intersection_factor * weak_weight
        for pairs in (self._shared, self._links):
            faded = [p for p, d in pairs.items() if d.at(now, fading) < threshold]
            for p in faded:
                self._drop_pair(pairs, p)
                changes.touched.update(p)

    def _remove(self, mc_id: int, changes: _Changes) -> None:
        del self._mcs[mc_id]
        for pair in list(self._pairs_of.get(mc_id, ())):
            other = pair[0] if pair[1] == mc_id else pair[1]
            self._shared.pop(pair, None)
            self._links.pop(pair, None)
            self._pairs_of.get(other, set()).discard(pair)
            changes.touched.add(other)
        self._pairs_of.pop(mc_id, None)
        changes.removed.append(mc_id)

    def _absorb(self, removed: list[int], counts: dict[int, int]) -> list[int | None]:
        # Find each removed cluster's nearest survivor before the centres disappear; the
        # survivor takes over its events (and their count, which sizes topics).
        gone = set(removed)
        homes: list[int | None] = []
        for mc_id in removed:
            centre = self.index.centre(mc_id)
            home = None
            for n in self.index.nearest(centre, self.search_limit + len(gone), self.link_radius):
                if n.id in gone:
                    continue
                if n.distance < self.link_radius:
                    home = n.id
                break
            self._absorbed[mc_id] = home
            homes.append(home)
            if home is not None:
                self._mcs[home].count += counts[mc_id]
        self.index.remove(removed)
        return homes

    def _drop_pair(self, pairs: dict[Pair, Decayed], pair: Pair) -> None:
        del pairs[pair]
        if pair not in self._shared and pair not in self._links:
            for end in pair:
                self._pairs_of.get(end, set()).discard(pair)

    # -- reading --------------------------------------------------------------------------

    def resolve(self, mc_id: int) -> int | None:
        """The live micro-cluster that now holds the events of ``mc_id`` (following
        absorptions), or None when they were left without one."""
        seen = 0
        current: int | None = mc_id
        while current is not None and current not in self._mcs:
            current = self._absorbed.get(current)
            seen += 1
            if seen > len(self._absorbed) + 1:  # defensive: never loop forever
                return None
        return current

    @property
    def micro_clusters(self) -> dict[int, MicroCluster]:
        return self._mcs

    def weight_at(self, mc_id: int, now: float) -> float:
        mc = self._mcs[mc_id]
        return mc.weight * 2 ** (-self.fading_factor * (now - mc.last_update))

    def shared_density(self, now: float) -> Iterator[tuple[Pair, float]]:
        for pair, d in self._shared.items():
            yield pair, d.at(now, self.fading_factor)

    def links(self, now: float) -> Iterator[tuple[Pair, float]]:
        for pair, d in self._links.items():
            yield pair, d.at(now, self.fading_factor)

    def pairs_of(self, mc_id: int) -> Iterable[Pair]:
        return self._pairs_of.get(mc_id, ())

    @property
    def absorbed(self) -> dict[int, int | None]:
        return self._absorbed

    # -- learned state as records ---------------------------------------------------------
    # The learned state splits into one record per micro-cluster (its weight, count and
    # the pairs it is the lower end of) plus a few scalars and the absorptions, so an
    # owner writes only the records of what ``learn_one`` reported as touched or removed.
    # Centres are not here: they live in the centre index.

    def micro_cluster_record(self, mc_id: int) -> dict[str, Any]:
        """One live micro-cluster's learned state (JSON-ready)."""
        m = self._mcs[mc_id]
        pairs = []
        for pair in sorted(self._pairs_of.get(mc_id, ())):
            if pair[0] != mc_id:
                continue  # a pair is kept by its lower end
            s, k = self._shared.get(pair), self._links.get(pair)
            pairs.append(
                [
                    pair[1],
                    None if s is None else [s.value, s.t],
                    None if k is None else [k.value, k.t],
                ]
            )
        return {
            "id": m.id,
            "weight": m.weight,
            "last_update": m.last_update,
            "created": m.created,
            "count": m.count,
            "pairs": pairs,
        }

    def clock_record(self) -> dict[str, Any]:
        """The scalars: the next id, the step counter, the last cleanup."""
        return {"next_id": self._next_id, "step": self._step, "last_cleanup": self._last_cleanup}

    def load_records(
        self,
        clock: Mapping[str, Any],
        micro_clusters: Iterable[Mapping[str, Any]],
        absorbed: Mapping[int, int | None],
    ) -> DBSTREAM:
        """Replace the learned state by records from :meth:`micro_cluster_record`,
        :meth:`clock_record` and :attr:`absorbed` (read back in any order). A pair whose
        other end is not among the micro-clusters is dropped (its end was removed)."""
        records = list(micro_clusters)
        self._mcs = {
            int(r["id"]): MicroCluster(
                int(r["id"]), r["weight"], r["last_update"], r["created"], int(r["count"])
            )
            for r in records
        }
        self._shared, self._links, self._pairs_of = {}, {}, {}
        for r in records:
            low = int(r["id"])
            for other, shared, link in r["pairs"]:
                if int(other) not in self._mcs:
                    continue
                pair = (low, int(other))
                if shared is not None:
                    self._shared[pair] = Decayed(shared[0], shared[1])
                if link is not None:
                    self._links[pair] = Decayed(link[0], link[1])
                self._pairs_of.setdefault(pair[0], set()).add(pair)
                self._pairs_of.setdefault(pair[1], set()).add(pair)
        self._absorbed = {int(k): (None if v is None else int(v)) for k, v in absorbed.items()}
        self._next_id = int(clock["next_id"])
        self._step = int(clock["step"])
        self._last_cleanup = clock["last_cleanup"]
        return self
