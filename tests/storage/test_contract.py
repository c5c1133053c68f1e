"""The VectorStore contract, run against both backends on their real engines.

"edge": qdrant-edge on a temporary directory. "server": qdrant-client's local mode
(``QdrantClient(":memory:")``), since no Qdrant server runs in the test environment.
"""

from __future__ import annotations

import math
import random
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import qdrant_edge
from qdrant_client import QdrantClient

from turret_stream.settings import Settings
from turret_stream.storage import (
    CollectionNotFound,
    Filter,
    Point,
    StorageLocked,
    VectorStore,
    open_store,
)
from turret_stream.storage.edge import EdgeStore, EdgeTuning
from turret_stream.storage.server import ServerStore

# Local mode warns that payload indexes have no effect there; that is expected.
pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect")

DIM = 4


@pytest.fixture(params=["edge", "server"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorStore]:
    if request.param == "edge":
        opened: VectorStore = EdgeStore(tmp_path / "qdrant")
    else:
        opened = ServerStore(QdrantClient(":memory:"), prefix="test")
    yield opened
    opened.close()


@pytest.fixture(scope="module", params=["edge", "server"])
def read_only(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VectorStore]:
    """A store holding the "ev" collection, shared by tests that only read it."""
    if request.param == "edge":
        opened: VectorStore = EdgeStore(tmp_path_factory.mktemp("edge") / "qdrant")
    else:
        opened = ServerStore(QdrantClient(":memory:"), prefix="test")
    events(opened)
    yield opened
    opened.close()


def unit(*xs: float) -> list[float]:
    norm = math.sqrt(sum(x * x for x in xs))
    return [x / norm for x in xs]


def events(store: VectorStore) -> None:
    """Collection "ev": 12 points with kind/n/score/flag payloads."""
    store.create_collection("ev", DIM, indexes={"kind": "keyword", "n": "integer"})
    kinds = ["click", "view", "buy"]
    store.upsert(
        "ev",
        [
            Point(
                f"evt_{i:02d}",
                unit(1.0, i / 4, (i % 3) / 2, 0.1),
                {"kind": kinds[i % 3], "n": i, "score": i / 10, "flag": i % 2 == 0},
            )
            for i in range(12)
        ],
    )


def ids_of(records: list) -> list[str]:
    return [r.id for r in records]


def scroll_all(store: VectorStore, name: str, flt: Filter | None, limit: int) -> list[str]:
    seen: list[str] = []
    offset = None
    while True:
        page, offset = store.scroll(name, filter=flt, limit=limit, offset=offset)
        assert len(page) <= limit
        seen.extend(ids_of(page))
        if offset is None:
            return seen


# --- collections -------------------------------------------------------------------------


def test_collections_lifecycle(store: VectorStore) -> None:
    assert store.list_collections() == []
    assert not store.has_collection("a")
    store.create_collection("b", DIM)
    store.create_collection("a", 3, "euclid")
    store.create_collection("a", 3, "euclid")  # idempotent
    assert store.list_collections() == ["a", "b"]
    assert store.has_collection("a")

    with pytest.raises(ValueError, match="dim=3"):
        store.create_collection("a", 8, "euclid")
    with pytest.raises(ValueError):
        store.create_collection("a", 3, "cosine")
    with pytest.raises(ValueError, match="invalid collection name"):
        store.create_collection("../escape", DIM)

    store.drop_collection("a")
    store.drop_collection("a")  # already gone: fine
    assert store.list_collections() == ["b"]


OPERATIONS = {
    "upsert": lambda s: s.upsert("nope", [Point("p", [1.0] * DIM, {})]),
    "set_payload": lambda s: s.set_payload("nope", ["p"], {"a": 1}),
    "delete": lambda s: s.delete("nope", ["p"]),
    "retrieve": lambda s: s.retrieve("nope", ["p"]),
    "search": lambda s: s.search("nope", [1.0] * DIM, 3),
    "scroll": lambda s: s.scroll("nope"),
    "count": lambda s: s.count("nope"),
}


@pytest.mark.parametrize("operation", OPERATIONS)
def test_unknown_collection_raises(store: VectorStore, operation: str) -> None:
    store.create_collection("other", DIM)
    with pytest.raises(CollectionNotFound, match="nope"):
        OPERATIONS[operation](store)


# --- points --------------------------------------------------------------------------------


def test_upsert_and_retrieve_keep_ids_payloads_and_order(store: VectorStore) -> None:
    events(store)
    records = store.retrieve("ev", ["evt_05", "missing", "evt_01", "evt_05"])
    assert ids_of(records) == ["evt_05", "evt_01"]  # order of ids, missing left out, once
    assert records[0].payload == {"kind": "buy", "n": 5, "score": 0.5, "flag": False}
    assert records[0].vector is None
    assert "_id" not in records[1].payload

    with_vec = store.retrieve("ev", ["evt_04"], with_vectors=True)[0]
    assert with_vec.vector == pytest.approx(unit(1.0, 1.0, 0.5, 0.1), abs=1e-6)
    assert store.retrieve("ev", []) == []


def test_times_to_the_microsecond_come_back_exactly(store: VectorStore) -> None:
    # The API stamps events to the microsecond because journeys compare an event's time
    # in a message with its time read back from the store; a float of 17 significant
    # digits does not always come back exact (qdrant-edge: one in eight, an ulp off).
    rng = random.Random(7)
    times = [round(1_796_017_000 + rng.random() * 1000, 6) for _ in range(500)]
    store.create_collection("ts", 2, "cosine")
    store.upsert("ts", [Point(f"e{i}", unit(1.0, 0.0), {"ts": t}) for i, t in enumerate(times)])
    back = {r.id: r.payload["ts"] for r in store.retrieve("ts", [f"e{i}" for i in range(500)])}
    assert [back[f"e{i}"] for i in range(500)] == times


def test_upsert_replaces_the_whole_point(store: VectorStore) -> None:
    events(store)
    store.upsert("ev", [Point("evt_01", unit(0, 0, 1, 0), {"kind": "new"})])
    record = store.retrieve("ev", ["evt_01"], with_vectors=True)[0]
    assert record.payload == {"kind": "new"}
    assert record.vector == pytest.approx([0, 0, 1, 0], abs=1e-6)
    assert store.count("ev") == 12


def test_upsert_refuses_missing_vector_and_reserved_key(store: VectorStore) -> None:
    store.create_collection("c", DIM)
    with pytest.raises(ValueError, match="vector is required"):
        store.upsert("c", [Point("ok", [1.0] * DIM, {}), Point("bad", None, {})])
    with pytest.raises(ValueError, match="reserved"):
        store.upsert("c", [Point("x", [1.0] * DIM, {"_id": "spoof"})])
    with pytest.raises(ValueError, match="reserved"):
        store.set_payload("c", ["x"], {"_id": "spoof"})
    assert store.count("c") == 0  # a refused batch writes nothing


def test_set_payload_merges_and_skips_missing_ids(store: VectorStore) -> None:
    events(store)
    store.set_payload("ev", ["evt_00", "evt_01", "nobody"], {"kind": "merged", "extra": [1, 2]})
    merged = {r.id: r.payload for r in store.retrieve("ev", ["evt_00", "evt_01", "evt_02"])}
    assert merged["evt_00"] == {
        "kind": "merged",
        "n": 0,
        "score": 0.0,
        "flag": True,
        "extra": [1, 2],
    }
    assert merged["evt_01"]["kind"] == "merged"
    assert merged["evt_01"]["n"] == 1
    assert merged["evt_02"]["kind"] == "buy"  # untouched
    assert store.retrieve("ev", ["nobody"]) == []  # not created by set_payload


def test_delete(store: VectorStore) -> None:
    events(store)
    store.delete("ev", ["evt_00", "evt_03", "never-existed"])
    store.delete("ev", [])
    assert store.count("ev") == 10
    assert store.retrieve("ev", ["evt_00", "evt_03"]) == []
    assert "evt_00" not in scroll_all(store, "ev", None, 100)


# --- filters, count, scroll ------------------------------------------------------------------


FILTER_CASES = [
    # (filter, expected ids as numbers)
    (Filter(must={"kind": "click"}), [0, 3, 6, 9]),
    (Filter(must={"kind": ["click", "buy"]}), [0, 2, 3, 5, 6, 8, 9, 11]),
    (Filter(must={"kind": {"view"}, "n": (1, 4, 7, 11)}), [1, 4, 7]),
    (Filter(must={"n": 4}), [4]),
    (Filter(must={"flag": True}), [0, 2, 4, 6, 8, 10]),
    (Filter(must={"flag": False, "kind": "view"}), [1, 7]),
    (Filter(must={"score": 0.3}), [3]),
    (Filter(ranges={"n": (3, 6)}), [3, 4, 5, 6]),
    (Filter(ranges={"n": (None, 2)}), [0, 1, 2]),
    (Filter(ranges={"score": (0.85, None)}), [9, 10, 11]),
    (Filter(must_not={"kind": "click"}), [1, 2, 4, 5, 7, 8, 10, 11]),
    (Filter(must_not={"kind": ["click", "view"], "n": 2}), [5, 8, 11]),
    (Filter(must={"kind": "view"}, ranges={"n": (2, None)}, must_not={"n": [4]}), [7, 10]),
    (Filter(must={"kind": []}), []),  # in an empty set: nothing
    (Filter(must_not={"kind": []}), list(range(12))),
    (Filter(must={"missing_field": "x"}), []),
    (Filter(must_not={"missing_field": "x"}), list(range(12))),
    (Filter(), list(range(12))),
]


@pytest.mark.parametrize(("flt", "expected"), FILTER_CASES)
def test_filters_in_count_scroll_and_search(
    read_only: VectorStore, flt: Filter, expected: list[int]
) -> None:
    store = read_only
    want = sorted(f"evt_{i:02d}" for i in expected)
    assert store.count("ev", flt) == len(want)
    assert sorted(scroll_all(store, "ev", flt, limit=5)) == want
    hits = store.search("ev", unit(1, 1, 1, 1), limit=20, filter=flt)
    assert sorted(h.id for h in hits) == want


def test_scroll_pages_through_every_point_once(store: VectorStore) -> None:
    store.create_collection("many", DIM)
    rng = np.random.default_rng(7)
    all_ids = [f"mc_{i}" for i in range(53)]
    store.upsert("many", [Point(i, rng.normal(size=DIM), {"i": n}) for n, i in enumerate(all_ids)])
    for limit in (1, 10, 53, 100):
        seen = scroll_all(store, "many", None, limit)
        assert len(seen) == len(set(seen)) == 53
        assert set(seen) == set(all_ids)
    page, offset = store.scroll("many", limit=10, with_vectors=True)
    assert offset is not None
    assert all(r.vector is not None and len(r.vector) == DIM for r in page)
    assert all(r.payload["i"] == all_ids.index(r.id) for r in page)


def test_scroll_and_retrieve_can_bring_back_only_some_payload_fields(store: VectorStore) -> None:
    store.create_collection("rows", DIM)
    big = "x" * 10_000
    store.upsert(
        "rows", [Point(f"r{i}", unit(1.0, i, 0.0, 0.0), {"i": i, "data": big}) for i in range(5)]
    )
    page, _ = store.scroll("rows", limit=10, fields=["i"])
    assert sorted((r.id, r.payload) for r in page) == [(f"r{i}", {"i": i}) for i in range(5)]
    page, _ = store.scroll("rows", limit=10)
    assert all(r.payload["data"] == big for r in page)
    # The same by id, in the order asked.
    found = store.retrieve("rows", ["r3", "r1", "gone"], fields=["i"])
    assert [(r.id, r.payload) for r in found] == [("r3", {"i": 3}), ("r1", {"i": 1})]
    assert store.retrieve("rows", ["r2"])[0].payload == {"i": 2, "data": big}


# --- search ----------------------------------------------------------------------------------


def test_search_cosine_best_first_and_threshold(store: VectorStore) -> None:
    store.create_collection("cos", DIM, "cosine")
    store.upsert(
        "cos",
        [
            Point("same", [2, 0, 0, 0], {"t": "a"}),
            Point("close", [1, 1, 0, 0], {"t": "b"}),
            Point("far", [0, 1, 0, 0], {"t": "c"}),
            Point("opposite", [-1, 0, 0, 0], {"t": "d"}),
        ],
    )
    hits = store.search("cos", [1, 0, 0, 0], limit=10)
    assert [h.id for h in hits] == ["same", "close", "far", "opposite"]
    assert [h.score for h in hits] == pytest.approx([1.0, math.sqrt(0.5), 0.0, -1.0], abs=1e-5)
    assert hits[1].payload == {"t": "b"}

    # score >= threshold
    kept = store.search("cos", [1, 0, 0, 0], limit=10, score_threshold=0.7)
    assert [h.id for h in kept] == ["same", "close"]
    # a hit exactly at the threshold (far: 0.0) stays
    assert [h.id for h in store.search("cos", [1, 0, 0, 0], 10, score_threshold=0.0)] == [
        "same",
        "close",
        "far",
    ]
    assert [h.id for h in store.search("cos", [1, 0, 0, 0], 10, score_threshold=1.0)] == ["same"]
    assert store.search("cos", [1, 0, 0, 0], limit=1)[0].id == "same"

    with_vec = store.search("cos", [1, 0, 0, 0], limit=1, with_vectors=True)[0]
    assert with_vec.vector == pytest.approx([1, 0, 0, 0], abs=1e-6)  # stored normalised
    assert store.search("cos", [1, 0, 0, 0], limit=1)[0].vector is None


def test_search_euclid_distance_and_threshold(store: VectorStore) -> None:
    store.create_collection("euc", DIM, "euclid")
    store.upsert(
        "euc",
        [
            Point("origin", [0, 0, 0, 0], {}),
            Point("one", [1, 0, 0, 0], {}),
            Point("two", [0, 2, 0, 0], {}),
            Point("three", [0, 0, 3, 0], {}),
        ],
    )
    hits = store.search("euc", [0, 0, 0, 0], limit=10)
    assert [h.id for h in hits] == ["origin", "one", "two", "three"]
    assert [h.score for h in hits] == pytest.approx([0, 1, 2, 3], abs=1e-5)
    # distance <= threshold
    assert [h.id for h in store.search("euc", [0, 0, 0, 0], 10, score_threshold=2.0)] == [
        "origin",
        "one",
        "two",
    ]
    assert [h.id for h in store.search("euc", [0, 0, 0, 0], 10, score_threshold=0.0)] == ["origin"]
    assert store.search("euc", [0, 0, 0, 9], 10, score_threshold=1.0) == []


def test_search_dot(store: VectorStore) -> None:
    store.create_collection("dot", DIM, "dot")
    store.upsert("dot", [Point("big", [3, 0, 0, 0], {}), Point("small", [1, 0, 0, 0], {})])
    hits = store.search("dot", [1, 0, 0, 0], limit=5, score_threshold=2.0)
    assert [(h.id, round(h.score, 5)) for h in hits] == [("big", 3.0)]
    assert [h.id for h in store.search("dot", [1, 0, 0, 0], 5, score_threshold=1.0)] == [
        "big",
        "small",
    ]


def test_concurrent_writers_and_readers(store: VectorStore) -> None:
    # The worker thread writes while the event-loop thread reads: no errors, nothing lost.
    store.create_collection("mc", DIM)
    rng = np.random.default_rng(5)
    errors: list[BaseException] = []

    def write(offset: int) -> None:
        try:
            for i in range(150):
                store.upsert("mc", [Point(f"mc_{offset + i}", rng.normal(size=DIM), {"i": i})])
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    def read() -> None:
        try:
            for _ in range(150):
                store.search("mc", [1.0, 0.0, 0.0, 0.0], 5)
                store.count("mc", Filter(ranges={"i": (10, None)}))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n * 1000,)) for n in range(2)]
    threads += [threading.Thread(target=read) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.count("mc") == 300


# --- edge only -----------------------------------------------------------------------------


def test_edge_data_persists_across_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "qdrant"
    first = EdgeStore(path)
    events(first)
    first.create_collection("euc", 3, "euclid")
    first.upsert("euc", [Point("p", [1, 2, 3], {"a": {"nested": [1, "x"]}})])
    first.delete("ev", ["evt_11"])
    first.set_payload("ev", ["evt_00"], {"kind": "changed"})
    first.close()
    first.close()  # idempotent

    again = EdgeStore(path)
    try:
        assert again.list_collections() == ["euc", "ev"]
        assert again.count("ev") == 11
        assert again.retrieve("ev", ["evt_00"])[0].payload["kind"] == "changed"
        record = again.retrieve("euc", ["p"], with_vectors=True)[0]
        assert record.payload == {"a": {"nested": [1, "x"]}}
        assert record.vector == pytest.approx([1, 2, 3])
        assert again.count("ev", Filter(must={"kind": "view"})) == 4
        assert again.index_status("ev").payload_indexes == {"kind": "keyword", "n": "integer"}
        with pytest.raises(ValueError, match="dim=3"):  # dims remembered from disk
            again.create_collection("euc", 4, "euclid")
    finally:
        again.close()
    with pytest.raises(RuntimeError, match="closed"):
        again.count("ev")


def test_edge_payload_indexes_are_created_and_added(tmp_path: Path) -> None:
    with EdgeStore(tmp_path / "qdrant") as store:
        assert isinstance(store, EdgeStore)
        store.create_collection("c", DIM, indexes={"kind": "keyword", "n": "integer"})
        store.create_collection("c", DIM, indexes={"score": "float", "flag": "bool"})
        assert store.index_status("c").payload_indexes == {
            "kind": "keyword",
            "n": "integer",
            "score": "float",
            "flag": "bool",
        }


def test_edge_second_open_of_the_same_dir_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "qdrant"
    first = EdgeStore(path)
    try:
        with pytest.raises(StorageLocked) as refused:
            EdgeStore(path)
        message = str(refused.value)
        assert str(path) in message
        assert "another turret-stream process" in message
    finally:
        first.close()
    EdgeStore(path).close()  # free again once the first one is closed


def test_edge_open_is_refused_while_another_process_holds_it(tmp_path: Path) -> None:
    path = tmp_path / "qdrant"
    script = textwrap.dedent(
        f"""
        from turret_stream.storage import StorageLocked
        from turret_stream.storage.edge import EdgeStore
        try:
            EdgeStore({str(path)!r})
        except StorageLocked as exc:
            print("LOCKED:", exc)
        """
    )
    with EdgeStore(path):
        result = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
        )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("LOCKED:")
    assert "another turret-stream process" in result.stdout


def test_edge_shard_wal_lock_is_reported_as_storage_locked(tmp_path: Path) -> None:
    path = tmp_path / "qdrant"
    with EdgeStore(path) as store:
        store.create_collection("c", DIM)
    # Something else holds the shard itself (not the store's lock file).
    holder = qdrant_edge.EdgeShard.load(str(path / "c"))
    try:
        with pytest.raises(StorageLocked, match="another turret-stream process") as refused:
            EdgeStore(path)
        assert str(path / "c") in str(refused.value)
    finally:
        holder.close()


def test_edge_auto_optimize_indexes_and_keeps_scores_exact(tmp_path: Path) -> None:
    # A tiny indexing threshold so that optimize (HNSW + int8 quantization) runs here.
    tuning = EdgeTuning(indexing_threshold_points=100)
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(400, 16)).astype(np.float32)
    with EdgeStore(tmp_path / "qdrant", tuning) as store:
        assert isinstance(store, EdgeStore)
        store.create_collection("mc", 16)
        for start in range(0, 400, 50):
            store.upsert(
                "mc", [Point(f"mc_{i}", vectors[i], {"i": i}) for i in range(start, start + 50)]
            )
        status = store.index_status("mc")
        assert status.points == 400
        assert status.optimize_runs >= 1
        assert status.indexed_vectors >= 300

        normed = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        query = normed[7] + 0.05 * normed[8]
        exact = normed @ (query / np.linalg.norm(query))
        hits = store.search("mc", query, limit=5)
        assert hits[0].id == "mc_7"
        # Quantized hits are rescored with the original vectors: scores are exact ...
        for hit in hits:
            assert hit.score == pytest.approx(exact[hit.payload["i"]], abs=1e-5)
        # ... so the threshold cuts exactly at the true similarity.
        cut = float(exact[7])
        assert [h.id for h in store.search("mc", query, 5, score_threshold=cut - 1e-4)] == ["mc_7"]
        assert store.search("mc", query, 5, score_threshold=cut + 1e-4) == []


def test_edge_segments_are_capped_so_an_optimize_never_rebuilds_the_whole_index(
    tmp_path: Path,
) -> None:
    """With ``max_segment_points`` the merge optimizer stops folding new points into the
    largest segment: the collection ends in more, bounded segments, and every point is
    still found. Payload tables are never capped (they have no vector index)."""
    rng = np.random.default_rng(5)
    vectors = rng.normal(size=(1600, 16)).astype(np.float32)

    def segments(cap: int | None) -> int:
        tuning = EdgeTuning(indexing_threshold_points=100, max_segment_points=cap)
        with EdgeStore(tmp_path / f"cap-{cap}", tuning) as store:
            store.create_collection("ev", 16)
            store.create_collection("rows", 1)
            for start in range(0, 1600, 100):
                points = [Point(f"e{i}", vectors[i], {"i": i}) for i in range(start, start + 100)]
                store.upsert("ev", points)
                store.upsert(
                    "rows", [Point(f"r{i}", [1.0], {"i": i}) for i in range(start, start + 100)]
                )
            for i in (3, 777, 1599):
                assert store.search("ev", vectors[i], limit=1)[0].id == f"e{i}"
            assert store.index_status("rows").segments <= 2
            return store.index_status("ev").segments

    capped, uncapped = segments(300), segments(None)
    assert capped >= 1600 // 300 > uncapped


def test_on_disk_collections_answer_as_in_memory_ones(store: VectorStore) -> None:
    """A collection created ``on_disk`` (a dimension's events) finds, filters and scores
    exactly as one held in memory."""
    rng = np.random.default_rng(11)
    vectors = rng.normal(size=(60, DIM)).astype(np.float32)
    for name, on_disk in (("mem", False), ("disk", True)):
        store.create_collection(
            name, DIM, indexes={"k": "keyword", "n": "integer"}, on_disk=on_disk
        )
        store.create_collection(name, DIM, indexes={"t": "float"}, on_disk=on_disk)  # added later
        store.upsert(
            name,
            [Point(f"p{i}", vectors[i], {"k": f"k{i % 3}", "n": i, "t": i / 2}) for i in range(60)],
        )
    flt = Filter(must={"k": "k1"}, ranges={"t": (5.0, None)})
    assert store.count("disk", flt) == store.count("mem", flt) == 17
    for i in (0, 31):
        disk, mem = store.search("disk", vectors[i], 5), store.search("mem", vectors[i], 5)
        assert [h.id for h in disk] == [h.id for h in mem] and disk[0].id == f"p{i}"
        assert [h.score for h in disk] == pytest.approx([h.score for h in mem], abs=1e-6)


def test_edge_on_disk_collection_keeps_its_placement_through_optimize_and_reopen(
    tmp_path: Path,
) -> None:
    """An ``on_disk`` collection is indexed a segment at a time (``on_disk_segment_points``:
    each point once), keeps exact scores, and after a restart reads its placement and its
    cadence back from the shard's own config."""
    tuning = EdgeTuning(indexing_threshold_points=64, on_disk_segment_points=128)
    rng = np.random.default_rng(12)
    vectors = rng.normal(size=(640, 16)).astype(np.float32)

    def write(store: EdgeStore, start: int, stop: int) -> None:
        for at in range(start, stop, 64):
            store.upsert("ev", [Point(f"e{i}", vectors[i], {"i": i}) for i in range(at, at + 64)])

    with EdgeStore(tmp_path / "qdrant", tuning) as store:
        store.create_collection("ev", 16, indexes={"i": "integer"}, on_disk=True)
        store.create_collection("mc", 16)
        write(store, 0, 512)
        status = store.index_status("ev")
        assert status.indexed_vectors == 512 and status.segments >= 4
        assert status.optimize_runs == 4  # one per 128 points written, none at 64
    with EdgeStore(tmp_path / "qdrant", EdgeTuning()) as again:  # defaults: read back
        assert again.index_status("ev").on_disk and not again.index_status("mc").on_disk
        write(again, 512, 640)
        assert again.index_status("ev").indexed_vectors == 640
        normed = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        hits = again.search("ev", vectors[9], limit=3)
        assert hits[0].id == "e9"
        for hit in hits:
            assert hit.score == pytest.approx(float(normed[hit.payload["i"]] @ normed[9]), abs=1e-5)
        assert again.count("ev", Filter(ranges={"i": (350, None)})) == 290


# --- open_store --------------------------------------------------------------------------


def test_open_store_edge_uses_the_qdrant_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    store = open_store(settings)
    try:
        assert isinstance(store, EdgeStore)
        assert store.path == settings.qdrant_path
    finally:
        store.close()


def test_open_store_server_prefixes_collections(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        storage={"backend": "server", "url": "http://127.0.0.1:9", "collection_prefix": "dep1"},
    )
    store = open_store(settings)
    try:
        assert isinstance(store, ServerStore)
        assert store.prefix == "dep1"
    finally:
        store.close()
    with pytest.raises(ValueError, match="url"):
        open_store(settings.with_overrides(**{"storage.url": ""}))


def test_server_prefix_isolates_deployments() -> None:
    client = QdrantClient(":memory:")
    one, two = ServerStore(client, prefix="one"), ServerStore(client, prefix="two")
    one.create_collection("events", DIM)
    two.create_collection("clusters", DIM)
    assert one.list_collections() == ["events"]
    assert two.list_collections() == ["clusters"]
    assert sorted(c.name for c in client.get_collections().collections) == [
        "one_events",
        "two_clusters",
    ]
    with pytest.raises(CollectionNotFound):
        two.count("events")
    client.close()
