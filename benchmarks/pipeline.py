"""End-to-end pipeline throughput and latency, next to the product's own embedder;
clustering cost as micro-clusters grow.

    python benchmarks/pipeline.py --data ../shared/data/banking77.csv --events 2000 --workers 1 2

Part 1 runs the embedded stack (tansu, the Faust worker, the API) and posts texts to
/track over loopback as fast as the pipeline takes them; it prints events per second
processed (accepted -> embedded -> clustered -> stored), event-to-topic latency (from
/track's answer to the cluster agent's assignment), a row per `--workers` value (model
processes, as `up --workers N`), and, in the same run on the same texts, the product's own
embedder (sorted batches, one process) with the ratio. By default everything runs in this
process (`worker.separate_process: false`); `--split` runs it as `up` ships: the worker in
a child process, whose progress reaches this one over the worker link (batched every
20 ms, so its event -> topic times include up to 20 ms of that).

Part 2 measures TopicModel.learn (neighbour search in Qdrant's in-process engine, the
DBSTREAM update, links) per event on models holding 1k, 10k and 100k micro-clusters.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import logging
import multiprocessing
import os
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np

from turret_stream.broker import free_port
from turret_stream.clustering.dbstream import MicroCluster
from turret_stream.clustering.model import TopicModel
from turret_stream.clustering.store_index import StoreIndex
from turret_stream.embedding.base import cores
from turret_stream.keys import KeyStore
from turret_stream.settings import (
    ClusteringSettings,
    EmbeddingSettings,
    Settings,
    WorkerSettings,
)
from turret_stream.stack import running_split_stack, running_stack
from turret_stream.storage.edge import EdgeStore


def read_texts(path: Path, n: int) -> list[str]:
    with path.open(newline="", encoding="utf-8") as f:
        texts = [row["text"] for row in csv.DictReader(f) if row.get("text")]
    rng = np.random.default_rng(0)
    return [texts[i] for i in rng.permutation(len(texts))[:n]]


def intent_texts(path: Path, intent: str) -> list[str]:
    with path.open(newline="", encoding="utf-8") as f:
        return [r["text"] for r in csv.DictReader(f) if r.get("label") == intent]


async def live_latency(
    url: str, key: str, journeys: list[tuple[str, str]], rate: float, min_switch: int
) -> list[float]:
    """Sessions A, A, B, B at ``rate`` events/s; seconds from /track accepting the event that
    completes a move (the ``min_switch``-th B) to its transition on /v1/live."""
    accepted: dict[str, float] = {}
    order: dict[str, list[str]] = {}
    received: list[tuple[dict, float]] = []
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(
            f"{url.replace('http', 'ws')}/v1/live", headers={"X-API-Key": key}
        )

        async def listen() -> None:
            async for msg in ws:
                data = json.loads(msg.data)
                if data.get("type") == "transition":
                    received.append((data, time.perf_counter()))

        listener = asyncio.create_task(listen())
        await asyncio.sleep(0.5)

        async def post(session_id: str, text: str) -> None:
            body = {"name": "user_prompt", "metadata": {"prompt": text}, "session_id": session_id}
            async with http.post(f"{url}/track", json=body, headers={"X-API-Key": key}) as r:
                event_id = (await r.json())["event_id"]
            accepted[event_id] = time.perf_counter()
            order.setdefault(session_id, []).append(event_id)

        tasks = []
        for n, (a, b) in enumerate(journeys):
            for text in (a, a + " please", b, b + " please"):
                tasks.append(asyncio.create_task(post(f"live{n}", text)))
                await asyncio.sleep(1.0 / rate)
                # One session's events in order: wait for its previous post.
                await tasks[-1]
        await asyncio.sleep(3)
        listener.cancel()
        await ws.close()
    latencies = []
    for t, at in received:
        events = order.get(t["session_id"], [])
        if t["event_id"] not in events:
            continue
        k = events.index(t["event_id"]) + (0 if t["from_topic"] is None else min_switch - 1)
        if k < len(events):
            latencies.append(at - accepted[events[k]])
    return latencies


# Segment metadata an LLM product typically sends with each prompt (``--segments``): few
# distinct values, repeated in every batch.
SEGMENTS = {
    "platform": ("ios", "android", "web"),
    "plan": ("free", "pro", "team"),
    "model": ("gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet", "llama-3.1-8b"),
    "locale": ("en-US", "en-GB", "de-DE", "fr-FR", "es-ES"),
}


def event_metadata(i: int, text: str, segments: bool) -> dict[str, str]:
    """The i-th event's metadata: its prompt, and with ``segments`` four segment values."""
    if not segments:
        return {"prompt": text}
    picked = {
        key: values[(i * 7 + n) % len(values)] for n, (key, values) in enumerate(SEGMENTS.items())
    }
    return {"prompt": text, **picked}


async def _post_all(
    url: str,
    key: str,
    texts: list[tuple[int, str]],
    concurrency: int,
    interval: float,
    segments: bool = False,
) -> dict[str, float]:
    """Post ``texts`` to /track: ``concurrency`` clients as fast as answered, or (``interval``
    > 0) one every ``interval`` seconds. Returns event id -> when /track answered, and
    ``"began"`` -> when the first request was sent and ``"client_cpu_s"`` -> the CPU
    seconds this client spent sending them."""
    cpu_started = time.process_time()
    sent_at: dict[str, float] = {}
    headers = {"X-API-Key": key}
    connector = aiohttp.TCPConnector(limit=max(concurrency, 100))
    async with aiohttp.ClientSession(connector=connector) as session:

        async def post(i: int, text: str) -> None:
            body = {
                "name": "user_prompt",
                "metadata": event_metadata(i, text, segments),
                "session_id": f"s{i % 50}",
            }
            while True:
                async with session.post(f"{url}/track", json=body, headers=headers) as r:
                    data = await r.json()
                    if r.status != 503:
                        break
                    # Back-pressure (pipeline.max_lag_events): a client waits and resends.
                    await asyncio.sleep(float(r.headers.get("Retry-After", "1")))
            if "event_id" not in data:
                raise RuntimeError(f"/track answered {r.status}: {data}")
            sent_at[data["event_id"]] = time.perf_counter()

        sent_at["began"] = time.perf_counter()
        if interval > 0:
            tasks = []
            for i, text in texts:
                tasks.append(asyncio.create_task(post(i, text)))
                await asyncio.sleep(interval)
            await asyncio.gather(*tasks)
        else:
            queue = list(texts)

            async def client() -> None:
                while queue:
                    await post(*queue.pop(0))

            await asyncio.gather(*(client() for _ in range(concurrency)))
    sent_at["client_cpu_s"] = time.process_time() - cpu_started
    return sent_at


def _client_process(args: tuple, cpus: list[int] | None, out: multiprocessing.Queue) -> None:
    if cpus:
        os.sched_setaffinity(0, cpus)
    out.put(asyncio.run(_post_all(*args)))


async def post_from_client_process(
    url: str,
    key: str,
    texts: list[tuple[int, str]],
    concurrency: int,
    interval: float,
    cpus: list[int] | None,
    segments: bool = False,
) -> dict[str, float]:
    """``_post_all`` in a process of its own, as real clients are: the load generator's
    JSON and HTTP work does not run on the pipeline's event loop (``cpus``: where it may
    run; by default wherever the benchmark may). perf_counter is the system's monotonic
    clock on Linux, so its times compare with this process's. With ``segments``, each
    event carries four segment values besides its prompt (``event_metadata``)."""
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(
        target=_client_process,
        args=((url, key, texts, concurrency, interval, segments), cpus, out),
    )
    proc.start()
    try:
        return await asyncio.to_thread(out.get, True, 900)
    finally:
        await asyncio.to_thread(proc.join, 10)


def stack_settings(workers: int) -> tuple[Settings, str]:
    """Settings of a fresh embedded stack with ``workers`` model processes, no rate
    limit, and an API key for it."""
    settings = Settings(
        data_dir=Path(tempfile.mkdtemp(prefix="turret-pipeline-")),
        log_level="warning",
        kafka={"embedded_port": free_port()},
        http={"port": 0},
        rate_limit={"enabled": False},
        worker={"embed_processes": workers},
    )
    return settings, KeyStore(settings.keys_db_path).create("bench").secret


async def run_pipeline(
    texts: list[str],
    concurrency: int,
    journeys: list[tuple[str, str]] | None = None,
    workers: int = 1,
    client_cpus: list[int] | None = None,
    split: bool = False,
    paced_rate: float | None = None,
) -> dict:
    """First half of the texts as fast as possible (capacity); second half paced at half
    that rate, or at ``paced_rate`` events/s (latency at a steady load). ``workers``:
    embedding processes (up --workers). The texts are posted from a separate client
    process (``client_cpus``)."""
    settings, key = stack_settings(workers)
    done_at: dict[str, float] = {}
    half = len(texts) // 2
    if split:
        opened = running_split_stack(settings, broker=True)
    else:
        opened = running_stack(settings, broker=True, worker=True, api=True)
    async with opened as stack:
        if split:  # the worker's progress, as the ingest process hears of it
            assert stack.progress is not None
            clustered = stack.progress.clustered

            def heard(event_id: str) -> None:
                done_at.setdefault(event_id, time.perf_counter())
                clustered(event_id)

            stack.progress.clustered = heard  # type: ignore[method-assign]
        else:
            stack.topology.owners.listeners.append(
                lambda a: done_at.setdefault(a.event_id, time.perf_counter())
            )
        await asyncio.sleep(1)

        async def wait_done(n: int) -> None:
            deadline = time.perf_counter() + 600
            while len(done_at) < n and time.perf_counter() < deadline:
                await asyncio.sleep(0.02)

        url = stack.api_url
        first = list(enumerate(texts[:half]))
        sent = await post_from_client_process(url, key, first, concurrency, 0.0, client_cpus)
        await wait_done(half)
        capacity = half / (max(done_at.values()) - sent["began"])

        steady = paced_rate or capacity / 2
        interval = 1.0 / steady
        second = list(enumerate(texts[half:], start=half))
        paced_sent = await post_from_client_process(url, key, second, 1, interval, client_cpus)
        await wait_done(len(texts))
        live = (
            await live_latency(
                stack.api_url, key, journeys, steady, settings.journeys.min_switch_events
            )
            if journeys
            else []
        )
    paced = [e for e in paced_sent if e in done_at]  # "began", "client_cpu_s": no event ids
    latencies = sorted(done_at[e] - paced_sent[e] for e in paced)
    q = statistics.quantiles(latencies, n=100)
    return {
        "live": live,
        "events": half,
        "rate": capacity,
        "paced_rate": steady,
        "p50": q[49],
        "p95": q[94],
    }


def product_embedder(texts: list[str]) -> float:
    """The product's own embedder on the same texts, all at once: it sorts them by length
    into batches of 64 (least padding), with every core this process may use for the
    model's threads. The strongest comparator: no pipeline can embed faster than this in
    one process."""
    from turret_stream.embedding import open_embedder

    ours = open_embedder(EmbeddingSettings())
    ours.embed(texts[:64])  # warm-up
    started = time.perf_counter()
    ours.embed(texts)
    return len(texts) / (time.perf_counter() - started)


def pooled_embedder(texts: list[str], processes: int) -> float:
    """The model alone in ``processes`` processes (as ``up --workers N`` runs it), each with
    its share of the cores: what the pipeline's model stage can do on these cores."""
    from turret_stream.embedding.pool import PooledEmbedder

    pool = PooledEmbedder(
        EmbeddingSettings(),
        processes,
        max(1, cores() // processes),
        chunk_texts=WorkerSettings().embed_chunk_texts,  # as the worker's pool
    )
    try:
        pool.embed(texts[: 64 * processes])  # warm-up
        started = time.perf_counter()
        pool.embed(texts)
        return len(texts) / (time.perf_counter() - started)
    finally:
        pool.close()


def clustering_cost(sizes: list[int], probes: int) -> list[tuple[int, float, float]]:
    rng = np.random.default_rng(1)
    dim, intrinsic = 384, 32
    basis = rng.standard_normal((intrinsic, dim)).astype(np.float32)
    out = []
    for n in sizes:
        with tempfile.TemporaryDirectory() as d:
            store = EdgeStore(Path(d) / "q")
            index = StoreIndex(store, "mc", dim)
            model = TopicModel(ClusteringSettings(), index)
            centres = rng.standard_normal((n, intrinsic)).astype(np.float32) @ basis
            centres /= np.linalg.norm(centres, axis=1, keepdims=True)
            for i, c in enumerate(centres):  # n micro-clusters, as if learned
                model.engine._mcs[i] = MicroCluster(i, 1.0, 0.0, 0.0, 1)
                index.put(i, c)
                if i % 5000 == 4999:
                    index.flush()
            model.engine._next_id = n
            index.flush()
            store.optimize()
            # Events near existing micro-clusters, as real traffic mostly is.
            picks = centres[rng.integers(0, n, probes)]
            noisy = picks + rng.normal(scale=0.02, size=picks.shape).astype(np.float32)
            noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
            times = []
            for j, x in enumerate(noisy):
                t0 = time.perf_counter()
                model.learn(x, t=1.0 + j)
                times.append(time.perf_counter() - t0)
                if j % 64 == 63:
                    index.flush()
            store.close()
        out.append((n, statistics.median(times) * 1e3, statistics.quantiles(times, n=20)[18] * 1e3))
        print(
            f"  {n:>7} micro-clusters: {out[-1][1]:.2f} ms/event (p95 {out[-1][2]:.2f})", flush=True
        )
    return out


def _cpu_list(text: str) -> list[int]:
    """'0-3,8' -> [0, 1, 2, 3, 8]"""
    cpus: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        cpus.extend(range(int(low), int(high or low) + 1))
    return cpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="*",
        default=[1000, 10_000, 100_000],
        help="micro-clusters for Part 2, a row each (none: Part 2 skipped)",
    )
    parser.add_argument("--probes", type=int, default=500)
    parser.add_argument(
        "--workers",
        type=int,
        nargs="*",
        default=[1, 2],
        help="embedding processes to measure, a row each (up --workers N)",
    )
    parser.add_argument(
        "--cpus",
        type=_cpu_list,
        help="run the pipeline (and the comparator) on these cores only, e.g. 0-3",
    )
    parser.add_argument(
        "--client-cpus", type=_cpu_list, help="cores of the load-generating client process"
    )
    parser.add_argument(
        "--paced-rate",
        type=float,
        help="events/s of the latency half (default: half of each row's measured capacity); "
        "a fixed rate compares latency between code versions at the same load",
    )
    parser.add_argument(
        "--split",
        action="store_true",
        help="the worker in its own process, as `up` runs it (worker.separate_process)",
    )
    args = parser.parse_args()
    if args.cpus:
        os.sched_setaffinity(0, args.cpus)  # the broker and model processes inherit it
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)

    texts = read_texts(args.data, args.events)
    layout = "worker in a child process, as up" if args.split else "all in one process"
    print(f"Part 1: {len(texts)} texts from {args.data.name} through the embedded stack ({layout})")
    print(f"  on {cores()} cores; client process on {args.client_cpus or 'the same cores'}")
    a_texts = intent_texts(args.data, "card_arrival")
    b_texts = intent_texts(args.data, "exchange_rate")
    journeys = list(zip(a_texts[:30], b_texts[:30], strict=False))
    model = product_embedder(texts)
    print(f"  product embedder (sorted batches of 64, one process): {model:.0f} texts/s")
    pooled = {n: pooled_embedder(texts, n) for n in args.workers if n > 1}
    for n, rate in pooled.items():
        print(f"  the model alone in {n} processes (as --workers {n}): {rate:.0f} texts/s")
    head = ("workers", "events/s", "/ model", "/ N proc", "p50 ms", "p95 ms")
    load = f"{args.paced_rate:g} events/s" if args.paced_rate else "half capacity"
    print("  {:>7} {:>9} {:>8} {:>8} {:>7} {:>7}".format(*head) + f"  (event -> topic at {load})")
    result = None
    for n in args.workers:
        row = asyncio.run(
            run_pipeline(
                texts,
                args.concurrency,
                journeys if n == args.workers[0] else None,
                n,
                args.client_cpus,
                args.split,
                args.paced_rate,
            )
        )
        result = result or row
        print(
            f"  {n:>7} {row['rate']:>9.0f} {row['rate'] / model:>8.2f} "
            f"{row['rate'] / pooled.get(n, model):>8.2f} "
            f"{row['p50'] * 1e3:>7.0f} {row['p95'] * 1e3:>7.0f}",
            flush=True,
        )
    live = sorted(result["live"])
    if len(live) >= 2:
        q = statistics.quantiles(live, n=20)
        print(
            f"  event accepted -> transition on /v1/live ({len(live)} transitions, sessions "
            f"A,A,B,B at {load}): p50 {statistics.median(live) * 1e3:.0f} ms, "
            f"p95 {q[18] * 1e3:.0f} ms"
        )
    else:
        print(f"  live transitions: only {len(live)} seen (banking77 intents missing?)")

    print("Part 2: TopicModel.learn per event (Qdrant edge index)")
    costs = clustering_cost(args.sizes, args.probes)
    if len(costs) > 1:
        print(f"  growth {costs[0][0]} -> {costs[-1][0]}: {costs[-1][1] / costs[0][1]:.2f}x")


if __name__ == "__main__":
    main()
