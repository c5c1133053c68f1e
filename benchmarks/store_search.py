"""Search latency of the edge store as a collection grows, while points keep moving.

    python benchmarks/store_search.py                      # 1k, 10k and 100k points
    python benchmarks/store_search.py --sizes 1000 20000 --searches 1000

For each size: N random 384-dim unit vectors are loaded (auto-optimize off, then one
``optimize()`` builds the HNSW index), the store is reopened with the default tuning,
and then each measured search (limit=10, score_threshold) is followed by 1-3 upserts
that move random existing points slightly, the way online micro-cluster centres move.
Only the searches are timed; optimize runs triggered by the upserts are reported apart
(they stop the whole process while they run: the binding holds the GIL).

Queries are noisy copies of stored points (cosine ~0.93 to their source), so "top1" is
the fraction of searches whose best hit is that source: a recall figure. Uniform random
vectors are the worst case for HNSW recall (no neighbourhood structure); real
embeddings fare much better at the same settings.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from turret_stream.storage import Point
from turret_stream.storage.edge import EdgeStore, EdgeTuning

DIM = 384
COLLECTION = "bench"


def unit_rows(rng: np.random.Generator, n: int, intrinsic_dim: int) -> np.ndarray:
    """n random unit vectors: uniform on the sphere, or (intrinsic_dim > 0) spread over a
    random intrinsic_dim-dimensional subspace plus a little noise, closer to how real
    sentence embeddings occupy their space."""
    if intrinsic_dim:
        basis = rng.standard_normal((intrinsic_dim, DIM)).astype(np.float32)
        rows = rng.standard_normal((n, intrinsic_dim)).astype(np.float32) @ basis
        rows += rng.standard_normal((n, DIM)).astype(np.float32) * 0.5
    else:
        rows = rng.standard_normal((n, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def load(path: Path, vectors: np.ndarray, tuning: EdgeTuning) -> tuple[float, float]:
    """(seconds to upsert, seconds to build the index) for a fresh collection."""
    with EdgeStore(path, replace(tuning, auto_optimize=False)) as store:
        assert isinstance(store, EdgeStore)
        store.create_collection(COLLECTION, DIM, "cosine")
        started = time.perf_counter()
        for start in range(0, len(vectors), 1000):
            batch = range(start, min(start + 1000, len(vectors)))
            store.upsert(COLLECTION, [Point(f"mc_{i}", vectors[i], {"n": i}) for i in batch])
        loaded = time.perf_counter()
        store.optimize(COLLECTION)
        return loaded - started, time.perf_counter() - loaded


def run(size: int, args: argparse.Namespace, tuning: EdgeTuning) -> dict[str, float]:
    rng = np.random.default_rng(size)
    vectors = unit_rows(rng, size, args.intrinsic_dim)
    path = Path(tempfile.mkdtemp(prefix="turret-store-bench-"))
    try:
        upsert_s, build_s = load(path, vectors, tuning)
        with EdgeStore(path, tuning) as store:
            assert isinstance(store, EdgeStore)
            before = store.index_status(COLLECTION)
            latencies: list[float] = []
            found = 0
            moves = 0
            for step in range(args.warmup + args.searches):
                source = int(rng.integers(size))
                query = vectors[source] + rng.standard_normal(DIM).astype(np.float32) * 0.02
                query /= np.linalg.norm(query)
                started = time.perf_counter()
                hits = store.search(COLLECTION, query, 10, score_threshold=args.threshold)
                elapsed = time.perf_counter() - started
                if step >= args.warmup:
                    latencies.append(elapsed)
                    found += bool(hits) and hits[0].id == f"mc_{source}"
                for _ in range(int(rng.integers(1, 4))):
                    moved = int(rng.integers(size))
                    vectors[moved] += rng.standard_normal(DIM).astype(np.float32) * 0.005
                    vectors[moved] /= np.linalg.norm(vectors[moved])
                    store.upsert(COLLECTION, [Point(f"mc_{moved}", vectors[moved], {"n": moved})])
                    moves += 1
            after = store.index_status(COLLECTION)
    finally:
        shutil.rmtree(path, ignore_errors=True)

    p50, p95 = np.percentile(np.array(latencies) * 1e6, [50, 95])
    if after.points * DIM * 4 / 1024 < tuning.full_scan_threshold_kb:
        hnsw = "no: below full_scan_threshold, a full scan is cheaper"
    elif after.indexed_vectors >= 0.9 * after.points:
        hnsw = "yes"
    else:
        hnsw = "NO (brute force)"
    runs = after.optimize_runs - before.optimize_runs
    paused = after.optimize_seconds - before.optimize_seconds
    print(
        f"{size:>7} points: search p50 {p50:7.0f} us  p95 {p95:7.0f} us  "
        f"top1 {found / len(latencies):.3f}  | load {upsert_s:.1f}s, index build {build_s:.1f}s\n"
        f"           HNSW index used: {hnsw} "
        f"(indexed vectors {after.indexed_vectors} / points {after.points}, "
        f"segments {before.segments} -> {after.segments})\n"
        f"           {moves} upserts moved points; optimize ran {runs}x, {paused:.1f}s in all, "
        f"longest pause {after.optimize_max_seconds:.2f}s",
        flush=True,
    )
    return {"p50": float(p50), "p95": float(p95)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--searches", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--ef", type=int, default=EdgeTuning.search_ef, help="HNSW search beam")
    parser.add_argument("--segments", type=int, default=EdgeTuning.segment_number)
    parser.add_argument(
        "--intrinsic-dim", type=int, default=0, help="0: uniform random unit vectors"
    )
    parser.add_argument("--no-quantize", action="store_true")
    args = parser.parse_args()
    tuning = EdgeTuning(
        search_ef=args.ef, segment_number=args.segments, quantize=not args.no_quantize
    )
    print(f"tuning: {tuning}")

    results = {size: run(size, args, tuning) for size in args.sizes}
    smallest = min(results)
    for size, figures in results.items():
        growth = figures["p50"] / results[smallest]["p50"]
        print(f"p50 growth {smallest} -> {size}: {growth:.2f}x (goal <= 1.5x)")


if __name__ == "__main__":
    main()
