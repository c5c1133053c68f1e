"""Topic points: what writing and reading a dimension's topic points costs as topics age.

    python benchmarks/topic_points.py

A topic point carries the topic's events by hour (a week kept), by day (90 days kept) and
by enum segment value. The owner writes the points of every topic a batch touched (at most
every ``clustering.topic_points_interval_s``); ``/v1/clusters``, trends, segments and the
alerts read them all. The synthetic stream of ``scale.py`` spans hours, so its topics never
hold more than a few hours: this benchmark builds the series of topics an hour, a day, a
week and 90 days old and times, on the real edge store:

- the write of 170 topic points (a 256-event batch over 300 topics touches about that
  many), the series as one JSON text (``clustering/topic_series.py``, now) against the
  series as payload lists (the layout before, the comparator);
- the read of 300 points with their series decoded (what ``/v1/clusters`` reads), both
  layouts.

Each figure is the median of ``--repeat`` rounds.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from turret_stream.clustering.mc_stats import KEEP_DAYS, KEEP_HOURS
from turret_stream.clustering.topic_series import TopicSeries
from turret_stream.storage import Point
from turret_stream.storage.edge import EdgeStore

DIM = 384
WRITTEN = 170
TOPICS = 300
AGES = {
    "1 hour": (1, 1),
    "1 day": (24, 1),
    "1 week": (KEEP_HOURS, 7),
    "90 days": (KEEP_HOURS, KEEP_DAYS),
}
SEGMENTS = {("platform", v): 10 for v in ("web", "ios", "android")} | {
    ("plan", v): 10 for v in ("free", "pro")
}


def series(hours: int, days: int) -> TopicSeries:
    first_hour, first_day = 480_000, 20_000
    return TopicSeries(
        hours={first_hour + h: 50 + h % 7 for h in range(hours)},
        days={first_day + d: 1_000 + d for d in range(days)},
        segments=dict(SEGMENTS),
    )


def as_lists(s: TopicSeries) -> dict:
    """The layout before: the series as payload lists."""
    return {
        "hours": sorted(s.hours.items()),
        "days": sorted(s.days.items()),
        "segments": sorted([k, v, n] for (k, v), n in s.segments.items()),
    }


def payload(topic: int, fields: dict) -> dict:
    return {"topic": f"tp_{topic}", "status": "active", "size": 1_000, **fields}


def timed(rounds: int, work) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(TOPICS, DIM)).astype(np.float32)
    store = EdgeStore(Path(tempfile.mkdtemp(prefix="turret-topic-points-")) / "qdrant")
    print(
        f"{WRITTEN} topic points written, {TOPICS} read back with their series decoded; "
        f"median of {args.repeat} rounds, real edge store"
    )
    print(
        f"{'topic age':>9} {'write: text':>12} {'write: lists':>13} {'ratio':>6} "
        f"{'read: text':>11} {'read: lists':>12} {'ratio':>6}"
    )
    try:
        for age, (hours, days) in AGES.items():
            s = series(hours, days)
            figures: list[float] = []
            for layout, fields in (("text", s.to_payload()), ("lists", as_lists(s))):
                name = f"topics_{layout}_{hours}_{days}"
                store.create_collection(name, DIM)
                points = [Point(f"tp_{t}", vectors[t], payload(t, fields)) for t in range(TOPICS)]
                store.upsert(name, points)
                ids = [f"tp_{t}" for t in range(TOPICS)]

                def write(name=name, points=points) -> None:
                    store.upsert(name, points[:WRITTEN])

                def read(name=name, ids=ids) -> None:
                    for r in store.retrieve(name, ids):
                        TopicSeries.from_payload(r.payload)

                figures += [timed(args.repeat, write), timed(args.repeat, read)]
            w_text, r_text, w_lists, r_lists = figures
            print(
                f"{age:>9} {w_text:>9.1f} ms {w_lists:>10.1f} ms {w_lists / w_text:>5.1f}x "
                f"{r_text:>8.1f} ms {r_lists:>9.1f} ms {r_lists / r_text:>5.1f}x",
                flush=True,
            )
    finally:
        store.close()


if __name__ == "__main__":
    main()
