"""Topic label quality on a labelled CSV (``text,label`` columns).

    python benchmarks/label_quality.py --data ../shared/data/banking77.csv [--topics gold|online]

Topics are found as the worker finds them (``online``, default: texts embedded, shuffled and
streamed through TopicModel, reclustered every 500 events and once at the end) or taken from
the gold labels (``gold``). Every topic is named by the offline labeller, and each name is
printed beside its topic's majority gold intent and size. The score is the cosine
similarity, under the embedding model, between a topic's name and its majority intent
written as words ("card_arrival" -> "card arrival"), averaged with topic sizes as weights.
For scale: a naive name (the topic's top three c-TF-IDF unigrams, BERTopic style) and chance
(a name against the other topics' intents).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

# Same CSV reader and embedding cache as the clustering benchmark.
from cluster_quality import NOISE, embed, read_csv
from sklearn.feature_extraction.text import CountVectorizer

from turret_stream.clustering.index import ExactIndex
from turret_stream.clustering.model import TopicModel
from turret_stream.embedding import Embedder, open_embedder
from turret_stream.labels import label_topics
from turret_stream.settings import ClusteringSettings, EmbeddingSettings

RECLUSTER_EVERY = 500


def online_topics(vectors: np.ndarray) -> list[str]:
    """Each event's topic after streaming all of them, as the worker would assign it."""
    model = TopicModel(ClusteringSettings(), ExactIndex(vectors.shape[1], np.float32))
    # A fixed clock, 1 ms per event: reclustering follows the event count, not the wall
    # clock. (Topics still vary a little from run to run: the clustering's own doing.)
    t0 = 1_700_000_000.0
    mcs = []
    for i, vector in enumerate(vectors):
        mcs.append(model.learn(vector, t0 + i / 1000).mc)
        if (i + 1) % RECLUSTER_EVERY == 0:
            model.recluster(t0 + i / 1000)
    model.recluster(t0 + len(vectors) / 1000)
    return [model.topic_of(mc) or NOISE for mc in mcs]


def naive_names(topics: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """BERTopic's default: top three c-TF-IDF unigrams of each topic, joined."""
    ids = list(topics)
    vectorizer = CountVectorizer(stop_words="english")
    docs = vectorizer.fit_transform([" ".join(topics[t]) for t in ids]).toarray().astype(float)
    tf = docs / np.maximum(docs.sum(axis=1, keepdims=True), 1)
    idf = np.log1p(docs.sum(axis=1).mean() / np.maximum(docs.sum(axis=0), 1))
    words = vectorizer.get_feature_names_out()
    return {
        t: " ".join(words[j].capitalize() for j in np.argsort(-(tf[i] * idf))[:3])
        for i, t in enumerate(ids)
    }


def ollama_names(
    topics: Mapping[str, Sequence[str]], host: str, model: str | None
) -> dict[str, str] | str:
    """The Ollama labeller's names (the product's OllamaLabeller, given each topic's first
    texts, as the labeller agent gives it the texts nearest the centre), or why there are
    none."""
    from turret_stream.labels.ollama import DEFAULT_MODEL, OllamaLabeller

    async def run() -> dict[str, str] | str:
        async with OllamaLabeller(host, model or DEFAULT_MODEL) as ollama:
            health = await ollama.health()
            if not health.ok:
                return f"not available ({health.detail})"
            out = {}
            for topic, texts in topics.items():
                label = await ollama.label(list(texts)[:10])
                if label is not None:
                    out[topic] = label.name
            return out

    return asyncio.run(run())


def score(
    embedder: Embedder,
    names: Mapping[str, str],
    gold: Mapping[str, str],
    sizes: Mapping[str, int],
) -> tuple[float, float]:
    """Size-weighted mean cosine of each name with its gold intent, and with the others."""
    ids = [t for t in names if names[t]]
    intents = sorted(set(gold.values()))
    name_vecs = embedder.embed([names[t] for t in ids])
    intent_vecs = embedder.embed([as_words(i) for i in intents])
    sims = name_vecs @ intent_vecs.T
    column = {intent: j for j, intent in enumerate(intents)}
    own = np.array([sims[i, column[gold[t]]] for i, t in enumerate(ids)])
    others = np.array(
        [
            (sims[i].sum() - sims[i, column[gold[t]]]) / max(1, len(intents) - 1)
            for i, t in enumerate(ids)
        ]
    )
    weights = np.array([sizes[t] for t in ids], dtype=float)
    return float(np.average(own, weights=weights)), float(np.average(others, weights=weights))


def as_words(intent: str) -> str:
    return intent.replace("_", " ").strip(" ?").lower()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--topics", choices=["online", "gold"], default="online")
    parser.add_argument("--seed", type=int, default=0, help="shuffle order")
    parser.add_argument("--max-words", type=int, default=4)
    parser.add_argument("--ollama-host", help="also score the Ollama labeller at this host")
    parser.add_argument("--ollama-model", help="Ollama model (default: the labeller's)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "turret-bench")
    args = parser.parse_args()

    texts, intents = read_csv(args.data)
    print(f"{args.data.name}: {len(texts)} texts, {len(set(intents))} intents")
    if args.topics == "gold":
        assigned = intents
    else:
        vectors = embed(texts, args.cache, args.data)
        order = np.random.default_rng(args.seed).permutation(len(texts))
        started = time.perf_counter()
        streamed = online_topics(vectors[order])
        print(f"streamed {len(texts)} events in {time.perf_counter() - started:.1f}s")
        assigned = [NOISE] * len(texts)
        for position, i in enumerate(order):
            assigned[i] = streamed[position]

    members: dict[str, list[str]] = defaultdict(list)
    votes: dict[str, Counter[str]] = defaultdict(Counter)
    for text, topic, intent in zip(texts, assigned, intents, strict=True):
        if topic != NOISE:
            members[topic].append(text)
            votes[topic][intent] += 1
    noise = sum(t == NOISE for t in assigned)
    print(f"{len(members)} topics, {noise} texts without a topic")

    started = time.perf_counter()
    labels = label_topics(members, max_words=args.max_words)
    elapsed = time.perf_counter() - started
    gold = {t: min(v.items(), key=lambda kv: (-kv[1], kv[0]))[0] for t, v in votes.items()}
    sizes = {t: len(m) for t, m in members.items()}

    print(f"\n{'label':<42}{'majority intent':<50}{'size':>6}{'purity':>8}")
    for t in sorted(members, key=lambda t: (-sizes[t], gold[t])):
        purity = votes[t][gold[t]] / sizes[t]
        print(f"{labels[t].name:<42}{gold[t]:<50}{sizes[t]:>6}{purity:>8.0%}")

    embedder = open_embedder(EmbeddingSettings())
    rows = [("fallback labeller", {t: label.name for t, label in labels.items()})]
    rows.append(("naive: top-3 c-TF-IDF unigrams", naive_names(members)))
    if args.ollama_host:
        ollama = ollama_names(members, args.ollama_host, args.ollama_model)
        if isinstance(ollama, str):
            print(f"\nOllama: {ollama}")
        else:
            rows.append((f"Ollama ({args.ollama_host})", ollama))

    print(f"\nlabelled {len(members)} topics ({len(texts) - noise} texts) in {elapsed:.2f}s")
    print(f"\n{'cosine(label, gold intent), size-weighted':<44}{'score':>7}")
    chance = None
    for name, names in rows:
        own, others = score(embedder, names, gold, sizes)
        chance = others if chance is None else chance
        print(f"{name:<44}{own:>7.3f}")
    print(f"{'chance: fallback label vs other intents':<44}{chance:>7.3f}")


if __name__ == "__main__":
    sys.exit(main())
