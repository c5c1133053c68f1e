"""The Qdrant-backed centre index answers as the exact one, whatever is still pending.

The owner learns a batch against centres partly written to the store and partly moved,
created or removed since (the overlay, written once per batch): a neighbour search must
see the newest centre of every micro-cluster, never a stale or removed one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from turret_stream.clustering.index import ExactIndex
from turret_stream.clustering.store_index import StoreIndex
from turret_stream.storage.edge import EdgeStore

DIM = 8


def test_nearest_sees_pending_moves_and_removals_as_the_exact_index(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    with EdgeStore(tmp_path / "qdrant") as store:
        stored, exact = StoreIndex(store, "mc", DIM), ExactIndex(DIM)

        def put(i: int, centre: np.ndarray) -> None:
            stored.put(i, centre)
            exact.put(i, centre)

        for i in range(200):
            put(i, rng.normal(size=DIM))
        stored.flush()  # written: the store answers for these
        for i in range(0, 200, 3):  # moved since, not written yet
            put(i, rng.normal(size=DIM))
        for i in range(200, 230):  # created since
            put(i, rng.normal(size=DIM))
        gone = [1, 4, 7, 201, 205]  # removed: one of them only ever pending
        stored.remove(gone)
        exact.remove(gone)

        def same(x: np.ndarray, limit: int, max_distance: float | None) -> list[int]:
            got = stored.nearest(x, limit, max_distance)
            want = exact.nearest(x, limit, max_distance)
            assert [n.id for n in got] == [n.id for n in want]
            assert [n.distance for n in got] == pytest.approx([n.distance for n in want])
            found = stored.centres(n.id for n in got)
            for n in got:
                np.testing.assert_allclose(found[n.id], exact.centre(n.id))
            return [n.id for n in got]

        for _ in range(20):
            x = rng.normal(size=DIM)
            assert not set(same(x, 10, None)) & set(gone)
            near = same(x, 50, 1.5)
            assert all(n.distance <= 1.5 for n in exact.nearest(x, 50, 1.5))
            assert len(near) < 50  # the radius cut, not the limit
        pending, removed = stored.pending()
        assert set(pending) == set(range(0, 200, 3)) | set(range(200, 230)) - set(gone)
        assert removed == set(gone)
        stored.flush()
        assert stored.pending() == ({}, set())
        x = rng.normal(size=DIM)
        same(x, 10, None)


def test_the_exact_index_answers_as_a_sort_of_every_distance() -> None:
    """``ExactIndex`` picks candidates by a fast formula, then ranks them by their exact
    distance: the same neighbours, distances and centres as sorting every distance, through
    growth, moves and removals (a removal moves the last row into the hole)."""
    rng = np.random.default_rng(9)
    index, centres = ExactIndex(DIM), {}
    for step in range(400):
        i = int(rng.integers(120))
        if rng.random() < 0.15:
            index.remove([i])
            centres.pop(i, None)
        else:
            # Some far from the origin: a rounding of |m|^2 must not change the pick.
            centres[i] = rng.normal(size=DIM) * (1000.0 if i % 7 == 0 else 1.0)
            index.put(i, centres[i])
        if step % 20 == 19:
            x = rng.normal(size=DIM)
            ids = np.array(sorted(centres))
            d = np.linalg.norm(np.array([centres[k] for k in ids]) - x, axis=1)
            for limit, radius in ((1, None), (5, None), (30, None), (500, None), (30, 3.0)):
                got = index.nearest(x, limit, radius)
                want = [(int(ids[r]), d[r]) for r in np.argsort(d, kind="stable")[:limit]]
                want = [(k, v) for k, v in want if radius is None or v <= radius]
                assert [(n.id, n.distance) for n in got] == want
                for n in got:
                    np.testing.assert_array_equal(index.centre(n.id), centres[n.id])
    assert len(index) == len(centres) > 16
