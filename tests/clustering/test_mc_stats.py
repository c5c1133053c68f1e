"""A micro-cluster's event counts over time keep a week of hours and 90 days."""

from __future__ import annotations

from turret_stream.clustering.mc_stats import HOUR, KEEP_HOURS, McStats


def test_hours_beyond_a_week_are_dropped_as_time_moves_and_after_a_merge():
    start = 1_700_000_000.0 // HOUR * HOUR
    stats = McStats(start, start)
    for h in range(KEEP_HOURS + 5):
        stats.add(start + h * HOUR)
        stats.add(start + h * HOUR + 60)  # same hour again: nothing more to drop
    newest = int((start + (KEEP_HOURS + 4) * HOUR) // HOUR)
    assert sorted(stats.hours) == list(range(newest - KEEP_HOURS + 1, newest + 1))
    assert all(n == 2 for n in stats.hours.values())
    # Merging an older micro-cluster's counts (an absorption) keeps only the window.
    old = McStats(start, start + 3 * HOUR)
    for h in range(4):
        old.add(start + h * HOUR)
    stats.merge(old)
    assert min(stats.hours) == newest - KEEP_HOURS + 1
    assert stats.hours[newest] == 2
