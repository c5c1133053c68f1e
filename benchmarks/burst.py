"""A burst at 10 times the pipeline's capacity against `turret-stream up`: latency of the
accepted requests, statuses, peak memory, and how long the worker takes to catch up.

    python benchmarks/burst.py [--rate 600] [--seconds 10] [--layouts floor,one-process,default]
                               [--repeat 1]

The load is open-loop: request i is due at i / rate seconds, whether or not earlier ones
have been answered (what a burst of independent clients does), and its latency counts from
when it was due, so a server that stalls cannot hide it by slowing the sender down
(coordinated omission). At most `--max-in-flight` requests are open at once; one that
waits for a connection waits on the clock. Rows, measured in the same run, one after the
other, with the same sender:

- ``floor``: a bare aiohttp handler that reads the body and answers 200 (no key, no
  journal, no Kafka), in its own process: what the sender and the machine allow.
- ``before`` (not run by default): `up` in one process as it was before
  (``worker.separate_process: false``, ``worker.model_nice: 0``,
  ``pipeline.checkpoint_quiet_s: 0``): the model processes compete with the API for the
  cores on equal terms, and the journal checkpoint flushes the store whenever it is due.
- ``one-process``: `up` in one process (``worker.separate_process: false``), as it
  shipped until the worker got a process of its own: /track shares the event loop and
  the GIL with the Faust agents and the in-process store.
- ``default``: `up` as it ships: /track, the journal and the producer in `up`'s main
  process, the worker in a child process.
- ``unbounded`` (not run by default): `up` with back-pressure off (``max_lag_events`` out of
  reach): every request accepted, the backlog and memory unbounded.

The default rate, 600 requests/s, is about ten times what `up` processes per second on
this 2-core machine (62 events/s with two model processes, README *Pipeline*); each `up`
row also prints the rate at which its worker caught up after the burst. Everything (the
sender, `up`, its broker and model processes) shares the machine's cores: the load average
at the start of each row is printed beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.durability_driver import NOUNS, VERBS, get
from tests.test_up import Up


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        status = Path(f"/proc/{pid}/status")
        try:
            text = status.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total


def family(pid: int) -> list[int]:
    """``pid`` and its descendants (the model processes, the broker)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def _request(host: str, key: str, n: int) -> bytes:
    text = f"burst {n}: how do I {VERBS[n % 8]} my {NOUNS[(n // 8) % 8]}"
    body = json.dumps({"name": "p", "metadata": {"prompt": text}, "session_id": f"b{n % 50}"})
    head = (
        f"POST /track HTTP/1.1\r\nHost: {host}\r\nX-API-Key: {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return (head + body).encode()


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> int:
    """One request on a kept-alive connection; the answer's status (its body is read)."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.lower() == "content-length":
            length = int(value)
    await reader.readexactly(length)
    return int(lines[0].split()[1])


async def open_loop(url: str, key: str, rate: float, seconds: float, in_flight: int) -> dict:
    """Send ``rate`` requests/s for ``seconds`` over ``in_flight`` kept-alive connections;
    latency counts from each request's due time. A small raw HTTP/1.1 client rather than
    aiohttp's: on 2 shared cores the sender's own cost must stay far below the server's."""
    statuses: dict[int, int] = {}
    latencies: list[float] = []
    loop = asyncio.get_running_loop()
    host, port = url.removeprefix("http://").rsplit(":", 1)
    due_queue: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()

    async def connection() -> None:
        reader = writer = None
        while (item := await due_queue.get()) is not None:
            n, due = item
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, int(port))
                status = await asyncio.wait_for(
                    _exchange(reader, writer, _request(host, key, n)), 60
                )
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
                status = 0  # no answer: counted, never as accepted
                if writer is not None:
                    writer.close()
                reader = writer = None
            statuses[status] = statuses.get(status, 0) + 1
            if status == 200:
                latencies.append(loop.time() - due)
        if writer is not None:
            writer.close()

    workers = [asyncio.create_task(connection()) for _ in range(in_flight)]
    start = loop.time()
    total = int(rate * seconds)
    for n in range(total):
        due = start + n / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        due_queue.put_nowait((n, due))
    sent_in = loop.time() - start
    for _ in workers:
        due_queue.put_nowait(None)
    await asyncio.gather(*workers)
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return {
        "statuses": dict(sorted(statuses.items())),
        "offered": total / sent_in,
        "accepted": statuses.get(200, 0),
        "p50": q[49] * 1000,
        "p99": q[98] * 1000,
        "max": max(latencies, default=0.0) * 1000,
    }


def _floor_server(conn) -> None:
    async def serve() -> None:
        async def bare(request: web.Request) -> web.Response:
            await request.read()
            return web.json_response({"success": True})

        app = web.Application()
        app.router.add_post("/track", bare)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        conn.send("http://{}:{}".format(*runner.addresses[0][:2]))
        await asyncio.to_thread(conn.recv)
        await runner.cleanup()

    asyncio.run(serve())


def run_floor(args: argparse.Namespace) -> dict:
    parent, child = mp.Pipe()
    proc = mp.get_context("spawn").Process(target=_floor_server, args=(child,), daemon=True)
    proc.start()
    try:
        url = parent.recv()
        load = os.getloadavg()[0]
        result = asyncio.run(open_loop(url, "-", args.rate, args.seconds, args.max_in_flight))
        result["peak_mb"] = rss_bytes([proc.pid]) / 2**20
    finally:
        parent.send("stop")
        proc.join(10)
    return {**result, "load": load, "caught_up_s": None, "worker_rate": None}


def run_up(args: argparse.Namespace, env: dict[str, str]) -> dict:
    env = {
        "TURRET_PIPELINE__MAX_LAG_EVENTS": str(args.max_lag),
        "TURRET_RATE_LIMIT__ENABLED": "false",
        "TURRET_DIMENSIONS__OVERRIDES": '{"prompt": "text"}',
        # `up` as a user runs it: the default model pool (the tests run the model in-process).
        "TURRET_WORKER__EMBED_PROCESSES": "0",
        **env,
    }
    with tempfile.TemporaryDirectory() as tmp:
        up = Up(Path(tmp) / "data", env)
        try:
            key = up.read_key()
            up.wait_ready(timeout=180)
            # Warm up: the first event creates the dimension's collections.
            warm = asyncio.run(open_loop(up.url, key, 5, 1, 8))
            assert warm["accepted"] == 5, warm
            path = "/v1/clusters?dimension=prompt&examples=0"
            while get(up.url, key, path)[1].get("total_events", 0) < 5:
                time.sleep(0.2)
            pids = family(up.proc.pid)
            peak = rss_bytes(pids)
            done = threading.Event()

            def sample() -> None:
                nonlocal peak
                while not done.is_set():
                    peak = max(peak, rss_bytes(pids))
                    time.sleep(0.2)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            load = os.getloadavg()[0]
            started = time.monotonic()
            result = asyncio.run(
                open_loop(up.url, key, args.rate, args.seconds, args.max_in_flight)
            )
            sent = time.monotonic()
            while get(up.url, key, path)[1].get("total_events", 0) < result["accepted"] + 5:
                time.sleep(0.5)
            caught_up = time.monotonic()
            done.set()
            sampler.join()
        finally:
            up.stop()
    return {
        **result,
        "load": load,
        "peak_mb": peak / 2**20,
        "caught_up_s": caught_up - started,
        # Events the worker processed per second, from the burst's start to caught up: the
        # pipeline's capacity on this machine during this run.
        "worker_rate": result["accepted"] / (caught_up - started),
        "sent_s": sent - started,
    }


LAYOUTS = {
    "floor": ("bare aiohttp 200 (floor)", None),
    # As before: the model on equal terms, checkpoints whenever due.
    "before": (
        "up, before",
        {
            "TURRET_WORKER__SEPARATE_PROCESS": "false",
            "TURRET_WORKER__MODEL_NICE": "0",
            "TURRET_PIPELINE__CHECKPOINT_QUIET_S": "0",
        },
    ),
    # The previous default: /track in the same process as the worker's agents and store.
    "one-process": ("up, one process", {"TURRET_WORKER__SEPARATE_PROCESS": "false"}),
    "default": ("up (default)", {}),
    # Optional: what back-pressure bounds (memory, catch-up time); slow to catch up.
    "unbounded": ("up, no back-pressure", {"TURRET_PIPELINE__MAX_LAG_EVENTS": str(10**9)}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=600.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--max-in-flight", type=int, default=128)
    parser.add_argument("--max-lag", type=int, default=2000)
    parser.add_argument("--layouts", default="floor,one-process,default")
    parser.add_argument(
        "--repeat", type=int, default=1, help="run the rows this many times, alternating"
    )
    args = parser.parse_args()
    os.environ.setdefault("TURRET_LOG_LEVEL", "warning")
    rows = []
    for name in args.layouts.split(",") * args.repeat:
        title, env = LAYOUTS[name]
        result = run_floor(args) if env is None else run_up(args, env)
        rows.append((title, result))
        print(f"  {title}: {result}", file=sys.stderr)
    print(
        f"{args.rate:.0f} requests/s for {args.seconds:.0f} s, open loop (at most "
        f"{args.max_in_flight} in flight), loopback, max_lag {args.max_lag}"
    )
    print(
        f"{'':26}{'load':>5}{'sent/s':>7}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}"
        f"{'peak MB':>8}{'caught up s':>12}{'worker/s':>9}  statuses"
    )
    for title, r in rows:
        caught = "-" if r["caught_up_s"] is None else f"{r['caught_up_s']:.1f}"
        worker = "-" if r["worker_rate"] is None else f"{r['worker_rate']:.0f}"
        print(
            f"{title:26}{r['load']:>5.1f}{r['offered']:>7.0f}{r['p50']:>8.1f}{r['p99']:>8.1f}"
            f"{r['max']:>8.0f}{r['peak_mb']:>8.0f}{caught:>12}{worker:>9}  {r['statuses']}"
        )
    print("(load: 1-minute load average at the row's start; worker/s: events the worker")
    print(" processed per second from the burst's start until it caught up)")


if __name__ == "__main__":
    main()
