"""The embedded broker replaced in place (`kafka.embedded_recycle_bytes`) under a steady
stream, beside the same stream with recycling off, in one run.

    python benchmarks/broker_recycle.py [--rate 150] [--seconds 90] [--recycle-mb 64]

Each row starts `up` as a user runs it (the default model pool) on a fresh data dir,
sends prompts with two segment values (`platform`, `plan`) open-loop at ``--rate``
requests/s from 8 threads (request *i* due at *i*/rate s; latency counted from then), waits
until every event answered 200 is processed, then stops `up`, restarts it and lists the
store with `export`: lost and duplicated events. Prints per row: answers, /track latency
overall and while a recycle ran, the broker's memory at the end, the recycles with their
duration and the broker's memory before and after (from `up`'s log).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import durability_driver
from tests.durability_driver import Rounds
from tests.test_up import Up

VERBS = ["reset", "change", "cancel", "renew", "update", "close", "open", "verify"]
NOUNS = ["password", "card", "account", "subscription", "address", "order", "email", "plan"]
RECYCLED = re.compile(
    r"replaced the embedded broker in ([\d.]+) s, events held for ([\d.]+) s "
    r"\((\d+) MB -> (\d+) MB\)"
)


def _metrics(url: str) -> dict[str, float]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
        lines = resp.read().decode().splitlines()
    return {ln.split()[0]: float(ln.split()[1]) for ln in lines if not ln.startswith("#")}


def _restarting(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=5):
            return False
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read()).get("checks", {}).get("broker") == "restarting"
    except OSError:
        return False


def stream(url: str, key: str, rate: float, seconds: float) -> tuple[list, set[str]]:
    """Open-loop posts; returns [(due, latency_s, status)] and the ids answered 200."""
    results: list[tuple[float, float, int]] = []
    acked: set[str] = set()
    lock = threading.Lock()
    total = int(rate * seconds)
    start = time.monotonic() + 0.5
    threads = 8

    def run(t: int) -> None:
        rng = random.Random(t)
        for i in range(t, total, threads):
            due = start + i / rate
            time.sleep(max(0.0, due - time.monotonic()))
            text = f"how do I {rng.choice(VERBS)} my {rng.choice(NOUNS)} ({i})"
            body = {
                "name": "p",
                "session_id": f"s{i % 200}",
                "metadata": {
                    "prompt": text,
                    "platform": rng.choice(["ios", "android", "web"]),
                    "plan": rng.choice(["free", "pro", "team"]),
                },
            }
            try:
                status, answer = durability_driver.post(url, key, body)
            except (OSError, ValueError):
                status, answer = 0, {}
            with lock:
                results.append((due - start, time.monotonic() - due, status))
                if status == 200:
                    acked.add(answer["event_id"])

    workers = [threading.Thread(target=run, args=(t,), daemon=True) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return results, acked


def one_row(recycle_mb: int, rate: float, seconds: float) -> dict:
    env = {
        **durability_driver.ENV,
        "TURRET_WORKER__EMBED_PROCESSES": "0",  # `up` as shipped: the model pool
        "TURRET_KAFKA__EMBEDDED_RECYCLE_BYTES": str(recycle_mb * 1024 * 1024),
        "TURRET_KAFKA__EMBEDDED_RECYCLE_CHECK_S": "5",
        "TURRET_RATE_LIMIT__ENABLED": "false",
        "TURRET_LOG_LEVEL": "info",
    }
    with tempfile.TemporaryDirectory() as tmp:
        rounds = Rounds(Path(tmp) / "data", random.Random(1))
        up = Up(rounds.data_dir, env)
        rounds.key = up.read_key()
        up.wait_ready(timeout=120)
        windows: list[tuple[float, float]] = []  # while /readyz said "restarting"
        watching = threading.Event()
        t0 = time.monotonic()

        def watch() -> None:
            since = None
            while not watching.is_set():
                now = time.monotonic() - t0 - 0.5
                if _restarting(up.url):
                    since = now if since is None else since
                elif since is not None:
                    windows.append((since, now))
                    since = None
                time.sleep(0.1)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        results, acked = stream(up.url, rounds.key, rate, seconds)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            m = _metrics(up.url)
            if m["turret_events_processed_total"] >= m["turret_events_accepted_total"]:
                break
            time.sleep(0.5)
        watching.set()
        watcher.join()
        m = _metrics(up.url)
        broker_mb = m['turret_stack_resident_memory_bytes{role="broker"}'] / 1024 / 1024
        up.stop()
        recycles = RECYCLED.findall(up.log_path.read_text(errors="replace"))
        rounds.acked = acked
        check = rounds.verify()
    lat = sorted(r[1] * 1000 for r in results if r[2] == 200)
    during = sorted(
        r[1] * 1000 for r in results if r[2] == 200 and any(a <= r[0] <= b for a, b in windows)
    )
    statuses: dict[int, int] = {}
    for r in results:
        statuses[r[2]] = statuses.get(r[2], 0) + 1

    def pct(values: list[float], q: float) -> str:
        return f"{values[min(len(values) - 1, int(q * len(values)))]:.0f}" if values else "-"

    return {
        "statuses": dict(sorted(statuses.items())),
        "p50": pct(lat, 0.5),
        "p99": pct(lat, 0.99),
        "during_n": len(during),
        "during_p99": pct(during, 0.99),
        "broker_mb": broker_mb,
        "recycles": [(float(s), float(h), int(a), int(b)) for s, h, a, b in recycles],
        "lost": check["lost"],
        "duplicated": check["duplicated"],
        "acked": check["acked"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=150.0, help="requests/s")
    parser.add_argument("--seconds", type=float, default=90.0)
    parser.add_argument("--recycle-mb", type=int, default=64)
    args = parser.parse_args()
    rows = [
        ("recycling off", one_row(0, args.rate, args.seconds)),
        (f"recycle past {args.recycle_mb} MB", one_row(args.recycle_mb, args.rate, args.seconds)),
    ]
    print(f"{args.rate:.0f} requests/s for {args.seconds:.0f} s, prompts with 2 segment values")
    head = (
        f"{'':24} {'200s':>6} {'p50 ms':>7} {'p99 ms':>7} {'in recycle':>10} "
        f"{'p99 ms':>7} {'broker MB':>9} {'lost':>5} {'dup':>4}  statuses"
    )
    print(head)
    for name, r in rows:
        print(
            f"{name:24} {r['acked']:>6} {r['p50']:>7} {r['p99']:>7} {r['during_n']:>10} "
            f"{r['during_p99']:>7} {r['broker_mb']:>9.0f} {r['lost']:>5} {r['duplicated']:>4}  "
            f"{r['statuses']}"
        )
    for name, r in rows:
        for seconds, held, before, after in r["recycles"]:
            print(
                f"  {name}: recycle in {seconds:.1f} s, /track held {held:.1f} s, "
                f"broker {before} MB -> {after} MB"
            )
        if r["recycles"]:
            held = [h for _, h, _, _ in r["recycles"]]
            print(f"  {name}: {len(held)} recycles, median hold {statistics.median(held):.1f} s")


if __name__ == "__main__":
    main()
