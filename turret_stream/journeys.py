"""Journeys: how sessions move between topics, computed from stored events (pure, no I/O).

A session's journey is derived at read time from its events' micro-clusters, projected
through the dimension's *current* micro-cluster -> topic mapping. So a merge or a split of
topics never leaves a stale journey behind, every aggregate agrees with today's topics, and
a worker restart cannot count a move twice (each event is stored once, by its id).
"""

from __future__ import annotations

import heapq
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Container, Iterable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

TopicOf = Callable[[int], str | None]


@dataclass(frozen=True, slots=True)
class JourneyEvent:
    """The fields of a stored event that journeys need."""

    event_id: str
    session_id: str
    user_id: str
    ts: float
    mc: int


@dataclass(frozen=True, slots=True)
class Step:
    """One stay of a session in a topic: from the event that entered it to the last one
    attributed to it. ``events`` counts every event in that span (noise and unconfirmed
    excursions included); ``event_ids`` lists them in order."""

    topic: str
    first_at: float
    last_at: float
    events: int
    event_ids: tuple[str, ...]


def ordered(events: Iterable[JourneyEvent]) -> list[JourneyEvent]:
    """A session's events in journey order: by time, ties broken by event id (stable
    whatever order the store returned them in)."""
    return sorted(events, key=lambda e: (e.ts, e.event_id))


@dataclass(frozen=True, slots=True)
class Switch:
    """A session entered its first topic (``source`` None) or switched topics; ``mark``
    is what the caller passed with the event the step starts at."""

    source: str | None
    target: str
    mark: Any


def follow_topic(
    position: MutableMapping[str, Any],
    topic: str | None,
    neutral: bool,
    min_switch_events: int,
    mark: Any,
) -> Switch | None:
    """The switch rule, applied to one event; the one implementation behind the stored
    journeys (``session_path``), the live session actors (``agents/sessions.py``) and the
    aggregates.

    ``position`` is the session's place (``topic``, ``candidate``, ``run``, ``mark``;
    mutated). An event without a topic (noise) changes nothing. The first topic-bearing
    event enters its topic. After that a session stays in its topic until
    ``min_switch_events`` consecutive topic-bearing events land in one same other topic;
    it then switches, as of the first event of that run (the ``mark`` given with it). An
    event back in the current topic ends a run; an event in a ``neutral`` topic is no
    evidence either way (it neither counts towards a run nor breaks it).
    """
    if topic is None:
        return None
    current = position.get("topic")
    if current is None:
        position.update(topic=topic, candidate=None, run=0, mark=None)
        return Switch(None, topic, mark)
    if topic == current:
        position.update(candidate=None, run=0, mark=None)
        return None
    if neutral:
        return None
    if position.get("candidate") != topic:
        position.update(candidate=topic, run=0, mark=mark)
    position["run"] = position.get("run", 0) + 1
    if position["run"] < min_switch_events:
        return None
    start = position.get("mark", mark)
    position.update(topic=topic, candidate=None, run=0, mark=None)
    return Switch(current, topic, start)


def session_path(
    events: Iterable[JourneyEvent],
    topic_of: TopicOf,
    min_switch_events: int,
    neutral: Container[str] = frozenset(),
) -> list[Step]:
    """The collapsed topic path of one session's events (any order in).

    Events are ordered by ``ts``, then ``event_id``. Each event's topic is
    ``topic_of(event.mc)``; an event without a topic (noise) never starts or ends a step,
    it only counts in the step it falls inside.

    The session's first topic is the topic of its first topic-bearing event. After that
    the **minimum-evidence rule** applies: the session stays in its current topic until
    ``min_switch_events`` consecutive topic-bearing events land in one same other topic
    B; the switch to B then happens at the first of those events. Shorter excursions
    (fewer consecutive events in B, or events alternating between other topics) stay
    part of the current step. With ``min_switch_events=1`` every change of topic counts.
    Consecutive steps therefore always have different topics.

    Events in a ``neutral`` topic (one that appears beside every kind of topic: "thanks",
    "yes", "at 7 pm"; see ``clustering/context.py``) are treated like noise once the
    session has a topic: they neither count towards a switch nor break a run. A session
    whose first topic-bearing event is neutral starts in that topic.
    """
    if min_switch_events < 1:
        raise ValueError(f"min_switch_events must be >= 1, got {min_switch_events}")
    events = ordered(events)
    # (position in `events`, topic) of the events that carry a topic
    bearing = [(i, t) for i, e in enumerate(events) if (t := topic_of(e.mc)) is not None]
    if not bearing:
        return []
    position: dict[str, Any] = {}
    step_topics: list[str] = []
    owner: list[int] = []  # step index of each topic-bearing event
    for k, (_, topic) in enumerate(bearing):
        moved = follow_topic(position, topic, topic in neutral, min_switch_events, k)
        if moved is not None:
            step_topics.append(moved.target)
            # The whole run moves to the new step: it starts at the run's first event.
            owner[moved.mark :] = [len(step_topics) - 1] * (k - moved.mark)
        owner.append(len(step_topics) - 1)

    # A step spans its first to its last topic-bearing event; steps are contiguous in
    # time, so noise between two steps (or before the first, after the last) is in none.
    first_pos: dict[int, int] = {}
    last_pos: dict[int, int] = {}
    for (pos, _), step in zip(bearing, owner, strict=True):
        first_pos.setdefault(step, pos)
        last_pos[step] = pos
    steps = []
    for index, topic in enumerate(step_topics):
        span = events[first_pos[index] : last_pos[index] + 1]
        steps.append(
            Step(
                topic=topic,
                first_at=span[0].ts,
                last_at=span[-1].ts,
                events=len(span),
                event_ids=tuple(e.event_id for e in span),
            )
        )
    return steps


@dataclass(frozen=True, slots=True)
class SessionJourney:
    """One session: its steps plus the times of all its events (noise included)."""

    session_id: str
    user_id: str
    first_at: float
    last_at: float
    events: int
    steps: tuple[Step, ...]

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(s.topic for s in self.steps)


def session_journey(
    events: Sequence[JourneyEvent],
    topic_of: TopicOf,
    min_switch_events: int,
    neutral: Container[str] = frozenset(),
) -> SessionJourney:
    """``session_path`` plus the session's identity and times. ``events`` must be one
    non-empty session; its user is the user of its first event."""
    in_order = ordered(events)
    first = in_order[0]
    return SessionJourney(
        session_id=first.session_id,
        user_id=first.user_id,
        first_at=first.ts,
        last_at=in_order[-1].ts,
        events=len(in_order),
        steps=tuple(session_path(in_order, topic_of, min_switch_events, neutral)),
    )


def by_session(events: Iterable[JourneyEvent]) -> dict[str, list[JourneyEvent]]:
    grouped: dict[str, list[JourneyEvent]] = defaultdict(list)
    for e in events:
        grouped[e.session_id].append(e)
    return grouped


def _ratio(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def _median(values: Sequence[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def binned_median(bins: Counter[float]) -> float | None:
    """The median of a histogram (value -> count), as ``statistics.median`` would give on
    the values it counts."""
    total = sum(bins.values())
    if total <= 0:
        return None
    ranked = sorted(bins.items())
    wanted = [(total - 1) // 2, total // 2]  # 0-based ranks of the middle value(s)
    found: list[float] = []
    seen = 0
    for value, n in ranked:
        while wanted and wanted[0] < seen + n:
            found.append(value)
            wanted.pop(0)
        seen += n
        if not wanted:
            break
    return round((found[0] + found[1]) / 2, 3)


@dataclass(frozen=True, slots=True)
class TopicDropoff:
    topic: str
    dropped: int  # idle past the timeout with this topic as their last step
    ended_here: int  # last step is this topic (idle or still going)
    visited: int  # have a step in this topic
    share_of_ended: float  # dropped / ended_here
    share_of_visited: float  # dropped / visited: the topic's exit rate
    share_of_dropoffs: float  # dropped / all dropped sessions


@dataclass
class JourneyStats:
    """Aggregates over many sessions (see ``aggregate``). Shares of sessions are out of
    ``sessions_with_topic``: a session whose events are all noise has no journey."""

    events: int = 0
    sessions: int = 0
    users: int = 0
    sessions_with_topic: int = 0
    transitions: Counter[tuple[str, str]] = field(default_factory=Counter)
    gaps: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    # The same as a histogram (value -> count), when the stats are summed from the
    # stream's aggregates (``journey_book.gap_bin``); medians read either.
    gap_bins: dict[tuple[str, str], Counter[float]] = field(default_factory=dict)
    # Medians already known, per pair and over every pair (the aggregates keep them
    # between requests, for the pairs whose histograms did not change): read first.
    gap_medians: dict[tuple[str, str], float | None] = field(default_factory=dict)
    all_gap_bins: Counter[float] | None = None  # every pair's histogram summed
    entries: Counter[str] = field(default_factory=Counter)
    paths: Counter[tuple[str, ...]] = field(default_factory=Counter)
    back_and_forth: Counter[tuple[str, str]] = field(default_factory=Counter)
    back_and_forth_sessions: int = 0
    visited: Counter[str] = field(default_factory=Counter)
    ended: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)

    @property
    def total_transitions(self) -> int:
        return sum(self.transitions.values())

    def probability(self, source: str, target: str) -> float:
        """P(target | source) = count(source -> target) / transitions out of source."""
        out = sum(n for (a, _), n in self.transitions.items() if a == source)
        return _ratio(self.transitions[(source, target)], out)

    def _out_of(self) -> Counter[str]:
        """Transitions out of each topic (the denominators of P(B|A))."""
        out_of: Counter[str] = Counter()
        for (a, _), n in self.transitions.items():
            out_of[a] += n
        return out_of

    def transition_table(self) -> list[dict]:
        """Every A -> B with its count, P(B|A) and median seconds, most frequent first."""
        out_of = self._out_of()
        rows = [
            {
                "from": a,
                "to": b,
                "count": n,
                "probability": _ratio(n, out_of[a]),
                "median_seconds": self._gap_median((a, b)),
            }
            for (a, b), n in self.transitions.items()
        ]
        return sorted(rows, key=lambda r: (-r["count"], r["from"], r["to"]))

    def follow_ups(self, top: int = 5) -> dict[str, list[dict]]:
        """Per topic, its most frequent next topics with P(next | topic)."""
        # Not from transition_table: its medians (one per pair) are most of its cost.
        out_of = self._out_of()
        ranked = sorted(self.transitions.items(), key=lambda kv: (-kv[1], kv[0]))
        table: dict[str, list[dict]] = defaultdict(list)
        for (a, b), n in ranked:  # most frequent first, as the table
            if len(table[a]) < top:
                table[a].append({"topic": b, "count": n, "probability": _ratio(n, out_of[a])})
        return dict(table)

    def entry_table(self) -> list[dict]:
        return [
            {"topic": t, "sessions": n, "share": _ratio(n, self.sessions_with_topic)}
            for t, n in sorted(self.entries.items(), key=lambda kv: (-kv[1], kv[0]))
        ]

    def top_paths(self, top: int) -> list[dict]:
        ranked = heapq.nsmallest(
            top, self.paths.items(), key=lambda kv: (-kv[1], len(kv[0]), kv[0])
        )
        return [
            {"path": list(p), "sessions": n, "share": _ratio(n, self.sessions_with_topic)}
            for p, n in ranked[:top]
        ]

    def back_and_forth_summary(self) -> dict:
        pairs = sorted(self.back_and_forth.items(), key=lambda kv: (-kv[1], kv[0]))
        return {
            "sessions": self.back_and_forth_sessions,
            "rate": _ratio(self.back_and_forth_sessions, self.sessions_with_topic),
            "pairs": [{"topic": a, "via": b, "sessions": n} for (a, b), n in pairs],
        }

    def _gap_median(self, pair: tuple[str, str]) -> float | None:
        if pair in self.gap_medians:
            return self.gap_medians[pair]
        if pair in self.gap_bins:
            return binned_median(self.gap_bins[pair])
        return _median(self.gaps.get(pair, []))

    @property
    def median_seconds_between_steps(self) -> float | None:
        if self.all_gap_bins is not None:
            return binned_median(self.all_gap_bins)
        if self.gap_bins:
            merged: Counter[float] = Counter()
            for bins in self.gap_bins.values():
                merged.update(bins)
            for gaps in self.gaps.values():
                merged.update(gaps)
            return binned_median(merged)
        return _median([g for gaps in self.gaps.values() for g in gaps])

    def dropoff_table(self) -> list[TopicDropoff]:
        total = sum(self.dropped.values())
        rows = [
            TopicDropoff(
                topic=t,
                dropped=self.dropped[t],
                ended_here=self.ended[t],
                visited=self.visited[t],
                share_of_ended=_ratio(self.dropped[t], self.ended[t]),
                share_of_visited=_ratio(self.dropped[t], self.visited[t]),
                share_of_dropoffs=_ratio(self.dropped[t], total),
            )
            for t in self.visited
        ]
        return sorted(rows, key=lambda r: (-r.dropped, -r.visited, r.topic))


def aggregate(
    journeys: Iterable[SessionJourney], *, now: float, dropoff_timeout_s: float
) -> JourneyStats:
    """Every aggregate in one pass over the sessions' journeys.

    - transitions A -> B between consecutive steps, with the seconds from A's first event
      to B's first event (for the medians);
    - entries: each session's first topic; paths: each session's collapsed topic tuple;
    - back-and-forth: sessions with some A -> B -> A (counted once per session, and once
      per session for each (A, B) pair it shows);
    - drop-offs: a session whose last event is older than ``now - dropoff_timeout_s``
      dropped off at its last step's topic;
    - totals: events, distinct sessions and distinct users (noise-only sessions included).
    """
    stats = JourneyStats()
    users: set[str] = set()
    idle_before = now - dropoff_timeout_s
    for j in journeys:
        stats.events += j.events
        stats.sessions += 1
        users.add(j.user_id)
        if not j.steps:
            continue
        stats.sessions_with_topic += 1
        path = j.path
        stats.entries[path[0]] += 1
        stats.paths[path] += 1
        stats.visited.update(set(path))
        stats.ended[path[-1]] += 1
        if j.last_at < idle_before:
            stats.dropped[path[-1]] += 1
        for a, b in zip(j.steps, j.steps[1:], strict=False):
            pair = (a.topic, b.topic)
            stats.transitions[pair] += 1
            stats.gaps.setdefault(pair, []).append(b.first_at - a.first_at)
        pairs = {(a, b) for a, b, c in zip(path, path[1:], path[2:], strict=False) if a == c}
        if pairs:
            stats.back_and_forth_sessions += 1
            stats.back_and_forth.update(pairs)
    stats.users = len(users)
    return stats
