"""The read side of journeys.

Aggregates (transitions, paths, entries, drop-offs, flows) come from the cells the
sessions actor keeps (``journey_aggregates``): O(cells), never truncated. Where a
dimension has no cells (no sessions actor with aggregates has run on it), a segment
filter names a key that is not an enum segment, or the request asks for themes
(``level=theme``: each event counts in its topic's theme, ``clustering/themes.py``; or
``theme=``: one theme's topics only), they are computed from the stored events: events
are scrolled in pages and at most ``max_events`` are read; a response says
``truncated: true`` when that cap was hit. That computation from stored events is also
the test oracle of the aggregates. One session's journey and a user's sessions read
that session's or user's events only (``session_id`` / ``user_id`` are indexed).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from turret_stream.catalog import DimensionNames
from turret_stream.clustering.topic_map import TopicMap
from turret_stream.journey_aggregates import CellReader
from turret_stream.journey_flows import step_flows
from turret_stream.journeys import (
    JourneyEvent,
    JourneyStats,
    SessionJourney,
    Step,
    aggregate,
    by_session,
    session_journey,
)
from turret_stream.queries import NotFound, Queries
from turret_stream.settings import JourneySettings
from turret_stream.storage import Filter, VectorStore

# Enough for a few hundred thousand events a request; beyond that a response is partial.
MAX_EVENTS_SCANNED = 200_000
PAGE_SIZE = 1000


@dataclass(frozen=True)
class JourneyFilter:
    """What a request narrows the events to. ``segments``: metadata key -> value, all of
    which must hold (``segment=platform:mobile``); ``theme``: only the events of that
    theme's topics. ``level``: journeys between ``topic``s or ``theme``s."""

    since: float | None = None
    until: float | None = None
    segments: tuple[tuple[str, str], ...] = ()
    theme: str | None = None
    level: str = "topic"

    def echo(self) -> dict[str, Any]:
        return {
            "since": _iso(self.since),
            "until": _iso(self.until),
            "segments": [f"{k}:{v}" for k, v in self.segments],
            "theme": self.theme,
            "level": self.level,
        }


@dataclass
class Loaded:
    names: DimensionNames
    events: list[JourneyEvent] = field(default_factory=list)
    truncated: bool = False


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


def _segment_values(value: str) -> str | list[Any]:
    """Metadata keeps the JSON type the app sent: ``beta:true`` or ``tier:3`` should
    match the stored booleans and integers as well as the strings."""
    if value in ("true", "false"):
        return [value, value == "true"]
    digits = value.removeprefix("-")
    if digits.isascii() and digits.isdecimal() and len(digits) <= 19:
        number = int(value)
        # The store keeps signed 64-bit integers: a longer number can only be a string.
        if -(2**63) <= number < 2**63:
            return [value, number]
    return value


def _memo(topic_map: TopicMap) -> Callable[[int], str | None]:
    # topic_of follows absorption chains: resolve each micro-cluster once per request.
    cache: dict[int, str | None] = {}

    def topic_of(mc: int) -> str | None:
        if mc not in cache:
            cache[mc] = topic_map.topic_of(mc)
        return cache[mc]

    return topic_of


def _theme_of(
    topic_map: TopicMap, topic_of: Callable[[int], str | None], neutral: frozenset[str]
) -> Callable[[int], str | None]:
    """Journeys between themes: an event counts in its topic's theme. An event in a neutral
    topic keeps its topic (neutral: it never moves a journey, at either level); a topic
    without a theme yet (a map written before themes) stands for itself."""

    def theme_of(mc: int) -> str | None:
        topic = topic_of(mc)
        if topic is None or topic in neutral:
            return topic
        return topic_map.theme_of(topic) or topic

    return theme_of


def _step_view(step: Step, number: int, with_ids: bool) -> dict[str, Any]:
    view: dict[str, Any] = {
        "step": number,
        "topic": step.topic,
        "first_at": _iso(step.first_at),
        "last_at": _iso(step.last_at),
        "events": step.events,
    }
    if with_ids:
        view["event_ids"] = list(step.event_ids)
    return view


def _session_view(j: SessionJourney, with_ids: bool) -> dict[str, Any]:
    return {
        "session_id": j.session_id,
        "user_id": j.user_id,
        "first_at": _iso(j.first_at),
        "last_at": _iso(j.last_at),
        "events": j.events,
        "path": list(j.path),
        "steps": [_step_view(s, i, with_ids) for i, s in enumerate(j.steps, 1)],
    }


class JourneyQueries:
    def __init__(
        self,
        store: VectorStore,
        *,
        queries: Queries | None = None,
        settings: JourneySettings | None = None,
        max_events: int = MAX_EVENTS_SCANNED,
        use_aggregates: bool = True,
    ) -> None:
        self.store = store
        self.queries = queries or Queries(store)
        self.settings = settings or JourneySettings()
        self.max_events = max_events
        # False: always compute from stored events (the oracle the tests compare with).
        self.cells = CellReader(store) if use_aggregates else None

    # -- loading --------------------------------------------------------------------------

    def _filter(self, flt: JourneyFilter, **exact: Any) -> Filter | None:
        must: dict[str, Any] = dict(exact)
        for key, value in flt.segments:
            # Quoted: a key may hold '.', '[', '*' or spaces, which a bare path would read
            # as path syntax (the API refuses keys with '"' or '\\', which cannot be quoted).
            path = f'metadata."{key}"'
            if path in must and must[path] != _segment_values(value):
                return None  # two values for one key can never both hold
            must[path] = _segment_values(value)
        return Filter(must=must, ranges={"ts": (flt.since, flt.until)})

    def _pages(self, names: DimensionNames, flt: Filter) -> Iterator[list[dict[str, Any]]]:
        offset = None
        while True:
            records, offset = self.store.scroll(
                names.events, filter=flt, limit=PAGE_SIZE, offset=offset
            )
            yield [r.payload for r in records]
            if offset is None:
                return

    def load(
        self, project: str, dimension: str | None, flt: JourneyFilter, **exact: str | list[str]
    ) -> Loaded:
        """The dimension's events matching the filter (and ``exact`` payload values, e.g.
        ``session_id``), at most ``max_events`` of them."""
        names = self.queries.dimension(project, dimension)
        loaded = Loaded(names)
        if flt.theme is not None:
            members = self._theme_members(names, flt.theme)
            if not members:
                return loaded
            exact = {**exact, "mc": members}
        store_filter = self._filter(flt, **exact)
        if store_filter is None or not self.store.has_collection(names.events):
            return loaded
        for page in self._pages(names, store_filter):
            for p in page:
                if len(loaded.events) >= self.max_events:
                    loaded.truncated = True
                    return loaded
                loaded.events.append(
                    JourneyEvent(p["event_id"], p["session_id"], p["user_id"], p["ts"], p["mc"])
                )
        return loaded

    def _theme_members(self, names: DimensionNames, theme: str) -> list[int]:
        """The micro-clusters of a theme's topics (a merged theme's id names its successor;
        an unknown one is NotFound)."""
        topic_map = self.queries.topic_map(names)
        current = self.queries.live_theme(topic_map, theme)
        return sorted(mc for t in topic_map.theme_topics(current) for mc in topic_map.members(t))

    def _journeys(self, loaded: Loaded, level: str = "topic") -> list[SessionJourney]:
        topic_map = self.queries.topic_map(loaded.names)
        topic_of = _memo(topic_map)
        minimum = self.settings.min_switch_events
        neutral = topic_map.neutral if self.settings.neutral_topics else frozenset()
        if level == "theme":
            topic_of = _theme_of(topic_map, topic_of, neutral)
        return [
            session_journey(events, topic_of, minimum, neutral)
            for events in by_session(loaded.events).values()
        ]

    def _exists(self, names: DimensionNames, **exact: str) -> bool:
        return self.store.has_collection(names.events) and bool(
            self.store.count(names.events, Filter(must=exact))
        )

    def _envelope(self, project: str, loaded: Loaded, flt: JourneyFilter) -> dict[str, Any]:
        return {
            "success": True,
            "project": project,
            "dimension": loaded.names.dimension,
            **flt.echo(),
            "min_switch_events": self.settings.min_switch_events,
            "truncated": loaded.truncated,
        }

    # -- one session, one user ------------------------------------------------------------

    def session(
        self, project: str, session_id: str, dimension: str | None, flt: JourneyFilter
    ) -> dict[str, Any]:
        loaded = self.load(project, dimension, flt, session_id=session_id)
        if not loaded.events and not self._exists(loaded.names, session_id=session_id):
            raise NotFound(f"No session '{session_id}' in this project")
        body = self._envelope(project, loaded, flt)
        journeys = self._journeys(loaded, flt.level)
        if journeys:
            body.update(_session_view(journeys[0], with_ids=True))
        else:  # the session exists, but none of its events pass the filters
            body.update(session_id=session_id, events=0, path=[], steps=[])
        return body

    def user_sessions(
        self, project: str, user_id: str, dimension: str | None, flt: JourneyFilter
    ) -> dict[str, Any]:
        loaded = self.load(project, dimension, flt, user_id=user_id)
        if not loaded.events and not self._exists(loaded.names, user_id=user_id):
            raise NotFound(f"No user '{user_id}' in this project")
        journeys = sorted(
            self._journeys(loaded, flt.level), key=lambda j: (j.first_at, j.session_id)
        )
        return {
            **self._envelope(project, loaded, flt),
            "user_id": user_id,
            "returning": len(journeys) > 1,
            "total_sessions": len(journeys),
            "sessions": [_session_view(j, with_ids=False) for j in journeys],
        }

    # -- aggregates -----------------------------------------------------------------------

    def stats(
        self, project: str, dimension: str | None, flt: JourneyFilter, now: float | None = None
    ) -> tuple[dict[str, Any], JourneyStats]:
        """The common envelope (with totals) and the aggregates of the filtered sessions."""
        now = time.time() if now is None else now
        # The cells are kept per topic; theme journeys are computed from the events.
        by_topic = flt.level == "topic" and flt.theme is None
        from_cells = self._from_cells(project, dimension, flt, now) if by_topic else None
        if from_cells is not None:
            loaded, stats = from_cells
        else:
            loaded = self.load(project, dimension, flt)
            stats = aggregate(
                self._journeys(loaded, flt.level),
                now=now,
                dropoff_timeout_s=self.settings.dropoff_timeout_s,
            )
        body = self._envelope(project, loaded, flt)
        body["source"] = "aggregates" if from_cells is not None else "events"
        body["totals"] = {
            "events": stats.events,
            "sessions": stats.sessions,
            "users": stats.users,
            "sessions_with_topic": stats.sessions_with_topic,
            "transitions": stats.total_transitions,
        }
        return body, stats

    def _from_cells(
        self, project: str, dimension: str | None, flt: JourneyFilter, now: float
    ) -> tuple[Loaded, JourneyStats] | None:
        reader = self.cells
        if reader is None:
            return None
        names = self.queries.dimension(project, dimension)

        def exact(session_ids: list[str]) -> list[SessionJourney]:
            """The journeys within the window of the sessions it cuts: from their stored
            paths where a bound falls between two runs (one read of a small row each),
            else from their events."""
            events: list[JourneyEvent] = []
            rest = session_ids
            if not flt.segments:  # a segment filter can pick some of a session's events
                rest = []
                for i in range(0, len(session_ids), 256):
                    part = session_ids[i : i + 256]
                    stored = reader.rows.session_runs(names, part)
                    for sid in part:
                        runs = stored.get(sid)
                        within = None if runs is None else runs.events_within(flt.since, flt.until)
                        if within is None:
                            rest.append(sid)
                        else:
                            events.extend(within)
            for i in range(0, len(rest), 256):
                part = self.load(project, dimension, flt, session_id=rest[i : i + 256])
                events.extend(part.events)
            return self._journeys(Loaded(names, events))

        found = reader.stats(
            names,
            since=flt.since,
            until=flt.until,
            segments=[(k, _segment_values(v)) for k, v in flt.segments],
            now=now,
            dropoff_timeout_s=self.settings.dropoff_timeout_s,
            exact=exact,
        )
        return None if found is None else (Loaded(names), found[0])

    def transitions(self, project: str, dimension: str | None, flt: JourneyFilter) -> dict:
        body, stats = self.stats(project, dimension, flt)
        return {
            **body,
            "transitions": stats.transition_table(),
            "follow_ups": stats.follow_ups(),
            "back_and_forth": stats.back_and_forth_summary(),
            "median_seconds_between_steps": stats.median_seconds_between_steps,
        }

    def paths(self, project: str, dimension: str | None, flt: JourneyFilter, top: int) -> dict:
        body, stats = self.stats(project, dimension, flt)
        return {**body, "paths": stats.top_paths(top)}

    def entries(self, project: str, dimension: str | None, flt: JourneyFilter) -> dict:
        body, stats = self.stats(project, dimension, flt)
        return {**body, "entries": stats.entry_table()}

    def dropoffs(self, project: str, dimension: str | None, flt: JourneyFilter) -> dict:
        body, stats = self.stats(project, dimension, flt)
        return {
            **body,
            "dropoff_timeout_s": self.settings.dropoff_timeout_s,
            "dropped_sessions": sum(stats.dropped.values()),
            "dropoffs": [asdict(r) for r in stats.dropoff_table()],
        }

    # -- for the dashboard: step-indexed flows, a session's messages ----------------------

    def flows(self, project: str, dimension: str | None, flt: JourneyFilter, steps: int) -> dict:
        """A Sankey's nodes and links over the first ``steps`` steps (``journey_flows``)."""
        body, stats = self.stats(project, dimension, flt)
        return {**body, "steps": steps, **step_flows(stats.paths, steps)}

    def session_messages(
        self,
        project: str,
        session_id: str,
        dimension: str,
        flt: JourneyFilter,
        steps: list[dict[str, Any]],
    ) -> list[dict[str, Any]]:
        """The session's events in journey order (time, then id) with their text, current
        topic and the number of the step (of ``steps``, a ``session`` answer) they fall in;
        ``step`` is null for events before the first step or between steps (noise)."""
        names = self.queries.dimension(project, dimension)
        exact: dict[str, Any] = {"session_id": session_id}
        if flt.theme is not None:
            exact["mc"] = self._theme_members(names, flt.theme)
            if not exact["mc"]:
                return []
        store_filter = self._filter(flt, **exact)
        if store_filter is None or not self.store.has_collection(names.events):
            return []
        topic_map = self.queries.topic_map(names)
        topic_of = _memo(topic_map)
        step_of = {eid: s["step"] for s in steps for eid in s.get("event_ids", ())}
        payloads: list[dict[str, Any]] = []
        for page in self._pages(names, store_filter):
            payloads.extend(page[: self.max_events - len(payloads)])
            if len(payloads) >= self.max_events:
                break
        payloads.sort(key=lambda p: (p["ts"], p["event_id"]))
        return [
            {
                "event_id": p["event_id"],
                "timestamp": _iso(p["ts"]),
                "name": p.get("name"),
                "text": p.get("text"),
                "topic": topic_of(p["mc"]),
                "theme": topic_map.theme_of(topic_of(p["mc"])),
                "step": step_of.get(p["event_id"]),
            }
            for p in payloads
        ]
