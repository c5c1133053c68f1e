"""Trend tags from a topic's hourly counts: documented rules, no tuning per project."""

from __future__ import annotations

import numpy as np
import pytest

from turret_stream.trends import HOUR, SPIKE_P, _baseline, _spike_p, spike, trend

NOW = 500_000  # an hour index


def _steady(rate: float, hours: int, seed: int) -> dict[int, int]:
    counts = np.random.default_rng(seed).poisson(rate, hours)
    return {NOW - hours + 1 + i: int(c) for i, c in enumerate(counts)}


def _born(hours_ago: int) -> float:
    return (NOW - hours_ago) * HOUR


def test_a_steady_topic_never_spikes_hour_after_hour():
    # Three weeks of Poisson traffic at several rates, judged at every hour of the last
    # two: a bare ratio (say 2x the mean) would fire at low rates; the test must not.
    for rate in (0.5, 3.0, 20.0, 200.0):
        hours = _steady(rate, 21 * 24, seed=int(rate * 10))
        for now in range(NOW - 14 * 24, NOW + 1):
            seen = {h: c for h, c in hours.items() if h <= now}
            tag = trend(seen, _born(21 * 24), now).tag
            assert tag not in ("spiking", "new"), (rate, now, tag)


def test_a_burst_in_the_current_hour_is_spiking():
    hours = _steady(20.0, 10 * 24, seed=1)
    hours[NOW] = 60
    t = trend(hours, _born(10 * 24), NOW)
    assert t.tag == "spiking" and t.this_hour == 60
    assert 15 < t.baseline_per_hour < 25


def test_few_events_after_a_silent_week_are_no_alarm():
    hours = {NOW - 200: 3, NOW: 2}
    assert trend(hours, _born(200), NOW).tag != "spiking"


def test_a_topic_born_within_the_window_is_new():
    hours = {NOW - 5: 4, NOW - 1: 6, NOW: 3}
    t = trend(hours, _born(5), NOW)
    assert t.tag == "new" and t.growth is None


def _two_windows(previous: int, current: int) -> dict[int, int]:
    """The last 24 hours hold ``current`` events, each earlier day of the week ``previous``."""
    hours = {}
    for h in range(NOW - 7 * 24 + 1, NOW - 47):
        hours[h] = previous // 24
    for i in range(24):
        hours[NOW - 47 + i] = previous // 24 + (1 if i < previous % 24 else 0)
        hours[NOW - 23 + i] = current // 24 + (1 if i < current % 24 else 0)
    return hours


def test_rising_cooling_fading_and_steady_follow_the_two_windows():
    born = _born(30 * 24)
    rising = trend(_two_windows(200, 400), born, NOW)
    assert rising.tag == "rising" and rising.growth == 1.0
    assert trend(_two_windows(300, 150), born, NOW).tag == "cooling"
    assert trend(_two_windows(300, 10), born, NOW).tag == "fading"
    assert trend(_two_windows(300, 310), born, NOW).tag == "steady"
    # Doubling from 2 to 4 events is not beyond chance.
    assert trend(_two_windows(2, 4), born, NOW).tag == "steady"


def test_a_topic_born_late_in_an_hour_does_not_spike_the_next_hour():
    # First seen at half past: 9 events in that half hour is 18 an hour, so 40 in the
    # next hour is no spike (a whole-hour baseline of 9 would call it one, p ~ 1e-13).
    born = (NOW - 1) * HOUR + 30 * 60
    assert trend({NOW - 1: 9, NOW: 40}, born, NOW).tag == "new"
    # Ten times the rate is.
    assert trend({NOW - 1: 9, NOW: 180}, born, NOW).tag == "spiking"
    # Minutes of history are no baseline at all.
    assert trend({NOW - 1: 1, NOW: 50}, NOW * HOUR - 60, NOW).tag == "new"


@pytest.mark.parametrize("baseline", [0.0, 0.3, 2.0, 17.5, 240.0, 3000.0])
@pytest.mark.parametrize("first_hours_ago", [0.6, 5.0, 200.0])
def test_the_spike_test_agrees_with_the_poisson_tail_at_every_count(baseline, first_hours_ago):
    """``spike`` skips the Poisson tail below a count computed once per baseline; at every
    count it still answers as the tail does."""
    now_hour = 500_000
    first_seen = (now_hour - first_hours_ago) * 3600
    exposure = min(first_hours_ago, 7 * 24)
    past = {now_hour - 1 - h: round(baseline) for h in range(int(exposure))}
    rate, hours_seen = _baseline(past, first_seen, now_hour)
    # Small counts, and every count from the rate to well past where the tail drops below
    # SPIKE_P (about 5 standard deviations above it).
    counts = set(range(60)) | set(range(int(rate), int(rate + 8 * rate**0.5) + 60))
    for count in sorted(counts):
        hours = {**past, now_hour: count}
        expected = _spike_p(count, rate, hours_seen) < SPIKE_P
        assert (spike(hours, first_seen, now_hour) is not None) == expected, count
