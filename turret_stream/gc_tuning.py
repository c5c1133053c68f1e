"""Python's cyclic garbage collector, tuned for a process that holds large long-lived
state and allocates many short-lived objects per batch."""

from __future__ import annotations

import gc


def tune_gc(young_threshold: int) -> None:
    """Collect the young generation after ``young_threshold`` net allocations of container
    objects instead of Python's 700 (0 keeps Python's thresholds).

    Why: a worker holds millions of long-lived objects (micro-clusters, session rows,
    journey cells) and each batch allocates tens of thousands of short-lived ones. At 700,
    the batch's objects still alive at a young collection are promoted, and full
    collections, each a walk of the whole heap, followed every couple of batches: 11% of
    ``benchmarks/scale.py``'s wall time by 100k events (0.27 s each). At 50,000 most of a
    batch's objects are freed by reference counting before a collection sees them (4.3%
    of the wall time to 10k events -> 0.4%). Cycles are still collected, later.
    """
    if young_threshold > 0:
        _, older, oldest = gc.get_threshold()
        gc.set_threshold(young_threshold, older, oldest)
