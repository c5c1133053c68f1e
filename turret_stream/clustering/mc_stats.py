"""Event counts of one micro-cluster over time: what its topic's figures (first and last
seen, per-hour and per-day counts, counts per enum segment value) are summed from.
Serialised whole (``to_record``) in checkpoints, and per batch as ``partial_record``: only
the hours, days and segment values the batch counted, so a batch's log follows the batch,
not the week of hours and 90 days a micro-cluster keeps."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

HOUR, DAY = 3600, 86400
KEEP_HOURS, KEEP_DAYS = 7 * 24, 90

# One segment value of an event: (metadata key, value as text: True is "true").
Segment = tuple[str, str]


def _add_segments(
    counts: Counter[Segment], segments: Iterable[Segment], cap: int
) -> tuple[Segment, ...]:
    """Count ``segments`` into ``counts``, keeping at most ``cap`` distinct values (a value
    first seen once the cap is reached is not counted: bounded state per micro-cluster).
    Returns the values counted."""
    counted = []
    for seg in segments:
        if seg in counts or len(counts) < cap:
            counts[seg] += 1
            counted.append(seg)
    return tuple(counted)


def _merge_segments(counts: Counter[Segment], other: Counter[Segment], cap: int) -> None:
    for seg, n in other.items():
        if seg in counts or len(counts) < cap:
            counts[seg] += n


@dataclass
class McStats:
    """Event counts of one micro-cluster over time (for topics' first/last seen and
    per-hour/day counts)."""

    first: float
    last: float
    hours: Counter[int] = field(default_factory=Counter)
    days: Counter[int] = field(default_factory=Counter)
    # Events per enum segment value (at most ``clustering.segment_values_max`` values).
    segments: Counter[Segment] = field(default_factory=Counter)
    # The newest hour pruned for (not serialised): pruning walks every kept hour and day,
    # up to a week and 90 days of them, so it runs once per new hour, not per event.
    _pruned_at: int = field(default=-1, repr=False, compare=False)

    def add(self, t: float, segments: Iterable[Segment] = (), cap: int = 0) -> tuple[Segment, ...]:
        """Count one event at ``t``; returns the segment values counted (see the cap)."""
        self.first = min(self.first, t)
        self.last = max(self.last, t)
        self.hours[int(t // HOUR)] += 1
        self.days[int(t // DAY)] += 1
        counted = _add_segments(self.segments, segments, cap)
        self._prune()
        return counted

    def merge(self, other: McStats, cap: int = 0) -> None:
        self.first = min(self.first, other.first)
        self.last = max(self.last, other.last)
        self.hours.update(other.hours)
        self.days.update(other.days)
        _merge_segments(self.segments, other.segments, cap)
        self._pruned_at = -1  # ``other``'s hours may be older than the window
        self._prune()

    def copy(self) -> McStats:
        return McStats(
            self.first, self.last, Counter(self.hours), Counter(self.days), Counter(self.segments)
        )

    def _prune(self) -> None:
        newest_hour, newest_day = int(self.last // HOUR), int(self.last // DAY)
        if newest_hour == self._pruned_at:
            return
        self._pruned_at = newest_hour
        for h in [h for h in self.hours if h <= newest_hour - KEEP_HOURS]:
            del self.hours[h]
        for d in [d for d in self.days if d <= newest_day - KEEP_DAYS]:
            del self.days[d]

    def to_record(self) -> list[Any]:
        record = [self.first, self.last, list(self.hours.items()), list(self.days.items())]
        if self.segments:
            record.append([[k, v, n] for (k, v), n in self.segments.items()])
        return record

    @classmethod
    def from_record(cls, data: list[Any]) -> McStats:
        first, last, hours, days = data[:4]
        # Records written before segments were counted have four fields.
        segments = Counter({(k, v): n for k, v, n in data[4]}) if len(data) > 4 else Counter()
        return cls(first, last, Counter(dict(hours)), Counter(dict(days)), segments)

    def partial_record(self, times: Iterable[float], segments: Iterable[Segment]) -> dict:
        """What events at ``times`` counting ``segments`` changed: first and last seen, and
        the counts of their hours, days and segment values as they are now. Counts, not
        increments, so applying it twice (``apply_partial``) changes nothing more."""
        times = list(times)
        hours = sorted({int(t // HOUR) for t in times})
        days = sorted({int(t // DAY) for t in times})
        touched = sorted(set(segments))
        return {
            "first": self.first,
            "last": self.last,
            "hours": [[h, self.hours[h]] for h in hours if h in self.hours],
            "days": [[d, self.days[d]] for d in days if d in self.days],
            "segments": [
                [k, v, self.segments[(k, v)]] for k, v in touched if (k, v) in self.segments
            ],
        }

    @classmethod
    def apply_partial(cls, record: list[Any] | None, partial: Mapping[str, Any]) -> list[Any]:
        """The whole record (``to_record``) after ``partial`` (``partial_record``), pruned
        to the kept window as the owner's copy is."""
        stats = (
            cls.from_record(record)
            if record is not None
            else cls(partial["first"], partial["last"])
        )
        stats.first = min(stats.first, partial["first"])
        stats.last = max(stats.last, partial["last"])
        # Counts as they are now: set, not added (Counter.update would add).
        for h, n in partial["hours"]:
            stats.hours[h] = n
        for d, n in partial["days"]:
            stats.days[d] = n
        for k, v, n in partial["segments"]:
            stats.segments[(k, v)] = n
        stats._prune()
        return stats.to_record()
