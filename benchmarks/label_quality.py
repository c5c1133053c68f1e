"""Topic label quality on a labelled CSV (``text,label`` columns).

    python benchmarks/label_quality.py --data ../shared/data/banking77.csv [--topics gold|online]
        [--ollama-host http://127.0.0.1:11434 --ollama-model NAME] [--limit-topics N]

Topics are found as the worker finds them (``online``, default: texts embedded, shuffled and
streamed through TopicModel, reclustered every 500 events and once at the end) or taken from
the gold labels (``gold``). Each topic is handled as the product's labeller handles it: its
centre is the mean of its texts' vectors, the offline labeller reads the
``labels.texts_per_topic`` texts nearest the centre, and the LLM gets the
``labels.llm_examples`` nearest, the nearest topics' current names, and the choice between
its candidates and the fallback's name (``labels.naming``), largest topic first.

Scores, both size-weighted over topics:
- cosine: between a topic's name and its majority intent written as words
  ("card_arrival" -> "card arrival"), under the product's embedding model;
- identification: the share of topics whose name's nearest intent (of all intents) is the
  topic's majority intent; chance is 1 / number of intents. Cosine alone rewards copying
  a data set's naming style; identification asks whether the name finds its topic.
For scale: a naive name (the topic's top three c-TF-IDF unigrams, BERTopic style), and, with
Ollama, the model's first candidate trusted as is (no choice). A failed LLM round counts as
the fallback's name; failures, corrective retries and seconds per label are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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
from turret_stream.labels import TopicLabel, label_topics
from turret_stream.labels.naming import Decision, decide
from turret_stream.settings import (
    ClusteringSettings,
    EmbeddingSettings,
    LabelSettings,
    load_settings,
)

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


def central(
    members: Mapping[str, list[int]], vectors: np.ndarray, texts: Sequence[str], limit: int
) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """Each topic's centre and its ``limit`` texts nearest it, nearest first (as the
    labeller searches the topic's events around its centre)."""
    centres, nearest = {}, {}
    for topic, rows in members.items():
        own = vectors[rows]
        centre = own.mean(axis=0)
        centres[topic] = centre / max(float(np.linalg.norm(centre)), 1e-12)
        order = np.argsort(-(own @ centres[topic]), kind="stable")[:limit]
        nearest[topic] = [texts[rows[i]] for i in order]
    return centres, nearest


def llm_names(
    order: list[str],
    fallback: Mapping[str, TopicLabel],
    centres: Mapping[str, np.ndarray],
    nearest: Mapping[str, list[str]],
    embedder: Embedder,
    host: str,
    model: str,
    settings: LabelSettings,
    budget_s: float | None = None,
) -> list[tuple[str, Decision, str | None, bool]] | str:
    """Each topic's decision, largest first, as the labeller makes it; or why there is none.

    A row: topic, decision, the model's first candidate (None if it failed), corrected.
    No round starts after ``budget_s`` seconds: the topics left keep the fallback's name.
    """
    from turret_stream.labels.ollama import OllamaLabeller

    current = {t: fallback[t].name for t in order}
    matrix = np.stack([centres[t] for t in order])

    class Recording:
        """The product's OllamaLabeller, keeping its raw answer for the table."""

        def __init__(self, inner: OllamaLabeller) -> None:
            self.inner = inner
            self.last = None

        async def label(self, *args, **kwargs):
            self.last = await self.inner.label(*args, **kwargs)
            return self.last

    async def run() -> list[tuple[str, Decision, str | None, bool]] | str:
        async with OllamaLabeller(
            host,
            model,
            timeout_s=settings.ollama_timeout_s,
            min_timeout_s=settings.ollama_min_timeout_s,
            timeout_factor=settings.ollama_timeout_factor,
            retries=settings.ollama_retries,
            max_prompt_chars=settings.max_prompt_chars,
            candidates=settings.llm_candidates,
        ) as ollama:
            health = await ollama.health()
            if not health.ok:
                return f"not available ({health.detail})"
            recording = Recording(ollama)
            rows = []
            started = time.monotonic()
            for n, topic in enumerate(order):
                if budget_s is not None and time.monotonic() - started > budget_s:
                    print(f"  time budget spent: {len(order) - n} topics not asked")
                    break
                i = order.index(topic)
                others = np.delete(matrix, i, axis=0)
                rest = [t for t in order if t != topic]
                near = np.argsort(-(others @ centres[topic]))[: settings.llm_neighbours]
                decision = await decide(
                    recording,
                    embedder,
                    texts=nearest[topic][: settings.llm_examples],
                    fallback=fallback[topic],
                    centre=centres[topic],
                    others=others,
                    neighbours=[current[rest[j]] for j in near],
                    taken=[current[t] for t in rest],
                    tolerance=settings.llm_margin_tolerance,
                )
                current[topic] = decision.name
                last = recording.last
                rows.append(
                    (topic, decision, last.name if last else None, bool(last and last.corrected))
                )
                status = "failed" if decision.failed else decision.source
                print(
                    f"  [{n + 1}/{len(order)}] {decision.seconds:5.1f}s {status:<8} "
                    f"{decision.name!r} (fallback {fallback[topic].name!r}; "
                    f"pace {ollama.pace_s or 0:.1f}s, timeout {ollama.timeout_s:.0f}s)",
                    flush=True,
                )
            return rows

    return asyncio.run(run())


def score(
    embedder: Embedder,
    names: Mapping[str, str],
    gold: Mapping[str, str],
    sizes: Mapping[str, int],
) -> tuple[float, float, float]:
    """Size-weighted: cosine of each name with its gold intent; the share of names whose
    nearest intent is their topic's; the cosine with the other intents (chance level)."""
    ids = [t for t in names if names[t]]
    intents = sorted(set(gold.values()))
    name_vecs = embedder.embed([names[t] for t in ids])
    intent_vecs = embedder.embed([as_words(i) for i in intents])
    sims = name_vecs @ intent_vecs.T
    column = {intent: j for j, intent in enumerate(intents)}
    own = np.array([sims[i, column[gold[t]]] for i, t in enumerate(ids)])
    found = np.array([sims[i].argmax() == column[gold[t]] for i, t in enumerate(ids)])
    others = np.array(
        [
            (sims[i].sum() - sims[i, column[gold[t]]]) / max(1, len(intents) - 1)
            for i, t in enumerate(ids)
        ]
    )
    weights = np.array([sizes[t] for t in ids], dtype=float)
    return (
        float(np.average(own, weights=weights)),
        float(np.average(found, weights=weights)),
        float(np.average(others, weights=weights)),
    )


def as_words(intent: str) -> str:
    return intent.replace("_", " ").strip(" ?").lower()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--topics", choices=["online", "gold"], default="online")
    parser.add_argument("--seed", type=int, default=0, help="shuffle order")
    parser.add_argument("--max-words", type=int, default=4)
    parser.add_argument("--ollama-host", help="also score the LLM labeller at this host")
    parser.add_argument("--ollama-model", help="Ollama model (default: labels.ollama_model)")
    parser.add_argument("--limit-topics", type=int, help="LLM rounds for the N largest only")
    parser.add_argument("--budget-s", type=float, help="start no LLM round after this many seconds")
    parser.add_argument("--save", type=Path, help="write every topic's names here (JSON)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "turret-bench")
    args = parser.parse_args()
    # The product's settings (configs/turret.yaml, TURRET_LABELS__* variables), so that a
    # run measures what a deployment with those settings would do.
    settings = load_settings().labels

    texts, intents = read_csv(args.data)
    print(f"{args.data.name}: {len(texts)} texts, {len(set(intents))} intents")
    vectors = embed(texts, args.cache, args.data)
    if args.topics == "gold":
        assigned = intents
    else:
        order = np.random.default_rng(args.seed).permutation(len(texts))
        started = time.perf_counter()
        streamed = online_topics(vectors[order])
        print(f"streamed {len(texts)} events in {time.perf_counter() - started:.1f}s")
        assigned = [NOISE] * len(texts)
        for position, i in enumerate(order):
            assigned[i] = streamed[position]

    rows: dict[str, list[int]] = defaultdict(list)
    votes: dict[str, Counter[str]] = defaultdict(Counter)
    for i, (topic, intent) in enumerate(zip(assigned, intents, strict=True)):
        if topic != NOISE:
            rows[topic].append(i)
            votes[topic][intent] += 1
    noise = sum(t == NOISE for t in assigned)
    print(f"{len(rows)} topics, {noise} texts without a topic")
    centres, nearest = central(rows, vectors, texts, settings.texts_per_topic)

    started = time.perf_counter()
    labels = label_topics(nearest, representatives=nearest, max_words=args.max_words)
    elapsed = time.perf_counter() - started
    gold = {t: min(v.items(), key=lambda kv: (-kv[1], kv[0]))[0] for t, v in votes.items()}
    sizes = {t: len(m) for t, m in rows.items()}
    by_size = sorted(rows, key=lambda t: (-sizes[t], gold[t]))
    print(f"labelled {len(rows)} topics ({len(texts) - noise} texts) offline in {elapsed:.2f}s")

    embedder = open_embedder(EmbeddingSettings())
    fallback = {t: label.name for t, label in labels.items()}
    table = [("fallback labeller (product: nearest texts)", fallback)]
    table.append(("naive: top-3 c-TF-IDF unigrams", naive_names(nearest)))
    decided: dict[str, tuple[Decision, str | None, bool]] = {}
    if args.ollama_host:
        model = args.ollama_model or settings.ollama_model
        order = by_size[: args.limit_topics] if args.limit_topics else by_size
        print(f"\nLLM labeller, {model} at {args.ollama_host}, {len(order)} topics largest first:")
        started = time.perf_counter()
        result = llm_names(
            order,
            labels,
            centres,
            nearest,
            embedder,
            args.ollama_host,
            model,
            settings,
            args.budget_s,
        )
        wall = time.perf_counter() - started
        if isinstance(result, str):
            print(f"\nOllama: {result}")
        else:
            decided = {t: (d, first, corrected) for t, d, first, corrected in result}
            chosen = {t: decided[t][0].name if t in decided else fallback[t] for t in rows}
            trusted = {
                t: (decided[t][1] or fallback[t]) if t in decided else fallback[t] for t in rows
            }
            table.append((f"LLM labeller ({model})", chosen))
            table.append(("  its first candidate, trusted", trusted))
            report_llm(decided, wall)

    print(f"\n{'label':<40}{'majority intent':<34}{'size':>6}{'purity':>8}  fallback")
    final = table[2][1] if decided else fallback
    for t in by_size:
        purity = votes[t][gold[t]] / sizes[t]
        print(f"{final[t]:<40}{gold[t]:<34}{sizes[t]:>6}{purity:>8.0%}  {fallback[t]}")

    chance_id = 1 / len(set(gold.values()))
    print(f"\n{'size-weighted over topics':<46}{'cosine':>8}{'identification':>16}")
    chance = None
    for name, names in table:
        cos, found, others = score(embedder, names, gold, sizes)
        chance = others if chance is None else chance
        print(f"{name:<46}{cos:>8.3f}{found:>16.3f}")
    print(f"{'chance: fallback vs other intents; 1/intents':<46}{chance:>8.3f}{chance_id:>16.3f}")
    if decided and len(decided) < len(rows):
        # Only some topics were asked: the same scores over just those, side by side.
        asked = {t: sizes[t] for t in decided}
        print(f"\nonly the {len(asked)} topics the LLM was asked about (largest first):")
        for name, names in table:
            cos, found, _ = score(embedder, {t: names[t] for t in asked}, gold, asked)
            print(f"{name:<46}{cos:>8.3f}{found:>16.3f}")
    if args.save:
        out = {
            t: {
                "gold": gold[t],
                "size": sizes[t],
                **{name: names[t] for name, names in table},
                "why": decided[t][0].note() if t in decided else None,
            }
            for t in by_size
        }
        args.save.write_text(json.dumps(out, indent=1))


def report_llm(decided: Mapping[str, tuple[Decision, str | None, bool]], wall: float) -> None:
    decisions = [d for d, _, _ in decided.values()]
    failed = sum(d.failed for d in decisions)
    won = sum(d.source == "llm" for d in decisions)
    corrected = sum(c for _, _, c in decided.values())
    times = np.array([d.seconds for d in decisions if not d.failed] or [0.0])
    distinct = len({d.name.lower() for d in decisions})
    print(
        f"\n{len(decisions)} LLM rounds in {wall:.0f}s: {won} LLM names won, "
        f"{len(decisions) - won - failed} kept the fallback (it identifies better), "
        f"{failed} failed (counted as the fallback), {corrected} needed a corrective retry; "
        f"{distinct} distinct names"
    )
    print(
        f"seconds per label (answered): median {np.median(times):.1f}, "
        f"p90 {np.percentile(times, 90):.1f}, p95 {np.percentile(times, 95):.1f}, "
        f"max {times.max():.1f}"
    )


if __name__ == "__main__":
    sys.exit(main())
