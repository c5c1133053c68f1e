"""Per-key token buckets for /track.

A bucket holds at most ``burst`` tokens and refills at ``events / window_s`` tokens a
second; each request takes one. An empty bucket answers how long until the next token.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from turret_stream.settings import RateLimitSettings


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(
        self, settings: RateLimitSettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._enabled = settings.enabled
        self._rate = settings.events / settings.window_s
        self._capacity = float(settings.burst)
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def acquire(self, key: str) -> int | None:
        """Take a token for ``key``: None if allowed, else whole seconds to wait (>= 1)."""
        if not self._enabled:
            return None
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self._capacity, now)
            self._forget_full_buckets(now)
        bucket.tokens = min(self._capacity, bucket.tokens + (now - bucket.updated) * self._rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return max(1, math.ceil((1.0 - bucket.tokens) / self._rate))

    def _forget_full_buckets(self, now: float) -> None:
        # A bucket that has refilled is the same as no bucket: drop those so memory stays
        # bounded by the keys active within one refill period.
        if len(self._buckets) < 1024:
            return
        refill = self._capacity / self._rate
        stale = [k for k, b in self._buckets.items() if now - b.updated >= refill]
        for k in stale:
            del self._buckets[k]
