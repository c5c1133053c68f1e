"""Session actors: one table row per project:session_id, owned by the sessions agent.

The agent reads where each event landed (the assignments topic: a message holds a cluster
batch's assignments of one partition, sent to the partition of their sessions' keys, so a
session's events arrive in order at one agent instance) and follows each session's topic
per dimension. A change of topic is a transition, published on the transitions topic for
the live feed: a message's transitions of one partition as one ``TransitionBatch``.

A switch needs evidence: the session moves from topic A to B once ``min_switch_events``
consecutive events land in B (events without a topic neither count nor break the run),
so one short reply that happens to land elsewhere ("yes, at 7 pm please") does not count
as leaving A. Events in a neutral topic (one that keeps company with every kind of topic,
flagged by the cluster owner: ``clustering/context.py``) count like noise. The rule has
one implementation, ``journeys.follow_topic``, which stored journeys follow too.

Table rows live in Faust's changelog; after a restart of the embedded broker (whose log
is in memory) a session unknown to the table is rebuilt from the event store.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

import faust

from turret_stream.agents.partitions import KeyPartitions
from turret_stream.catalog import dimension_names
from turret_stream.clustering.topic_map import TopicMapReader
from turret_stream.journey_owner import JourneyOwner
from turret_stream.journeys import JourneyEvent, follow_topic, session_path
from turret_stream.labels.book import LabelBook
from turret_stream.records import (
    AssignmentBatch,
    TopicAssignment,
    Transition,
    TransitionBatch,
    event_key,
)
from turret_stream.storage import Filter, VectorStore

log = logging.getLogger(__name__)

# (project, dimension, session_id, event) -> the session's topic before that event and the
# number of its steps, as the event store knows them (None: a new session).
Bootstrap = Callable[[str, str, str, TopicAssignment], tuple[str, int] | None]


def store_bootstrap(store: VectorStore, min_switch: int) -> Bootstrap:
    """Rebuild a session's current topic from its stored events earlier than ``event``
    (its journey's last step, by the same rule) through the dimension's topic map."""
    topic_maps = TopicMapReader(store)

    def find(
        project: str, dimension: str, session_id: str, event: TopicAssignment
    ) -> tuple[str, int] | None:
        names = dimension_names(project, dimension)
        if not store.has_collection(names.events):
            return None
        records, _ = store.scroll(
            names.events,
            filter=Filter(
                must={"session_id": session_id}, ranges={"ts": (None, event.received_at)}
            ),
            limit=10_000,
        )
        earlier = [
            JourneyEvent(r.id, session_id, "", r.payload["ts"], r.payload["mc"])
            for r in records
            if r.id != event.event_id
        ]
        topic_map = topic_maps.get(names)
        steps = session_path(earlier, topic_map.topic_of, min_switch, topic_map.neutral)
        return (steps[-1].topic, len(steps)) if steps else None

    return find


def advance(state: dict[str, Any], a: TopicAssignment, min_switch: int) -> Transition | None:
    """Apply one assignment to a session's state for its dimension; the transition it
    causes, if any (by ``journeys.follow_topic``, the rule stored journeys follow too).
    ``state`` is the session's row for that dimension (mutated)."""
    state["user_id"] = a.user_id
    previous_at = state.get("last_step_at")
    state["last_at"] = max(a.received_at, state.get("last_at") or 0.0)
    moved = follow_topic(state, a.topic, a.neutral, min_switch, [a.event_id, a.received_at])
    if moved is None:
        return None
    event_id, at = moved.mark
    first = moved.source is None
    step = 1 if first else state.get("step", 1) + 1
    transition = _transition(a, moved.source, moved.target, step, None if first else previous_at)
    # The step starts at the first event of the run that made it.
    transition.event_id, transition.at = event_id, at
    state.update(step=step, last_step_at=at)
    return transition


def _transition(
    a: TopicAssignment, source: str | None, target: str, step: int, previous_at: float | None
) -> Transition:
    return Transition(
        project=a.project,
        dimension=a.dimension,
        session_id=a.session_id,
        user_id=a.user_id,
        from_topic=source,
        to_topic=target,
        from_label=None,
        to_label=None,
        step=step,
        event_id=a.event_id,
        at=a.received_at,
        previous_at=previous_at,
        segments=a.segments,
    )


# (project, dimension, topic) -> the topic's current label, or None.
LabelOf = Callable[[str, str, str], str | None]


def store_labels(book: LabelBook, ttl_s: float = 5.0) -> LabelOf:
    """Labels from the label book, cached briefly (one store read per named topic per ttl)."""
    cache: dict[tuple[str, str, str], tuple[float, str | None]] = {}

    def label_of(project: str, dimension: str, topic: str) -> str | None:
        key = (project, dimension, topic)
        hit = cache.get(key)
        now = time.monotonic()
        if hit is not None and now - hit[0] < ttl_s:
            return hit[1]
        found = book.labels(dimension_names(project, dimension), [topic]).get(topic)
        if found is None:
            return None  # not named yet: ask again next time rather than cache the miss
        cache[key] = (now, found.name)
        return found.name

    return label_of


def unpack(message: AssignmentBatch | TopicAssignment) -> list[TopicAssignment]:
    """The assignments a message of the assignments topic holds, in order. A lone
    ``TopicAssignment`` is what a worker before ``AssignmentBatch`` sent: left on the topic
    by an upgrade, it still counts."""
    if isinstance(message, TopicAssignment):
        return [message]
    try:
        return message.assignments()
    except Exception as exc:  # not written by a cluster agent: skipped like bad JSON
        log.warning("skipped a malformed message on the assignments topic: %r", exc)
        return []


PARTITION = ""  # the row key holding the row's partition (metadata keys are never empty)


class IdleSessions:
    """Which session rows have been idle past the drop-off timeout, per partition.

    Rows are kept in order of last activity per partition; each partition's clock is
    the latest event time seen on it (stream time, so a replay of old events expires
    rows as the live stream would). A row can only be deleted while an event of its own
    partition is processed (Faust writes the tombstone to that changelog partition), so
    :meth:`touch` returns the idle rows of the event's partition only. Expiring a row
    loses nothing: a session that comes back is rebuilt from the event store
    (``store_bootstrap``), and the journeys and their aggregates come from stored events.
    """

    def __init__(self, idle_after_s: float) -> None:
        self.idle_after_s = idle_after_s
        self._rows: dict[int, OrderedDict[str, float]] = {}
        self._clock: dict[int, float] = {}

    def __len__(self) -> int:
        return sum(len(rows) for rows in self._rows.values())

    def index(self, rows: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """Learn the rows a restarted worker got back from the table's changelog."""
        found: list[tuple[float, int, str]] = []
        for key, row in rows:
            partition = row.get(PARTITION)
            if partition is None:
                continue
            last = max(
                (d.get("last_at") or 0.0 for k, d in row.items() if k != PARTITION), default=0.0
            )
            found.append((last, int(partition), key))
        for last, partition, key in sorted(found):
            self._rows.setdefault(partition, OrderedDict())[key] = last

    def touch(self, partition: int, key: str, at: float) -> list[str]:
        """Record activity of ``key``; the other rows of ``partition`` now idle too long."""
        rows = self._rows.setdefault(partition, OrderedDict())
        last = max(at, rows.pop(key, float("-inf")))
        rows[key] = last
        clock = self._clock[partition] = max(self._clock.get(partition, at), at)
        idle: list[str] = []
        while rows:
            oldest, oldest_at = next(iter(rows.items()))
            if oldest == key or oldest_at >= clock - self.idle_after_s:
                break
            del rows[oldest]
            idle.append(oldest)
        return idle


class FlushBeforeCommit(faust.Sensor):
    """Writes the journey books before the consumer commits offsets: an event whose
    offset is committed is in the stored session paths, so a worker killed at any point
    loses nothing (what it had not committed is redelivered, and a redelivered event
    makes its session rebuild from the event store: counted once)."""

    def __init__(self, journeys: JourneyOwner) -> None:
        super().__init__()
        self.journeys = journeys

    def on_commit_initiated(self, consumer: Any) -> Any:
        self.journeys.flush(force=True)
        return None


def register_sessions_agent(
    app: faust.App,
    assignments: faust.TopicT,
    transitions: faust.TopicT,
    min_switch: int,
    bootstrap: Bootstrap | None = None,
    listeners: list[Callable[[Transition], None]] | None = None,
    label_of: LabelOf | None = None,
    idle_after_s: float | None = None,
    journeys: JourneyOwner | None = None,
    max_bytes: int = 512 * 1024,
) -> faust.Table:
    """The sessions agent; with ``idle_after_s`` (the drop-off timeout) rows of sessions
    idle that long are deleted, so the table holds the active sessions only. With
    ``journeys`` it also keeps the journey aggregates (``journey_owner``): each event
    updates its session's compact path and cell; a timer re-derives after topic map
    changes and writes what changed. A message's transitions leave as one
    ``TransitionBatch`` per partition, of at most about ``max_bytes``
    (``kafka.batch_message_bytes``)."""
    sessions = app.Table("turret-sessions", default=dict, partitions=assignments.partitions)
    listeners = listeners if listeners is not None else []
    idle = IdleSessions(idle_after_s) if idle_after_s else None
    indexed = False

    if journeys is not None:

        @app.timer(journeys.flush_interval_s, name="turret.journeys")
        async def keep_journeys() -> None:
            for slot in journeys.rederive_due():
                for _ in journeys.rederive(slot):
                    await asyncio.sleep(0)  # events and the API go on between batches
            await asyncio.to_thread(journeys.flush)

        app.sensors.add(FlushBeforeCommit(journeys))

        @app.on_partitions_revoked.connect
        async def forget_revoked(app: faust.App, revoked: set[Any], **_: Any) -> None:
            mine = {tp.partition for tp in revoked if tp.topic == assignments.get_topic_name()}
            if mine:
                await asyncio.to_thread(journeys.forget, mine)

    def bootstrap_all(found: list[TopicAssignment]) -> list[tuple[str, int] | None]:
        assert bootstrap is not None
        return [bootstrap(a.project, a.dimension, a.session_id, a) for a in found]

    def name_moves(moves: list[Transition]) -> None:
        assert label_of is not None
        for moved in moves:
            moved.to_label = label_of(moved.project, moved.dimension, moved.to_topic)
            if moved.from_topic is not None:
                moved.from_label = label_of(moved.project, moved.dimension, moved.from_topic)

    partition_of = KeyPartitions(app, transitions)

    async def publish(moves: list[Transition]) -> None:
        """Send the moves as one message per partition of their sessions (in order)."""
        by_partition: dict[int, list[Transition]] = {}
        for moved in moves:
            partition = await partition_of(event_key(moved.project, moved.session_id))
            by_partition.setdefault(partition, []).append(moved)
        for partition, group in by_partition.items():
            key = event_key(group[0].project, group[0].session_id)
            for message in TransitionBatch.split(group, max_bytes):
                await transitions.send(key=key, value=message, partition=partition)
        for moved in moves:
            for listener in listeners:
                listener(moved)

    @app.agent(assignments, name="turret.sessions")
    async def follow(stream: faust.StreamT[AssignmentBatch | TopicAssignment]) -> None:
        nonlocal indexed
        async for message in stream:
            batch = unpack(message)
            if not batch:
                continue
            event = stream.current_event
            partition = event.message.partition if event is not None else 0
            if idle is not None and not indexed:
                idle.index((k, dict(v)) for k, v in sessions.items())
                indexed = True
            # The message's sessions, each read once and written once.
            rows: dict[str, dict[str, Any]] = {}
            states: dict[tuple[str, str], dict[str, Any]] = {}
            unknown: list[tuple[tuple[str, str], TopicAssignment]] = []
            for a in batch:
                key = f"{a.project}:{a.session_id}"
                if key not in rows:
                    rows[key] = dict(sessions[key])
                    rows[key][PARTITION] = partition
                if (key, a.dimension) not in states:
                    state = states[(key, a.dimension)] = dict(rows[key].get(a.dimension) or {})
                    if not state and bootstrap is not None:
                        unknown.append(((key, a.dimension), a))
            if unknown:  # sessions new to the table: rebuilt from the event store
                found = await asyncio.to_thread(bootstrap_all, [a for _, a in unknown])
                for (slot, _), known in zip(unknown, found, strict=True):
                    if known is not None:
                        states[slot].update(topic=known[0], step=known[1])
            moves = []
            for a in batch:
                moved = advance(states[(f"{a.project}:{a.session_id}", a.dimension)], a, min_switch)
                if moved is not None:
                    moves.append(moved)
            if journeys is not None:
                await asyncio.to_thread(journeys.observe_all, partition, batch)
            for (key, dimension), state in states.items():
                rows[key][dimension] = state
            for key, row in rows.items():
                sessions[key] = row
            if idle is not None:
                for a in batch:
                    key = f"{a.project}:{a.session_id}"
                    for gone in idle.touch(partition, key, a.received_at):
                        if gone in sessions:
                            del sessions[gone]
            if moves and label_of is not None:
                await asyncio.to_thread(name_moves, moves)
            await publish(moves)

    return sessions
