"""Kill `turret-stream up` at random moments during a stream, many times, then check that
every event answered 200 is stored exactly once; beside it, the same rounds with the
journal off (the in-memory broker alone), as the comparator.

    python benchmarks/kill_rounds.py --rounds 20 [--sigterm-every 5] [--baseline-rounds N]

Each round starts `up` on the same data dir, streams events from 4 threads, and sends
SIGKILL (every --sigterm-every'th round: SIGTERM) after a random number (20-300) of 200s.
The last start waits for every acknowledged event, then `export` lists the store.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import durability_driver
from tests.durability_driver import Rounds


def run(rounds: int, sigterm_every: int, journal: str, seed: int) -> dict:
    durability_driver.ENV["TURRET_PIPELINE__JOURNAL"] = journal
    # `up` as a user runs it: the default model pool (tests run the model in-process).
    durability_driver.ENV["TURRET_WORKER__EMBED_PROCESSES"] = "0"
    with tempfile.TemporaryDirectory() as tmp:
        r = Rounds(Path(tmp) / "data", random.Random(seed))
        started = time.monotonic()
        for i in range(1, rounds + 1):
            sig = signal.SIGTERM if sigterm_every and i % sigterm_every == 0 else signal.SIGKILL
            r.crash(sig, f"r{i}")
            print(f"  [{journal}] {r.log[-1]}", file=sys.stderr)
        # Without the journal some acknowledged events never arrive: wait less for them.
        result = r.verify(patience=120 if journal != "off" else 30)
        result["seconds"] = round(time.monotonic() - started)
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--sigterm-every", type=int, default=5)
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument(
        "--baseline-rounds", type=int, default=None, help="rounds with the journal off [--rounds]"
    )
    args = parser.parse_args()
    os.environ.setdefault("TURRET_LOG_LEVEL", "warning")
    rows = []
    if args.rounds:
        rows.append(
            ("journal on (default)", run(args.rounds, args.sigterm_every, "auto", args.seed))
        )
    baseline = args.rounds if args.baseline_rounds is None else args.baseline_rounds
    if baseline:
        rows.append(
            (
                f"journal off ({baseline} rounds)",
                run(baseline, args.sigterm_every, "off", args.seed),
            )
        )
    print(f"{args.rounds} rounds (SIGTERM every {args.sigterm_every}th), 4 streaming threads")
    print(f"{'':28}{'answered 200':>14}{'stored':>8}{'lost':>8}{'duplicated':>12}{'s':>6}")
    for name, res in rows:
        print(
            f"{name:28}{res['acked']:>14}{res.get('stored_distinct', '-')!s:>8}"
            f"{res['lost']!s:>8}{res['duplicated']!s:>12}{res['seconds']:>6}"
        )


if __name__ == "__main__":
    main()
