"""A burst far over the pipeline's capacity against `turret-stream up`, with back-pressure
(the default pipeline.max_lag_events) and without it (a bound no burst reaches), side by
side: statuses, latency of the accepted requests, peak memory of `up` plus its broker, and
how long the worker needs to catch up afterwards.

    python benchmarks/burst.py [--requests 4000] [--concurrency 64] [--max-lag 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.durability_driver import NOUNS, VERBS, get
from tests.test_up import Up


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        status = Path(f"/proc/{pid}/status")
        if status.exists():
            for line in status.read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


async def burst(url: str, key: str, requests: int, concurrency: int) -> tuple[dict, list]:
    statuses: dict[int, int] = {}
    latencies: list[float] = []
    queue = list(range(requests))

    async def client(http: aiohttp.ClientSession) -> None:
        while queue:
            n = queue.pop()
            text = f"burst {n}: how do I {VERBS[n % 8]} my {NOUNS[(n // 8) % 8]}"
            body = {"name": "p", "metadata": {"prompt": text}, "session_id": f"b{n % 50}"}
            started = time.perf_counter()
            async with http.post("/track", json=body) as resp:
                await resp.read()
            statuses[resp.status] = statuses.get(resp.status, 0) + 1
            if resp.status == 200:
                latencies.append(time.perf_counter() - started)

    timeout = aiohttp.ClientTimeout(total=120)
    headers = {"X-API-Key": key}
    async with aiohttp.ClientSession(url, headers=headers, timeout=timeout) as http:
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
    return statuses, latencies


def run(max_lag: int, requests: int, concurrency: int) -> dict:
    env = {
        "TURRET_PIPELINE__MAX_LAG_EVENTS": str(max_lag),
        "TURRET_RATE_LIMIT__ENABLED": "false",
        "TURRET_DIMENSIONS__OVERRIDES": '{"prompt": "text"}',
    }
    with tempfile.TemporaryDirectory() as tmp:
        up = Up(Path(tmp) / "data", env)
        try:
            key = up.read_key()
            up.wait_ready(timeout=180)
            pids = [up.proc.pid, *up.broker_pids()]
            peak = rss_bytes(pids)
            done = threading.Event()

            def sample() -> None:
                nonlocal peak
                while not done.is_set():
                    peak = max(peak, rss_bytes(pids))
                    time.sleep(0.2)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            started = time.monotonic()
            statuses, latencies = asyncio.run(burst(up.url, key, requests, concurrency))
            sent_in = time.monotonic() - started
            accepted = statuses.get(200, 0)
            path = "/v1/clusters?dimension=prompt&examples=0"
            while get(up.url, key, path)[1].get("total_events", 0) < accepted:
                time.sleep(0.5)
            caught_up = time.monotonic() - started
            done.set()
            sampler.join()
        finally:
            up.stop()
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return {
        "statuses": dict(sorted(statuses.items())),
        "rate": requests / sent_in,
        "p50": q[49] * 1000,
        "p99": q[98] * 1000,
        "peak_mb": peak / 2**20,
        "caught_up_s": caught_up,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--max-lag", type=int, default=2000)
    args = parser.parse_args()
    os.environ.setdefault("TURRET_LOG_LEVEL", "warning")
    rows = [
        (
            f"back-pressure (max_lag {args.max_lag})",
            run(args.max_lag, args.requests, args.concurrency),
        ),
        ("no back-pressure", run(10**9, args.requests, args.concurrency)),
    ]
    print(f"{args.requests} requests, {args.concurrency} concurrent, loopback, one `up` process")
    print(
        f"{'':34}{'req/s':>7}{'p50 ms':>8}{'p99 ms':>8}{'peak MB':>9}{'caught up s':>13}  statuses"
    )
    for name, r in rows:
        print(
            f"{name:34}{r['rate']:>7.0f}{r['p50']:>8.1f}{r['p99']:>8.1f}{r['peak_mb']:>9.0f}"
            f"{r['caught_up_s']:>13.1f}  {r['statuses']}"
        )


if __name__ == "__main__":
    main()
