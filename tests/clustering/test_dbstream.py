"""DBSTREAM over a centre index agrees with river's DBSTREAM on micro-cluster structure."""

from __future__ import annotations

import numpy as np
import pytest
from river.cluster import DBSTREAM as RiverDBSTREAM

from turret_stream.clustering.dbstream import DBSTREAM
from turret_stream.clustering.index import ExactIndex


def blob_stream(n: int, dim: int, seed: int) -> list[np.ndarray]:
    """Unit vectors around 6 centres; the last third comes from 3 of them only, so
    micro-clusters of the others fade and get cleaned up."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(6, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    points = []
    for i in range(n):
        c = centres[rng.integers(6 if i < 2 * n // 3 else 3)]
        v = c + rng.normal(scale=0.15, size=dim)
        points.append(v / np.linalg.norm(v))
    return points


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_same_micro_clusters_as_river(seed):
    params = dict(
        clustering_threshold=0.35,
        fading_factor=0.01,
        cleanup_interval=50,
        intersection_factor=0.3,
        minimum_weight=1.0,
    )
    river = RiverDBSTREAM(**params)
    ours = DBSTREAM(ExactIndex(dim=8), link_neighbours=0, search_limit=10_000, **params)
    for x in blob_stream(600, 8, seed):
        river.learn_one({i: float(v) for i, v in enumerate(x)})
        ours.learn_one(x)

    river_mcs = list(river.micro_clusters.values())
    assert len(ours.micro_clusters) == len(river_mcs)
    assert len(river_mcs) > 10  # a real structure, with cleanup having removed some
    assert ours._next_id > len(river_mcs)

    our_ids = list(ours.micro_clusters)
    our_centres = np.array([ours.index.centre(i) for i in our_ids])
    for mc in river_mcs:
        centre = np.array([mc.center[i] for i in range(8)])
        distances = np.linalg.norm(our_centres - centre, axis=1)
        match = our_ids[int(distances.argmin())]
        assert distances.min() < 1e-9
        assert ours.micro_clusters[match].weight == pytest.approx(mc.weight)
        assert ours.micro_clusters[match].last_update == mc.last_update


def test_shared_density_matches_river():
    params = dict(clustering_threshold=0.35, fading_factor=0.0, cleanup_interval=10_000)
    river = RiverDBSTREAM(**params)
    ours = DBSTREAM(ExactIndex(dim=8), link_neighbours=0, search_limit=10_000, **params)
    for x in blob_stream(300, 8, seed=7):
        river.learn_one({i: float(v) for i, v in enumerate(x)})
        ours.learn_one(x)
    # Without cleanup, river's ids are ours (both count up from 0).
    river_pairs = {(i, j): v for i, row in river.s.items() for j, v in row.items() if v > 0}
    assert dict(ours.shared_density(now=300)) == pytest.approx(river_pairs)
    assert len(river_pairs) > 5


def test_weak_micro_clusters_are_absorbed_not_lost():
    model = DBSTREAM(
        ExactIndex(dim=2), clustering_threshold=0.3, fading_factor=0.1, cleanup_interval=10
    )
    lone = model.learn_one(np.array([1.0, 0.0]), t=0).mc
    # 0.5 away: its own micro-cluster (radius 0.3), but within the link radius (0.6).
    near_point = np.array([0.875, 0.484])
    near = model.learn_one(near_point, t=0).mc
    for step in range(1, 40):  # keep `near` alive, let `lone` fade
        model.learn_one(near_point, t=step)
    assert lone not in model.micro_clusters
    assert model.resolve(lone) == near
    far = model.learn_one(np.array([-1.0, 0.0]), t=40).mc
    model.learn_one(near_point, t=80)  # cleanup: `far` has nobody near
    assert far not in model.micro_clusters and model.resolve(far) is None
