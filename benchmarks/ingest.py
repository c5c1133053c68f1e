"""Ingestion benchmark: /track (validation + auth + Kafka acks=all) vs a bare aiohttp 200.

    python benchmarks/ingest.py --requests 5000 --concurrency 32

The servers (embedded tansu broker, turret-stream API, and a bare aiohttp handler that
answers 200 without touching Kafka) run in one child process; the load comes from this
process over loopback, so the two compete for the same two cores the way a real
deployment's load balancer would not. Figures are for comparison on one machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from turret_stream.broker import EmbeddedBroker, free_port
from turret_stream.keys import KeyStore
from turret_stream.settings import Settings
from turret_stream.stack import running_stack


async def _serve(conn) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="turret-bench-"))
    kafka_port = free_port()
    settings = Settings(
        data_dir=data_dir,
        log_level="warning",
        kafka={"embedded_port": kafka_port},
        http={"port": 0},
        rate_limit={"enabled": False},
    )
    key = KeyStore(settings.keys_db_path).create("bench").secret

    async def bare(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"success": True})

    bare_app = web.Application()
    bare_app.router.add_post("/track", bare)
    runner = web.AppRunner(bare_app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    bare_url = "http://{}:{}".format(*runner.addresses[0][:2])

    async with (
        EmbeddedBroker("127.0.0.1", kafka_port),
        running_stack(settings, broker=False, worker=False, api=True) as stack,
    ):
        conn.send({"turret": stack.api_url, "bare": bare_url, "key": key})
        await asyncio.to_thread(conn.recv)  # wait for "stop"
    await runner.cleanup()


def _server_main(conn) -> None:
    import logging

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    asyncio.run(_serve(conn))


async def _drive(url: str, key: str, requests: int, concurrency: int) -> dict:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    counter = iter(range(requests))
    headers = {"X-API-Key": key, "Content-Type": "application/json"}

    async def worker(session: aiohttp.ClientSession, wid: int) -> None:
        for i in counter:
            body = json.dumps(
                {
                    "name": "user_prompt",
                    "metadata": {"prompt": f"How do I reset my password? ({i})", "plan": "pro"},
                    "session_id": f"s-{wid}-{i % 7}",
                }
            )
            t0 = time.perf_counter()
            async with session.post(f"{url}/track", data=body, headers=headers) as resp:
                await resp.read()
                statuses[resp.status] = statuses.get(resp.status, 0) + 1
            latencies.append(time.perf_counter() - t0)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        # Warm-up: connections, the producer's metadata, the topic.
        warm = iter(range(min(200, requests)))
        for _ in warm:
            async with session.post(
                f"{url}/track",
                data=json.dumps({"name": "w", "metadata": {}}),
                headers=headers,
            ) as resp:
                await resp.read()
        start = time.perf_counter()
        await asyncio.gather(*(worker(session, w) for w in range(concurrency)))
        elapsed = time.perf_counter() - start
    q = statistics.quantiles(latencies, n=100)
    return {
        "ok": statuses.get(200, 0),
        "statuses": statuses,
        "rate": statuses.get(200, 0) / elapsed,
        "p50": q[49] * 1000,
        "p95": q[94] * 1000,
        "p99": q[98] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()

    parent, child = mp.Pipe()
    server = mp.get_context("spawn").Process(target=_server_main, args=(child,), daemon=True)
    server.start()
    urls = parent.recv()
    print(f"{args.requests} requests, {args.concurrency} concurrent clients, loopback, 2 cores")
    results = {}
    for name in ("bare", "turret"):
        results[name] = asyncio.run(
            _drive(urls[name], urls["key"], args.requests, args.concurrency)
        )
    parent.send("stop")
    server.join(timeout=30)

    print(f"{'':<28}{'events/s':>10}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}  statuses")
    labels = {"bare": "bare aiohttp 200 (no Kafka)", "turret": "/track (Kafka acks=all)"}
    for name, r in results.items():
        print(
            f"{labels[name]:<28}{r['rate']:>10.0f}{r['p50']:>9.1f}{r['p95']:>9.1f}"
            f"{r['p99']:>9.1f}  {r['statuses']}"
        )
    print(f"ratio /track : bare = {results['turret']['rate'] / results['bare']['rate']:.2f}")


if __name__ == "__main__":
    main()
