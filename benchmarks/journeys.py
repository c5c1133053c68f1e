"""Journey quality on SGD: each dialogue's user turns replayed as one session.

    python benchmarks/journeys.py --data ../shared/data/sgd_dev_user_turns.jsonl

Every dialogue is sent through the real pipeline (/track -> Kafka -> embedding ->
clustering -> store), 16 sessions at a time, each session's turns in order. Journeys are
then read the way the API reads them (``journeys.session_path`` over the stored events,
topics through the current mapping). Each topic is mapped to the majority domain label of
its turns; a turn's predicted domain is that of the journey step it belongs to.

Printed: per-turn switch precision / recall / F1 (a switch: the domain differs from the
previous turn's), the share of sessions whose collapsed domain path equals the true one
(``sgd_dev_dialogues.jsonl``), and the share of true A -> B -> A returns found in the
predicted path. All turns are scored, generic ones (thanks, yes, no) included. Rows: the
product's defaults (neutral topics learned from the sessions, min_switch_events=1), the
same topics without neutral topics (min 1 and 2); side by side, offline KMeans topics
(k = number of domains, and k = 100) on the same vectors, with the same rules.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Collection
from pathlib import Path

import aiohttp
import numpy as np
from sklearn.cluster import KMeans

from turret_stream.broker import free_port
from turret_stream.clustering.context import SessionContext, neutral_topics
from turret_stream.journey_queries import JourneyFilter, JourneyQueries
from turret_stream.journeys import JourneyEvent, session_path
from turret_stream.keys import KeyStore
from turret_stream.settings import Settings
from turret_stream.stack import running_stack


def load(turns_path: Path, sessions: int) -> tuple[list[dict], dict[str, list[str]]]:
    rows = [json.loads(line) for line in turns_path.open(encoding="utf-8")]
    dialogues_path = turns_path.with_name("sgd_dev_dialogues.jsonl")
    paths = {}
    for line in dialogues_path.open(encoding="utf-8"):
        d = json.loads(line)
        paths[d["session_id"]] = d["domain_path"]
    if sessions:
        keep = sorted({r["session_id"] for r in rows})[:sessions]
        rows = [r for r in rows if r["session_id"] in set(keep)]
    rows.sort(key=lambda r: (r["session_id"], r["turn_index"]))
    return rows, paths


async def replay(rows: list[dict], concurrency: int) -> tuple[dict, frozenset[str], Settings, Path]:
    """Send every turn through the embedded stack; return event_id -> (topic, vector) and
    the neutral topics the owner learned."""
    workdir = Path(tempfile.mkdtemp(prefix="turret-journeys-"))
    settings = Settings(
        data_dir=workdir,
        log_level="warning",
        kafka={"embedded_port": free_port()},
        http={"port": 0},
        rate_limit={"enabled": False},
    )
    key = KeyStore(settings.keys_db_path).create("sgd").secret
    by_session: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_session[r["session_id"]].append(r)
    queue = list(by_session.values())
    done: set[str] = set()
    async with running_stack(settings, broker=True, worker=True, api=True) as stack:
        stack.topology.owners.listeners.append(lambda a: done.add(a.event_id))
        headers = {"X-API-Key": key}
        sent = 0
        started = time.perf_counter()

        async def sender(http: aiohttp.ClientSession) -> None:
            nonlocal sent
            while queue:
                for r in queue.pop():
                    body = {
                        "name": "user_turn",
                        "metadata": {"utterance": r["text"]},
                        "session_id": r["session_id"],
                    }
                    while True:  # a 503 (back-pressure) is retried after retry_after
                        async with http.post(
                            f"{stack.api_url}/track", json=body, headers=headers
                        ) as resp:
                            answer = await resp.json()
                        if resp.status != 503:
                            break
                        await asyncio.sleep(float(answer.get("retry_after", 1)))
                    r["event_id"] = answer["event_id"]
                    sent += 1
                    if sent % 500 == 0:
                        rate = sent / (time.perf_counter() - started)
                        print(f"\rsent {sent}/{len(rows)} ({rate:.0f}/s)", end="", flush=True)

        async with aiohttp.ClientSession() as http:
            await asyncio.gather(*(sender(http) for _ in range(concurrency)))
        # Wait for every turn to be placed; give up after a minute without progress.
        last, still = -1, time.perf_counter()
        while len(done) < len(rows):
            await asyncio.sleep(0.5)
            if len(done) != last:
                last, still = len(done), time.perf_counter()
            elif time.perf_counter() - still > 60:
                print(f"\nonly {len(done)}/{len(rows)} turns were placed; scoring those")
                break
        print(f"\rreplayed {len(rows)} turns in {time.perf_counter() - started:.0f}s")
        owner = stack.topology.owners.get("sgd", "utterance")
        await asyncio.to_thread(owner.tick, time.time() + 3600)  # final reclustering
        if stack.topology.journeys is not None:
            await aggregates_parity(stack.topology.journeys, stack.store, settings, len(done))
        model = owner.model
        assert model is not None
        out = {}
        offset = None
        while True:
            records, offset = owner.store.scroll(
                owner.names.events, limit=1000, offset=offset, with_vectors=True
            )
            for rec in records:
                mc = rec.payload["mc"]
                if rec.id not in done:
                    continue
                out[rec.id] = (model.topic_of(mc), np.asarray(rec.vector, dtype=np.float32))
            if offset is None:
                break
    return out, owner.neutral, settings, workdir


async def aggregates_parity(books, store, settings: Settings, placed: int) -> None:
    """The journey endpoints answered from the stream's aggregates and from the stored
    events (the oracle), once the books have seen every event and caught up with the
    final topic map: every figure must agree."""
    cells = JourneyQueries(store, settings=settings.journeys)
    oracle = JourneyQueries(store, settings=settings.journeys, use_aggregates=False)
    flt = JourneyFilter()
    counted = 0
    for _ in range(240):  # the sessions actor may still be a little behind
        counted = cells.transitions("sgd", None, flt)["totals"]["events"]
        if counted >= placed:
            break
        await asyncio.sleep(0.5)
    started = time.perf_counter()
    await asyncio.to_thread(books.catch_up)
    caught_up = time.perf_counter() - started

    def answers(q: JourneyQueries) -> list[dict]:
        bodies = [
            q.transitions("sgd", None, flt),
            q.paths("sgd", None, flt, 1000),
            q.entries("sgd", None, flt),
            q.dropoffs("sgd", None, flt),
            q.flows("sgd", None, flt, 4),
        ]
        return [{k: v for k, v in b.items() if k != "source"} for b in bodies]

    differences = list(differ(answers(cells), answers(oracle)))
    print(
        f"aggregates after the final reclustering: {counted} events counted, caught up in "
        f"{caught_up:.2f} s; transitions, paths, entries, drop-offs and flows "
        + (
            "equal the computation from stored events (medians to the histogram's resolution)"
            if not differences
            else f"DIFFER FROM the computation from stored events in {len(differences)} places:"
        )
    )
    for where, mine, theirs in differences[:8]:
        print(f"  {where}: aggregates {mine!r}, stored events {theirs!r}")


def differ(a, b, where: str = ""):
    """Where two answers differ. Medians of seconds are read from a histogram by the
    aggregates (to the millisecond below 100 s, 4 significant digits above: README
    *Journey aggregates*), so they may differ from the exact ones by that much."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            yield from differ(a.get(k), b.get(k), f"{where}.{k}")
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            yield from differ(x, y, f"{where}[{i}]")
    elif "median" in where and isinstance(a, float) and isinstance(b, float):
        if abs(a - b) > max(0.0011, 5.1e-4 * abs(b)):
            yield where, a, b
    elif a != b:
        yield where, a, b


def score(
    rows: list[dict],
    paths: dict[str, list[str]],
    topic_of: Callable[[str], object],
    min_switch: int,
    neutral: Collection[object] = frozenset(),
) -> dict[str, float]:
    members: dict[object, Counter] = defaultdict(Counter)
    for r in rows:
        t = topic_of(r["event_id"])
        if t is not None:
            members[t][r["label"]] += 1
    domain = {t: c.most_common(1)[0][0] for t, c in members.items()}
    tp = fp = fn = exact = true_returns = found_returns = 0
    sessions: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        sessions[r["session_id"]].append(r)
    for sid, turns in sessions.items():
        events = [JourneyEvent(r["event_id"], sid, "u", float(k), k) for k, r in enumerate(turns)]
        by_index = {k: r["event_id"] for k, r in enumerate(turns)}
        steps = session_path(events, lambda k, ids=by_index: topic_of(ids[k]), min_switch, neutral)
        step_domain = {e: domain[s.topic] for s in steps for e in s.event_ids}
        predicted: list[str | None] = []
        current = domain[steps[0].topic] if steps else None
        for r in turns:
            current = step_domain.get(r["event_id"], current)
            predicted.append(current)
        truth = [r["label"] for r in turns]
        for k in range(1, len(turns)):
            t_switch, p_switch = truth[k] != truth[k - 1], predicted[k] != predicted[k - 1]
            tp += t_switch and p_switch
            fp += p_switch and not t_switch
            fn += t_switch and not p_switch
        path: list[str] = []
        for d in predicted:
            if d is not None and (not path or path[-1] != d):
                path.append(d)
        true_path = paths[sid]
        exact += path == true_path
        for k in range(len(true_path) - 2):
            if true_path[k] == true_path[k + 2]:
                true_returns += 1
                pattern = [true_path[k], true_path[k + 1], true_path[k]]
                found_returns += any(path[j : j + 3] == pattern for j in range(len(path) - 2))
    precision, recall = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
    return {
        "P": precision,
        "R": recall,
        "F1": 2 * precision * recall / max(precision + recall, 1e-9),
        "exact": exact / len(sessions),
        "returns": found_returns / max(true_returns, 1),
        "topics": len(domain),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--sessions", type=int, default=0, help="only the first N dialogues")
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)

    rows, paths = load(args.data, args.sessions)
    # Turns the pipeline did not place (if any) are left out of the scores.
    n_domains = len({r["label"] for r in rows})
    print(
        f"{len(rows)} turns, {len({r['session_id'] for r in rows})} sessions, {n_domains} domains"
    )
    placed, neutral, settings, _ = asyncio.run(replay(rows, args.concurrency))
    rows = [r for r in rows if r.get("event_id") in placed]
    rule = settings.journeys.min_switch_events
    print(f"neutral topics learned: {len(neutral)} of {len({t for t, _ in placed.values()})}")

    results = []
    s = score(rows, paths, lambda e: placed[e][0], rule, neutral)
    results.append((f"turret-stream defaults (neutral, min={rule})", s))
    for min_switch in (1, 2):
        s = score(rows, paths, lambda e: placed[e][0], min_switch)
        results.append((f"turret-stream, no neutral, min={min_switch}", s))
    vectors = np.stack([placed[r["event_id"]][1] for r in rows])
    index = {r["event_id"]: i for i, r in enumerate(rows)}
    for k in (n_domains, 100):
        labels = KMeans(k, n_init=3, random_state=0).fit(vectors).labels_
        topic = {r["event_id"]: int(labels[index[r["event_id"]]]) for r in rows}
        for min_switch in (1, 2):
            s = score(rows, paths, topic.__getitem__, min_switch)
            results.append((f"KMeans k={k}, min={min_switch}", s))
        # The same neutral-topic rule, learned over the KMeans topics.
        context = SessionContext(settings.journeys.context_sessions)
        for r in rows:
            context.observe(r["session_id"], topic[r["event_id"]])
        km_neutral = neutral_topics(
            context.topic_sets(lambda t: t),
            min_sessions=settings.journeys.neutral_min_sessions,
            min_topic_sessions=settings.journeys.neutral_min_topic_sessions,
        )
        s = score(rows, paths, topic.__getitem__, 1, km_neutral)
        results.append((f"KMeans k={k}, neutral, min=1", s))

    print(
        f"\n{'':<42}{'switch P':>9}{'R':>6}{'F1':>6}{'path exact':>12}{'returns':>9}{'topics':>8}"
    )
    for name, s in results:
        print(
            f"{name:<42}{s['P']:>9.2f}{s['R']:>6.2f}{s['F1']:>6.2f}{s['exact']:>12.2f}"
            f"{s['returns']:>9.2f}{s['topics']:>8}"
        )


if __name__ == "__main__":
    main()
