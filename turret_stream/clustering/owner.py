"""DimensionOwner: the single owner of one (project, dimension).

The cluster agent keeps one per (project, metadata key) it is assigned. The owner types
the key from its values, clusters its texts, keeps every event in the event store with
its vector and micro-cluster, maintains one point per topic with its figures, and writes
its learned state after every batch, so a restarted or moved worker resumes from it.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from turret_stream.catalog import Catalog, DimensionNames, dimension_names
from turret_stream.clustering import snapshot
from turret_stream.clustering.context import SessionContext, neutral_topics
from turret_stream.clustering.model import TopicModel
from turret_stream.clustering.store_index import StoreIndex
from turret_stream.dimensions import FieldTypeTracker
from turret_stream.records import EmbeddedText, TopicAssignment, decode_vector
from turret_stream.settings import Settings
from turret_stream.storage import Point, VectorStore

log = logging.getLogger(__name__)

HOUR, DAY = 3600, 86400
KEEP_HOURS, KEEP_DAYS = 7 * 24, 90
SEEN_LIMIT = 200_000
# The session context (up to journeys.context_sessions sessions) is written at most this
# often: it is statistics, and rewriting it at every reclustering would cost more than
# relearning a minute of it after a crash.
CONTEXT_SAVE_INTERVAL_S = 60.0


@dataclass
class McStats:
    """Event counts of one micro-cluster over time (for topics' first/last seen and
    per-hour/day counts)."""

    first: float
    last: float
    hours: Counter[int] = field(default_factory=Counter)
    days: Counter[int] = field(default_factory=Counter)

    def add(self, t: float) -> None:
        self.first = min(self.first, t)
        self.last = max(self.last, t)
        self.hours[int(t // HOUR)] += 1
        self.days[int(t // DAY)] += 1
        self._prune()

    def merge(self, other: McStats) -> None:
        self.first = min(self.first, other.first)
        self.last = max(self.last, other.last)
        self.hours.update(other.hours)
        self.days.update(other.days)
        self._prune()

    def _prune(self) -> None:
        newest_hour, newest_day = int(self.last // HOUR), int(self.last // DAY)
        for h in [h for h in self.hours if h <= newest_hour - KEEP_HOURS]:
            del self.hours[h]
        for d in [d for d in self.days if d <= newest_day - KEEP_DAYS]:
            del self.days[d]

    def to_list(self) -> list[Any]:
        return [self.first, self.last, list(self.hours.items()), list(self.days.items())]

    @classmethod
    def from_list(cls, data: list[Any]) -> McStats:
        first, last, hours, days = data
        return cls(first, last, Counter(dict(hours)), Counter(dict(days)))


def event_payload(item: EmbeddedText, mc: int) -> dict[str, Any]:
    return {
        "event_id": item.event_id,
        "project": item.project,
        "dimension": item.dimension,
        "name": item.name,
        "text": item.text,
        "metadata": item.metadata,
        "session_id": item.session_id,
        "user_id": item.user_id,
        "ts": item.received_at,
        "mc": mc,
    }


EVENT_INDEXES = {
    "event_id": "keyword",
    "mc": "integer",
    "session_id": "keyword",
    "user_id": "keyword",
    "ts": "float",
}
TOPIC_INDEXES = {"status": "keyword", "size": "integer"}


class DimensionOwner:
    def __init__(
        self,
        store: VectorStore,
        catalog: Catalog,
        project: str,
        key: str,
        settings: Settings,
        dim: int,
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.settings = settings
        self.dim = dim
        self.names: DimensionNames = dimension_names(project, key)
        self.project, self.key = project, key
        entry = catalog.dimension(project, key)
        self.tracker = (
            FieldTypeTracker.from_dict(entry["tracker"], settings.dimensions)
            if entry
            else FieldTypeTracker(project, key, settings.dimensions)
        )
        self.events = entry["events"] if entry else 0
        self.model: TopicModel | None = None
        self.index: StoreIndex | None = None
        self.seen: OrderedDict[str, None] = OrderedDict()
        self.stats: dict[int, McStats] = {}
        journeys = settings.journeys
        self.context = SessionContext(journeys.context_sessions)
        self.neutral: frozenset[str] = frozenset()
        self._context_saved_at = float("-inf")
        blob = catalog.load_state(self.names)
        if blob is not None:
            self._restore(snapshot.loads(blob))
        context = catalog.load_state(self.names, part="context")
        if context is not None:
            self.context = SessionContext.from_list(
                snapshot.loads(context)["sessions"], journeys.context_sessions
            )

    # -- state ----------------------------------------------------------------------------

    def _ensure_model(self) -> TopicModel:
        if self.model is None:
            n = self.names
            self.store.create_collection(n.events, self.dim, "cosine", indexes=EVENT_INDEXES)
            self.store.create_collection(n.topics, self.dim, "cosine", indexes=TOPIC_INDEXES)
            self.index = StoreIndex(self.store, n.mc, self.dim)
            self.model = TopicModel(self.settings.clustering, self.index)
        return self.model

    def _restore(self, state: dict[str, Any]) -> None:
        if state.get("model") is not None:
            snapshot.restore_model(self._ensure_model(), state["model"])
        self.seen = OrderedDict.fromkeys(state.get("seen", []))
        self.stats = {int(k): McStats.from_list(v) for k, v in state.get("stats", [])}
        self.neutral = frozenset(state.get("neutral", []))

    def _save(self) -> None:
        state = {
            "model": snapshot.model_state(self.model) if self.model else None,
            "seen": list(self.seen),
            "stats": [[k, v.to_list()] for k, v in self.stats.items()],
            "neutral": sorted(self.neutral),
        }
        self.catalog.save_state(self.names, snapshot.dumps(state))
        self.catalog.save_dimension(
            self.project,
            self.key,
            self.tracker.type,
            self.tracker.decided,
            self.tracker.to_dict(),
            self.events,
        )

    # -- the batch ------------------------------------------------------------------------

    def process(self, items: Sequence[EmbeddedText]) -> list[TopicAssignment]:
        """Learn a batch (events of this dimension, in order); returns where each landed.
        Events already learned (redeliveries, client retries) are skipped."""
        out: list[TopicAssignment] = []
        points: list[Point] = []
        touched_topics: set[str] = set()
        for item in items:
            if item.event_id in self.seen:
                continue
            self.tracker.observe(item.text)
            # Provisional until min_observations values were seen (see dimensions.py).
            kind = self.tracker.type
            if kind != "text" or not item.vector:
                continue
            model = self._ensure_model()
            vector = decode_vector(item.vector)
            placed = model.learn(vector, item.received_at)
            stats = self.stats.get(placed.mc)
            if stats is None:
                stats = self.stats[placed.mc] = McStats(item.received_at, item.received_at)
            stats.add(item.received_at)
            self.context.observe(item.session_id, placed.mc)
            self._remember(item.event_id)
            self.events += 1
            points.append(Point(item.event_id, vector, event_payload(item, placed.mc)))
            if placed.topic:
                touched_topics.add(placed.topic)
            out.append(
                TopicAssignment(
                    event_id=item.event_id,
                    project=item.project,
                    dimension=item.dimension,
                    session_id=item.session_id,
                    user_id=item.user_id,
                    mc=placed.mc,
                    topic=placed.topic,
                    received_at=item.received_at,
                    neutral=placed.topic in self.neutral,
                )
            )
        if self.model is None:
            if items:
                self._save()
            return out
        assert self.index is not None
        _, removed = self.model.take_dirty()
        for mc in removed:  # absorbed micro-clusters hand their counts to their new home
            gone = self.stats.pop(mc, None)
            home = self.model.engine.resolve(mc)
            if gone is not None and home is not None:
                self.stats.setdefault(home, McStats(gone.first, gone.last)).merge(gone)
        self.index.flush()
        if points:
            self.store.upsert(self.names.events, points)
        now = time.time()
        if self.model.recluster_due(now):
            self._recluster(now)
        elif touched_topics:
            self._write_topics(only=touched_topics)
        self._save()
        return out

    def tick(self, now: float) -> bool:
        """Recluster if due (called on a timer, so the last events before a pause get
        their topics without waiting for more traffic). True if it reclustered."""
        if self.model is None or not self.model.recluster_due(now):
            return False
        self._recluster(now)
        self._save()
        return True

    def _recluster(self, now: float) -> None:
        assert self.model is not None
        changes = self.model.recluster(now)
        self._update_neutral()
        self._write_topics(retired=[c for c in changes if c.kind in ("merged", "retired")])

    def _update_neutral(self) -> None:
        """Re-learn which topics are neutral for journeys, through today's topics; the
        session context behind it is saved here (at most once a minute), not per batch."""
        assert self.model is not None
        journeys = self.settings.journeys
        if not journeys.neutral_topics:
            self.neutral = frozenset()
            return
        self.neutral = neutral_topics(
            self.context.topic_sets(self.model.topic_of),
            min_sessions=journeys.neutral_min_sessions,
            min_topic_sessions=journeys.neutral_min_topic_sessions,
        )
        now = time.monotonic()
        if now - self._context_saved_at >= CONTEXT_SAVE_INTERVAL_S:
            blob = snapshot.dumps({"sessions": self.context.to_list()})
            self.catalog.save_state(self.names, blob, part="context")
            self._context_saved_at = now

    def _remember(self, event_id: str) -> None:
        self.seen[event_id] = None
        if len(self.seen) > SEEN_LIMIT:
            self.seen.popitem(last=False)

    # -- topics ---------------------------------------------------------------------------

    def _write_topics(self, only: set[str] | None = None, retired: Sequence = ()) -> None:
        assert self.model is not None and self.index is not None
        members = self.model.topics()
        if only is not None:
            members = {t: m for t, m in members.items() if t in only}
        points = []
        with_centre = only is None  # centres are recomputed at reclustering only
        centres = (
            self.index.centres({mc for m in members.values() for mc in m}) if with_centre else {}
        )
        for topic, mcs in members.items():
            payload = self._topic_payload(topic, mcs)
            if with_centre:
                vecs = [
                    centres[m] * self.model.engine.micro_clusters[m].count
                    for m in mcs
                    if m in centres
                ]
                centre = np.sum(vecs, axis=0) if vecs else np.zeros(self.dim)
                norm = np.linalg.norm(centre)
                points.append(Point(topic, centre / norm if norm else centre + 1e-6, payload))
            else:
                self.store.set_payload(self.names.topics, [topic], payload)
        if points:
            self.store.upsert(self.names.topics, points)
        for change in retired:
            status = "merged" if change.kind == "merged" else "retired"
            self.store.set_payload(
                self.names.topics,
                [change.topic],
                {"status": status, "merged_into": change.other, "updated_at": change.at},
            )

    def _topic_payload(self, topic: str, mcs: set[int]) -> dict[str, Any]:
        assert self.model is not None
        stats = [self.stats[m] for m in mcs if m in self.stats]
        hours: Counter[int] = Counter()
        days: Counter[int] = Counter()
        for s in stats:
            hours.update(s.hours)
            days.update(s.days)
        created = next((c.at for c in self.model.registry.history if c.topic == topic), None)
        return {
            "topic": topic,
            "status": "active",
            "merged_into": None,
            "size": self.model.topic_size(mcs),
            "micro_clusters": len(mcs),
            "first_seen": min((s.first for s in stats), default=None),
            "last_seen": max((s.last for s in stats), default=None),
            "hours": sorted(hours.items()),
            "days": sorted(days.items()),
            "created_at": created,
            "neutral": topic in self.neutral,
            "updated_at": time.time(),
        }
