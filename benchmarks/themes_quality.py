"""Theme quality: the level above topics, scored against the coarser labels that exist.

    python benchmarks/themes_quality.py --sgd ../shared/data/sgd_dev_user_turns.jsonl \
        --banking ../shared/data/banking77.csv

Each data set is embedded with turret-stream's embedder, shuffled and streamed in batches
through the same TopicModel the worker runs (micro-clusters, Leiden topics, and themes
regrouped at every reclustering with stable ids: ``clustering/themes.py``). The events'
themes at the end are scored against:

- SGD dev user turns: the turn's domain (``label``, e.g. Restaurants; 16 in the dev split),
  with NMI, ARI and purity; scored on every turn and on the turns that carry content (generic
  turns, whose acts are only AFFIRM / THANK_YOU / NEGATE / GOODBYE, left out), since a
  "thank you" has no domain of its own;
- banking77: no coarser label exists, so the number of themes, events per theme and the
  intents inside the largest themes are printed.

Comparators, in the same run on the same embeddings: the topics themselves as if they were
themes (the finer level), KMeans on every event vector told the true number of domains, and
average-linkage over the final topic centres told the true number of domains. The theme
distance (``clustering.theme_distance``) is also swept over the final topic centres, to show
how sensitive the default is.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cluster_quality import NOISE, embed, make_index, read_csv

from turret_stream.clustering.index import CentreIndex
from turret_stream.clustering.model import TopicModel
from turret_stream.clustering.themes import group_topics
from turret_stream.settings import ClusteringSettings

GENERIC_ACTS = {"AFFIRM", "THANK_YOU", "NEGATE", "GOODBYE"}


def read_sgd(path: Path) -> tuple[list[str], list[str], list[bool]]:
    texts, labels, content = [], [], []
    with path.open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            texts.append(row["text"])
            labels.append(row["label"])
            content.append(not set(row["acts"]) <= GENERIC_ACTS)
    return texts, labels, content


def stream(
    vectors: np.ndarray, settings: ClusteringSettings, index: CentreIndex, batch: int
) -> tuple[TopicModel, list[int], dict[str, int], dict[str, float]]:
    """Learn the events batch by batch on the worker's schedule; returns the model, each
    event's micro-cluster, the theme history's counts by kind, and how many of the events
    seen by mid-stream keep their topic and theme id to the end (ids resolved through
    merges), the ids' stability."""
    model = TopicModel(settings, index)
    mcs: list[int] = []
    started = time.perf_counter()
    middle: list[tuple[str | None, str | None]] | None = None
    for start in range(0, len(vectors), batch):
        if middle is None and start >= len(vectors) // 2:
            topics = [model.topic_of(mc) for mc in mcs]
            middle = [(t, model.themes.of_topic.get(t) if t else None) for t in topics]
        for vector in vectors[start : start + batch]:
            mcs.append(model.learn(vector, time.time()).mc)
        flush = getattr(index, "flush", None)
        if flush is not None:
            flush()
        if model.recluster_due(time.time()):
            recluster(model)
    recluster(model)
    elapsed = time.perf_counter() - started
    print(f"streamed {len(mcs)} events in {elapsed:.1f}s")
    assert middle is not None
    kept = {"topic": 0, "theme": 0}
    known = {"topic": 0, "theme": 0}
    for (topic, theme), mc in zip(middle, mcs, strict=False):
        now = model.topic_of(mc)
        if topic is not None:
            known["topic"] += 1
            kept["topic"] += model.registry.current(topic) == now
        if theme is not None:
            known["theme"] += 1
            theme_now = model.themes.of_topic.get(now) if now else None
            kept["theme"] += _current(model.themes.successor, theme) == theme_now
    stability = {k: kept[k] / known[k] if known[k] else 0.0 for k in kept}
    return model, mcs, dict(Counter(c.kind for c in model.themes.history)), stability


def _current(successor: dict[str, str | None], theme: str) -> str | None:
    seen: set[str] = set()
    while theme in successor and theme not in seen:
        seen.add(theme)
        nxt = successor[theme]
        if nxt is None:
            return None
        theme = nxt
    return theme


def recluster(model: TopicModel) -> None:
    """Topics, then themes over their centres (the owner keeps centres; here they are
    computed from the index)."""
    now = time.time()
    model.recluster(now)
    model.regroup_themes(model.topic_centres(model.topics()), now)


def purity(labels: list[str], predicted: list[str]) -> float:
    by_group: dict[str, Counter[str]] = {}
    for label, group in zip(labels, predicted, strict=True):
        by_group.setdefault(group, Counter())[label] += 1
    return sum(c.most_common(1)[0][1] for c in by_group.values()) / len(labels)


def score(labels: list[str], predicted: list, mask: list[bool] | None = None) -> dict[str, float]:
    if mask is not None:
        labels = [x for x, keep in zip(labels, mask, strict=True) if keep]
        predicted = [x for x, keep in zip(predicted, mask, strict=True) if keep]
    predicted = [str(p) for p in predicted]
    return {
        "NMI": normalized_mutual_info_score(labels, predicted),
        "ARI": adjusted_rand_score(labels, predicted),
        "purity": purity(labels, predicted),
        "groups": len(set(predicted) - {NOISE}),
    }


def centre_groups(model: TopicModel, n: int | None, distance: float | None) -> dict[str, str]:
    """topic -> group, average-linkage over the final topic centres (cut at n or distance)."""
    centres = model.topic_centres(model.topics())
    if distance is not None:
        groups = group_topics(centres, distance)
        return {t: f"g{i}" for i, g in enumerate(groups) for t in g}
    ids = sorted(centres)
    matrix = np.asarray([centres[t] for t in ids])
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    cut = fcluster(linkage(matrix, "average", metric="cosine"), t=n, criterion="maxclust")
    return {t: f"g{c}" for t, c in zip(ids, cut, strict=True)}


def run(
    name: str,
    texts: list[str],
    labels: list[str],
    mask: list[bool] | None,
    data: Path,
    args: argparse.Namespace,
) -> None:
    vectors = embed(texts, args.cache, data)
    order = np.random.default_rng(args.seed).permutation(len(texts))
    vectors = vectors[order]
    labels = [labels[i] for i in order]
    texts = [texts[i] for i in order]
    mask = [mask[i] for i in order] if mask is not None else None
    settings = ClusteringSettings()
    with tempfile.TemporaryDirectory() as workdir:
        index = make_index(args.index, vectors.shape[1], Path(workdir))
        model, mcs, history, stability = stream(vectors, settings, index, args.batch)
        topics = [model.topic_of(mc) or NOISE for mc in mcs]
        themes = [model.themes.of_topic.get(t, NOISE) if t != NOISE else NOISE for t in topics]
        close = getattr(getattr(index, "store", None), "close", None)
        if close:
            close()
    n_labels = len(set(labels))
    print(
        f"\n{name}: {len(texts)} events, {n_labels} coarse labels; "
        f"{len(set(topics) - {NOISE})} topics, {len(set(themes) - {NOISE})} themes "
        f"(theme_distance {settings.theme_distance}); theme history: {history}"
    )
    print(
        f"ids kept from mid-stream to the end (events seen by then): topic "
        f"{stability['topic']:.1%}, theme {stability['theme']:.1%}"
    )
    masks = [("all events", None)] if mask is None else [("all turns", None), ("content", mask)]
    if args.coarse:
        rows = [(f"themes, online (d={settings.theme_distance})", themes)]
        rows.append(("topics as themes (finer level)", topics))
        km = KMeans(n_labels, n_init=3, random_state=0).fit(vectors)
        rows.append((f"KMeans on events, k={n_labels} (true)", list(km.labels_)))
        told = centre_groups(model, n_labels, None)
        by_told = [told.get(t, NOISE) for t in topics]
        rows.append((f"avg-linkage on topic centres, k={n_labels}", by_told))
        header = f"{'':<46}" + "".join(f"{m:>26}" for m, _ in masks)
        print(header)
        print(f"{'':<46}" + f"{'NMI':>7}{'ARI':>6}{'purity':>7}{'groups':>6}" * len(masks))
        for row_name, predicted in rows:
            cells = ""
            for _, m in masks:
                s = score(labels, predicted, m)
                cells += f"{s['NMI']:>7.3f}{s['ARI']:>6.3f}{s['purity']:>7.3f}{s['groups']:>6}"
            print(f"{row_name:<46}{cells}")
        print("theme_distance swept over the final topic centres (one-shot, same topics):")
        for d in args.distances:
            grouping = centre_groups(model, None, d)
            s = score(labels, [grouping.get(t, NOISE) for t in topics], masks[-1][1])
            print(
                f"  d={d:<5} NMI {s['NMI']:.3f}  ARI {s['ARI']:.3f}  purity {s['purity']:.3f}  "
                f"themes {s['groups']}"
            )
    sizes = Counter(t for t in themes if t != NOISE)
    per_theme = Counter(model.themes.of_topic.values())
    values = sorted(sizes.values())
    print(
        f"events per theme: median {int(np.median(values))}, min {values[0]}, "
        f"max {values[-1]}; topics per theme: median {int(np.median(list(per_theme.values())))}, "
        f"max {max(per_theme.values())}; themes of one topic: "
        f"{sum(1 for n in per_theme.values() if n == 1)}"
    )
    print("largest themes (events, topics: the most common true labels inside):")
    for theme, n in sizes.most_common(args.show):
        inside = Counter(lab for lab, th in zip(labels, themes, strict=True) if th == theme)
        top = ", ".join(f"{lab} {c}" for lab, c in inside.most_common(4))
        print(f"  {n:>6} events, {per_theme[theme]:>3} topics: {top}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sgd", type=Path, help="sgd_dev_user_turns.jsonl")
    parser.add_argument("--banking", type=Path, help="banking77.csv")
    parser.add_argument("--seed", type=int, default=0, help="shuffle order")
    parser.add_argument("--index", choices=["qdrant", "exact"], default="qdrant")
    parser.add_argument("--batch", type=int, default=64, help="events per worker batch")
    parser.add_argument("--show", type=int, default=8, help="largest themes to list")
    parser.add_argument("--distances", type=float, nargs="*", default=[0.4, 0.5, 0.6, 0.7, 0.8])
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "turret-bench")
    args = parser.parse_args()
    if not args.sgd and not args.banking:
        sys.exit("give --sgd and/or --banking")
    if args.sgd:
        texts, labels, content = read_sgd(args.sgd)
        args.coarse = True
        run("SGD dev user turns (label: domain)", texts, labels, content, args.sgd, args)
    if args.banking:
        texts, labels = read_csv(args.banking)
        args.coarse = False
        run("banking77 (no coarser label: intents listed)", texts, labels, None, args.banking, args)


if __name__ == "__main__":
    main()
