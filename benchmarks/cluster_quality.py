"""Clustering quality on a labelled CSV (``text,label`` columns), streamed online.

    python benchmarks/cluster_quality.py --data ../shared/data/banking77.csv

The texts are embedded with turret-stream's embedder, shuffled, and streamed in batches
through the same TopicModel code the worker runs (micro-cluster centres in Qdrant's
in-process engine by default), with topics recomputed on the worker's schedule. Printed
side by side: offline KMeans told the true number of labels, on the same embeddings, and
river's DBSTREAM (its own reclustering, every point assigned by ``predict_one``).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import (
    adjusted_rand_score,
    normalized_mutual_info_score,
    v_measure_score,
)

from turret_stream.clustering.index import CentreIndex, ExactIndex
from turret_stream.clustering.model import TopicModel
from turret_stream.settings import ClusteringSettings, EmbeddingSettings

NOISE = "<no topic>"


def read_csv(path: Path) -> tuple[list[str], list[str]]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"text", "label"} - set(reader.fieldnames or ())
        if missing:
            sys.exit(f"{path}: needs columns text,label (missing: {', '.join(sorted(missing))})")
        rows = [(r["text"], r["label"]) for r in reader if r["text"] and r["label"]]
    return [t for t, _ in rows], [label for _, label in rows]


def embed(texts: list[str], cache_dir: Path, data: Path) -> np.ndarray:
    from turret_stream.embedding import open_embedder

    embedder = open_embedder(EmbeddingSettings())
    key = hashlib.sha256(("\n".join(texts) + embedder.model_id).encode()).hexdigest()[:16]
    cached = cache_dir / f"{data.stem}-{key}.npy"
    if cached.exists():
        print(f"embeddings: cached {cached}")
        return np.load(cached)
    started = time.perf_counter()
    chunks = []
    for i in range(0, len(texts), 512):
        chunks.append(embedder.embed(texts[i : i + 512]))
        done = min(i + 512, len(texts))
        rate = done / (time.perf_counter() - started)
        print(f"\rembedding {done}/{len(texts)} ({rate:.0f} texts/s)", end="", flush=True)
    print()
    vectors = np.vstack(chunks).astype(np.float32)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(cached, vectors)
    return vectors


def make_index(kind: str, dim: int, workdir: Path) -> CentreIndex:
    if kind == "exact":
        return ExactIndex(dim, np.float32)
    from turret_stream.clustering.store_index import StoreIndex
    from turret_stream.storage.edge import EdgeStore

    store = EdgeStore(workdir / "qdrant")
    return StoreIndex(store, "bench_mc", dim)


def stream_topics(
    vectors: np.ndarray, settings: ClusteringSettings, index: CentreIndex, batch: int
) -> tuple[list[str], float]:
    model = TopicModel(settings, index)
    mcs: list[int] = []
    started = time.perf_counter()
    for start in range(0, len(vectors), batch):
        for vector in vectors[start : start + batch]:
            mcs.append(model.learn(vector, time.time()).mc)
        flush = getattr(index, "flush", None)
        if flush is not None:
            flush()
        if model.recluster_due(time.time()):
            model.recluster(time.time())
        if (start // batch) % 20 == 0:
            print(f"\rstreaming {len(mcs)}/{len(vectors)}", end="", flush=True)
    elapsed = time.perf_counter() - started
    model.recluster(time.time())
    print(
        f"\rstreamed {len(mcs)} events in {elapsed:.1f}s ({elapsed / len(mcs) * 1e3:.2f} ms/event)"
    )
    return [model.topic_of(mc) or NOISE for mc in mcs], elapsed


def river_topics(vectors: np.ndarray, threshold: float) -> list[int]:
    from river.cluster import DBSTREAM

    model = DBSTREAM(
        clustering_threshold=threshold,
        fading_factor=0.0001,
        cleanup_interval=1000,
        intersection_factor=0.3,
        minimum_weight=1.0,
    )
    rows = [dict(enumerate(v.tolist())) for v in vectors]
    for row in rows:
        model.learn_one(row)
    return [model.predict_one(row) for row in rows]


def scores(labels: list[str], predicted: list) -> dict[str, float]:
    return {
        "NMI": normalized_mutual_info_score(labels, predicted),
        "ARI": adjusted_rand_score(labels, predicted),
        "V": v_measure_score(labels, predicted),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0, help="shuffle order")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N rows")
    parser.add_argument("--index", choices=["qdrant", "exact"], default="qdrant")
    parser.add_argument("--batch", type=int, default=64, help="events per worker batch")
    parser.add_argument(
        "--river",
        type=float,
        nargs="*",
        default=[0.7],
        help="river DBSTREAM clustering_threshold values to run (none: skip)",
    )
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "turret-bench")
    args = parser.parse_args()

    texts, labels = read_csv(args.data)
    if args.limit:
        texts, labels = texts[: args.limit], labels[: args.limit]
    n_labels = len(set(labels))
    print(f"{args.data.name}: {len(texts)} texts, {n_labels} labels")
    vectors = embed(texts, args.cache, args.data)
    order = np.random.default_rng(args.seed).permutation(len(texts))
    vectors = vectors[order]
    labels = [labels[i] for i in order]

    rows = []
    settings = ClusteringSettings()
    with tempfile.TemporaryDirectory() as workdir:
        index = make_index(args.index, vectors.shape[1], Path(workdir))
        topics, _ = stream_topics(vectors, settings, index, args.batch)
        close = getattr(getattr(index, "store", None), "close", None)
        if close:
            close()
    noise = sum(t == NOISE for t in topics) / len(topics)
    n_topics = len(set(topics) - {NOISE})
    rows.append((f"turret-stream online ({args.index})", scores(labels, topics), n_topics, noise))

    km = KMeans(n_labels, n_init=3, random_state=0).fit(vectors)
    rows.append((f"KMeans offline, k={n_labels} (true)", scores(labels, km.labels_), n_labels, 0.0))
    for threshold in args.river:
        started = time.perf_counter()
        predicted = river_topics(vectors, threshold)
        name = f"river DBSTREAM r={threshold} ({time.perf_counter() - started:.0f}s)"
        rows.append((name, scores(labels, predicted), len(set(predicted)), 0.0))

    print()
    print(f"{'':<44}{'NMI':>7}{'ARI':>7}{'V':>7}{'topics':>8}{'no topic':>10}")
    for name, s, n, nz in rows:
        print(f"{name:<44}{s['NMI']:>7.3f}{s['ARI']:>7.3f}{s['V']:>7.3f}{n:>8}{nz:>10.1%}")
    sizes = Counter(t for t in topics if t != NOISE)
    print(
        f"\ntrue labels: {n_labels}; topics / labels = {n_topics / n_labels:.2f}; "
        f"largest topic {max(sizes.values())} events, median {int(np.median(list(sizes.values())))}"
    )


if __name__ == "__main__":
    main()
