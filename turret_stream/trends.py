"""Trend tags of a topic, from its own hourly counts (the read side; no per-project tuning).

Time is event time: "now" is the newest hour in which the dimension received an event, so a
replay of old traffic is tagged as it was lived, and a quiet product does not turn every
topic to "fading" overnight. Windows are ``WINDOW_HOURS`` (24) long: the *current* window
ends with the current hour, the *previous* one is the 24 hours before it.

Tags, first match wins:

- ``spiking``: the current hour's count is improbable under the topic's baseline, its
  hourly rate over the ``BASELINE_HOURS`` (7 days) before the current hour, or since its
  first event if younger (the time observed, to the minute: a topic first seen at 10:50
  has ten minutes of baseline in that hour; no test before ``MIN_BASELINE_HOURS``, half
  an hour, of history):
  Poisson upper tail ``P(X >= count) < SPIKE_P`` (1e-6, a bound on false alarms across
  every topic and hour of a busy product: about one in 40 years of 100 topics), and at
  least ``SPIKE_MIN_EVENTS`` (5) events, so that a first event after a silent week is no
  alarm. The current hour is partial: the test is conservative until it ends.
- ``new``: born within the current window.
- ``rising`` / ``cooling``: the current window differs from the previous one beyond chance,
  a conditional test of two Poisson counts (``cur ~ Binomial(cur + prev, 1/2)``, two-sided
  ``p < CHANGE_P`` = 0.01), by at least half again (rising) or a third less (cooling).
- ``fading``: the current window is a tenth of the previous or less, beyond chance.
- ``steady``: anything else.

``growth`` is ``(current - previous) / previous`` over the two windows (None without a
previous window).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from scipy.stats import binomtest, poisson

HOUR = 3600
WINDOW_HOURS = 24
BASELINE_HOURS = 7 * 24
SPIKE_P = 1e-6
SPIKE_MIN_EVENTS = 5
MIN_BASELINE_HOURS = 0.5
CHANGE_P = 0.01
TAGS = ("spiking", "new", "rising", "fading", "cooling", "steady")


@dataclass(frozen=True)
class Trend:
    tag: str
    growth: float | None
    current: int  # events in the current window
    previous: int  # events in the previous window
    this_hour: int
    baseline_per_hour: float


def _sum(hours: Mapping[int, int], first: int, last: int) -> int:
    return sum(c for h, c in hours.items() if first <= h <= last)


def _baseline(
    hours: Mapping[int, int], first_seen: float | None, now_hour: int
) -> tuple[float, float]:
    """The hourly rate before ``now_hour`` and the hours it was observed over: from the
    topic's first event (at most BASELINE_HOURS back) to the start of the current hour.
    A topic first seen at 10:50 has ten minutes of baseline in that hour, not a whole one
    (counting whole hours would make every young topic "spike" the hour after its birth)."""
    start = float((now_hour - BASELINE_HOURS) * HOUR)
    if first_seen is not None:
        start = max(start, first_seen)
    exposure = (now_hour * HOUR - start) / HOUR
    if exposure <= 0:
        return 0.0, 0.0
    return _sum(hours, int(start // HOUR), now_hour - 1) / exposure, exposure


def _spike_p(this_hour: int, baseline: float, baseline_hours: float) -> float:
    """The Poisson upper tail of this hour's count (1.0 when the test does not apply)."""
    if this_hour < SPIKE_MIN_EVENTS or baseline_hours < MIN_BASELINE_HOURS:
        return 1.0
    return float(poisson.sf(this_hour - 1, max(baseline, 1.0 / baseline_hours)))


@functools.lru_cache(maxsize=4096)
def _spike_threshold(baseline: float, baseline_hours: float) -> float:
    """The least count whose ``_spike_p`` is below ``SPIKE_P`` under this baseline (inf
    where the test does not apply). The cluster owner asks ``spike`` for every topic a
    batch touched, and a topic's baseline changes once an hour: below this count there
    is no Poisson tail to compute (scipy's, ~0.1 ms a call, was 5% of the owner's time)."""
    if baseline_hours < MIN_BASELINE_HOURS:
        return math.inf
    rate = max(baseline, 1.0 / baseline_hours)
    # P(X >= n) = sf(n - 1): the least n with sf(n - 1) < SPIKE_P. isf is a starting
    # point; the loops make it exact on the discrete distribution.
    k = max(int(poisson.isf(SPIKE_P, rate)), 0)
    while k > 0 and poisson.sf(k - 1, rate) < SPIKE_P:
        k -= 1
    while poisson.sf(k, rate) >= SPIKE_P:
        k += 1
    return max(k + 1, SPIKE_MIN_EVENTS)


@dataclass(frozen=True)
class Spike:
    this_hour: int
    baseline_per_hour: float
    p_value: float


def spike(hours: Mapping[int, int], first_seen: float | None, now_hour: int) -> Spike | None:
    """The ``spiking`` test alone (the same as ``trend``'s), for the cluster owner that
    evaluates it as counts arrive: a Spike when this hour's count is improbable."""
    this_hour = hours.get(now_hour, 0)
    if this_hour < SPIKE_MIN_EVENTS:
        return None  # the common case, without summing the baseline
    baseline, baseline_hours = _baseline(hours, first_seen, now_hour)
    if this_hour < _spike_threshold(baseline, baseline_hours):
        return None  # the other common case, without the Poisson tail
    p = _spike_p(this_hour, baseline, baseline_hours)
    return Spike(this_hour, round(baseline, 4), p) if p < SPIKE_P else None


def trend(hours: Mapping[int, int], first_seen: float | None, now_hour: int) -> Trend:
    """The tag of one topic whose hourly counts are ``hours`` (hour index -> events)."""
    current = _sum(hours, now_hour - WINDOW_HOURS + 1, now_hour)
    previous = _sum(hours, now_hour - 2 * WINDOW_HOURS + 1, now_hour - WINDOW_HOURS)
    this_hour = hours.get(now_hour, 0)
    born = int(first_seen // HOUR) if first_seen is not None else now_hour - BASELINE_HOURS
    baseline, baseline_hours = _baseline(hours, first_seen, now_hour)
    growth = round((current - previous) / previous, 4) if previous else None

    tag = "steady"
    if _spike_p(this_hour, baseline, baseline_hours) < SPIKE_P:
        tag = "spiking"
    elif now_hour - born < WINDOW_HOURS:
        tag = "new"
    elif current + previous > 0 and binomtest(current, current + previous).pvalue < CHANGE_P:
        if current >= 1.5 * previous:
            tag = "rising"
        elif current <= previous / 10:
            tag = "fading"
        elif current <= previous * 2 / 3:
            tag = "cooling"
    return Trend(tag, growth, current, previous, this_hour, round(baseline, 4))


def newest_hour(all_hours: Iterable[Mapping[int, int]]) -> int | None:
    """The dimension's "now": the newest hour any of its topics saw an event."""
    return max((max(h) for h in all_hours if h), default=None)
