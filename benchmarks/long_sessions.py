"""What one event costs the journey aggregates as its session grows.

    python benchmarks/long_sessions.py --lengths 10,100,1000,10000

The sessions owner keeps each session's journey in the cells of its hour and segments
(``journey_book.py``). This feeds one session event by event into a ``JourneyBook`` the way
the owner does (``put`` with the topic map's version) and times the events that take the
session to each length (the last ``--window`` of them). Events wander over 12 micro-
clusters of 6 topics, one of them neutral, and change topic on about half of the events,
with returns (A -> B -> A) among them; gaps of 1-400 s cross hours.

The comparator, in the same run on the same session: deriving the session's journey from
its runs and counting it into a fresh cell, which is what ``put`` did for every event
before the fifteenth session (the whole session re-derived, its old contribution
retracted and the new one added).
"""

from __future__ import annotations

import argparse
import random
import time

from turret_stream.journey_book import Cell, JourneyBook, SessionRuns

TOPICS = {mc: "ABCDEN"[mc % 6] for mc in range(12)}
NEUTRAL = frozenset({"N"})


def feed(length: int, window: int, seed: int) -> tuple[float, float, int]:
    """(ms per event of ``put``, ms per event of the comparator, steps in the path) over
    the last ``window`` events of a session of ``length`` events."""
    rng = random.Random(seed)
    book = JourneyBook(min_switch_events=1)
    runs = SessionRuns("s", "u")
    t, mc = 1_700_000_000.0, 0
    put_s = scratch_s = 0.0
    for i in range(length):
        t += rng.choice([1, 5, 30, 400])
        if rng.random() < 0.5:
            mc = rng.randrange(12)
        runs.add(t, f"e{i:07d}", mc, {"plan": "pro"})
        timed = i >= length - window
        started = time.perf_counter()
        book.put(runs, TOPICS.get, NEUTRAL, basis="v1")
        if timed:
            put_s += time.perf_counter() - started
            started = time.perf_counter()
            Cell().apply(book.contribution(runs, TOPICS.get, NEUTRAL), 1)
            scratch_s += time.perf_counter() - started
    counted = min(window, length)
    steps = len(book.contributions["s"].derived.path)
    return 1000 * put_s / counted, 1000 * scratch_s / counted, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="10,100,1000,10000")
    parser.add_argument("--window", type=int, default=100, help="events timed per length")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(f"{'events in session':>18} {'steps':>7} {'put ms/event':>13} {'from scratch':>13}")
    for length in (int(x) for x in args.lengths.split(",")):
        put_ms, scratch_ms, steps = feed(length, args.window, args.seed)
        print(f"{length:>18} {steps:>7} {put_ms:>13.3f} {scratch_ms:>13.3f}", flush=True)


if __name__ == "__main__":
    main()
