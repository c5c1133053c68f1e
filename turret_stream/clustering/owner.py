"""DimensionOwner: the single owner of one (project, dimension).

The cluster agent keeps one per (project, metadata key) it is assigned. The owner types
the key from its values, clusters its texts, keeps every event in the event store with
its vector and micro-cluster, maintains one point per topic with its figures and the
dimension's topic map (``topic_map.py``, with the topics' themes: ``themes.py``), counts
each topic's events per enum segment value (``platform=mobile``) as they arrive, and after
every batch writes what the batch
changed of its learned state (``owner_state.py``: one log record per batch, compacted
into checkpoints), so a restarted or moved worker resumes from it, even after a kill
in the middle of a batch.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from turret_stream.catalog import Catalog, DimensionNames, EnumKeys, dimension_names
from turret_stream.clustering.context import SessionContext, neutral_of
from turret_stream.clustering.mc_stats import McStats, Segment
from turret_stream.clustering.model import TopicModel
from turret_stream.clustering.owner_state import Changes, OwnerStateStore, State
from turret_stream.clustering.store_index import StoreIndex
from turret_stream.clustering.themes import ThemeRegistry
from turret_stream.clustering.topic_events import EXAMPLES, TopicAnnouncer, TopicView
from turret_stream.clustering.topic_map import TopicMap, TopicMapStore
from turret_stream.clustering.topic_series import TopicSeries
from turret_stream.clustering.topics import TopicChange, TopicRegistry
from turret_stream.dimensions import FieldTypeTracker, classify_value
from turret_stream.faults import crash_point
from turret_stream.labels.book import LabelBook
from turret_stream.records import EmbeddedText, TopicAssignment, TopicEvent, decode_vector
from turret_stream.settings import Settings
from turret_stream.storage import Filter, Point, VectorStore

log = logging.getLogger(__name__)

# The session context (up to journeys.context_sessions sessions) is written at most this
# often: it is statistics, and rewriting it at every reclustering would cost more than
# relearning a minute of it after a crash.
CONTEXT_SAVE_INTERVAL_S = 60.0
# Which metadata keys are enum segments is each key's own owner's decision, read from the
# catalog, re-read at most this often; a key the catalog does not know yet is typed by its
# value as a new key's first events are routed (``dimensions.classify_value``).
SEGMENT_TYPES_TTL_S = 5.0


# A topic sums its micro-clusters' counts as they are: no cap of its own.
NO_CAP = 1 << 62


@dataclass
class TopicFigures:
    """A topic's figures for its point: summed over its micro-clusters at each
    reclustering (and restart), then kept up to date event by event in between, so a
    batch costs what it touched, not the size of its topics."""

    size: int = 0
    micro_clusters: int = 0
    stats: McStats | None = None

    def add_event(self, t: float, segments: Iterable[Segment] = ()) -> None:
        """``segments``: the values its micro-cluster counted."""
        self.size += 1
        if self.stats is None:
            self.stats = McStats(t, t)
        self.stats.add(t, segments, NO_CAP)

    def add_micro_cluster(self, count: int, stats: McStats | None) -> None:
        self.micro_clusters += 1
        self.size += count
        if stats is not None:
            if self.stats is None:
                self.stats = stats.copy()
            else:
                self.stats.merge(stats, NO_CAP)


@dataclass
class PersistCost:
    """What the last batch wrote of the owner's state (for the scale benchmark)."""

    bytes: int = 0  # state log, topic map, checkpoint (if one was due), centres
    seconds: float = 0.0  # the whole commit, reclustering included
    reclustered: bool = False
    log_bytes: int = 0  # the batch's log record alone
    centres: int = 0  # centres written
    # Of ``seconds``, the reclustering's own computing (topics, neutral topics, themes,
    # topic figures): learning, not persisting; the rest is what writing costs.
    recluster_seconds: float = 0.0


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


# No index on event_id: events are read by their point id, never filtered on it, and a
# keyword index of unique ids was 40% of the store's memory per event (README *Scale*).
EVENT_INDEXES = {
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
        self.records = OwnerStateStore(
            store, self.names, settings.clustering.checkpoint_min_kb * 1024
        )
        self.topic_maps = TopicMapStore(store)
        # Each assignment carries its event's enum segments (for the journey aggregates).
        self.enum_keys = EnumKeys(catalog, settings.dimensions.segment_recheck_s)
        self.last_persist = PersistCost()
        self.clock: Callable[[], float] = time.monotonic  # paces topic point writes
        self.announcer = TopicAnnouncer(project, key)
        self._label_book = LabelBook(store)
        # Topic events of committed batches, taken and published by the cluster agent.
        self.topic_events: list[TopicEvent] = []
        self._last_event_time: float | None = None
        self._load()

    # -- state ----------------------------------------------------------------------------

    def _load(self) -> None:
        """(Re)build the in-memory state from the committed records (the last checkpoint and
        the log after it; the last batch's writes after its commit are redone)."""
        settings = self.settings
        entry = self.catalog.dimension(self.project, self.key)
        self.tracker = (
            FieldTypeTracker.from_dict(entry["tracker"], settings.dimensions)
            if entry
            else FieldTypeTracker(self.project, self.key, settings.dimensions)
        )
        self.events = entry["events"] if entry else 0
        self.model: TopicModel | None = None
        self.index: StoreIndex | None = None
        # Topics whose figures grew since their points were last written (``clock`` time).
        self._topics_due: set[str] = set()
        self._topics_written = -math.inf
        self.seq = 0
        self.base_version = 0
        self.communities: list[list[int]] = []
        # The dedupe window: its ids, and the same ids per batch, oldest batch first (so a
        # checkpoint takes the window as it is, without walking 200,000 ids).
        self.seen: set[str] = set()
        self._seen_batches: deque[tuple[int, list[str]]] = deque()
        self._seen_count = 0
        self.stats: dict[int, McStats] = {}
        self.figures: dict[str, TopicFigures] = {}
        self._key_types: tuple[float, dict[str, str]] = (float("-inf"), {})
        # Each topic's centre as last written, with the members and size it was computed
        # from: between reclusterings a batch's touched topics are rewritten in one upsert
        # with these, and a reclustering recomputes only the centres of topics whose
        # members changed or that grew by a tenth (reading micro-cluster centres back
        # from the store was most of a reclustering's cost).
        self._centres: dict[str, tuple[np.ndarray, frozenset[int], int]] = {}
        journeys = settings.journeys
        self.context = SessionContext(journeys.context_sessions)
        self.neutral: frozenset[str] = frozenset()
        self._context_saved_at = float("-inf")
        # Wall time of the last batch that brought new events: reclustering by time waits
        # for a pause after it (``ClusteringSettings.recluster_interval_s``).
        self._last_batch: float | None = None
        self._batch_texts: dict[int, list[str]] = {}
        # Micro-clusters whose counts the batch's log carries whole (new, or merged into);
        # the others carry only what the batch counted (``McStats.partial_record``).
        self._stats_whole: set[int] = set()
        state = self.records.load()
        if state.header is not None:
            self._restore(state)
        context = self.catalog.load_state(self.names, part="context")
        if context is not None:
            self.context = SessionContext.from_blob(context, journeys.context_sessions)

    def _restore(self, state: State) -> None:
        h = state.header
        assert h is not None
        self.seq = state.seq
        self.tracker = FieldTypeTracker.from_dict(h["tracker"], self.settings.dimensions)
        self.events = int(h["events"])
        self.neutral = frozenset(h["neutral"])
        self.base_version = int(h["base"])
        for seq, ids in state.seen:
            self.seen.update(ids)
            self._seen_batches.append((seq, ids))
            self._seen_count += len(ids)
        self._trim_seen()
        self._save_catalog()  # derived: the last batch may have stopped before it
        if h["clock"] is None:
            return
        base = self.topic_maps.base(self.names, self.base_version) if self.base_version else None
        registry = TopicRegistry.from_record(base) if base else TopicRegistry()
        for mc, topic in state.assigned.items():
            if topic is None:
                registry.mapping.pop(mc, None)
            else:
                registry.mapping[mc] = topic
        registry.assigned_since = dict(state.assigned)
        model = self._ensure_model()
        model.load_records(
            h["clock"],
            state.micro_clusters.values(),
            state.absorbed,
            state.communities,
            registry,
            ThemeRegistry.from_record(base.get("themes") if base else None),
        )
        self.communities = state.communities
        self.stats = {mc: McStats.from_record(v) for mc, v in state.stats.items()}
        self._absorbed_since = dict(state.absorbed_since)
        self._logged_assigned = dict(state.assigned)
        # Only the last batch can have stopped between its commit and these writes:
        # redo them (idempotent).
        if state.last is not None:
            self._index().write(state.last.centres, state.last.removed)
        self._write_head()
        self.topic_maps.drop_bases_except(self.names, self.base_version)
        self._sum_figures()
        self._reconcile_topics()

    def _index(self) -> StoreIndex:
        if self.index is None:
            self.index = StoreIndex(self.store, self.names.mc, self.dim)
        return self.index

    def _ensure_model(self) -> TopicModel:
        if self.model is None:
            n = self.names
            # Events grow with history and are read far less than written: their vectors
            # and indexes stay on disk, in the OS page cache (issue 10: bounded memory).
            self.store.create_collection(
                n.events, self.dim, "cosine", indexes=EVENT_INDEXES, on_disk=True
            )
            self.store.create_collection(n.topics, self.dim, "cosine", indexes=TOPIC_INDEXES)
            self.model = TopicModel(self.settings.clustering, self._index())
            self._absorbed_since: dict[int, int | None] = {}
            self._logged_assigned: dict[int, str | None] = {}
        return self.model

    # -- the batch ------------------------------------------------------------------------

    def process(self, items: Sequence[EmbeddedText]) -> list[TopicAssignment]:
        """Learn a batch (events of this dimension, in order); returns where each landed.
        Events already learned (redeliveries, client retries) are skipped. If writing
        the state fails, the owner reloads its last committed state and re-raises (the
        batch was not acknowledged: it will come again)."""
        try:
            return self._process(items)
        except Exception:
            self._load()
            raise

    def _process(self, items: Sequence[EmbeddedText]) -> list[TopicAssignment]:
        out: list[TopicAssignment] = []
        points: list[Point] = []
        fresh: list[str] = []
        placed_in: dict[int, list[tuple[float, tuple[Segment, ...]]]] = {}
        cap = self.settings.clustering.segment_values_max
        self._batch_texts = {}
        self._stats_whole = set()
        for item in items:
            if item.event_id in self.seen:
                continue
            self.seen.add(item.event_id)
            fresh.append(item.event_id)
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
                self._stats_whole.add(placed.mc)
            segments = self._segments(item.metadata) if cap else ()
            counted = stats.add(item.received_at, segments, cap)
            placed_in.setdefault(placed.mc, []).append((item.received_at, counted))
            texts = self._batch_texts.setdefault(placed.mc, [])
            if len(texts) < EXAMPLES:
                texts.append(item.text)
            if self._last_event_time is None or item.received_at > self._last_event_time:
                self._last_event_time = item.received_at
            self.context.observe(item.session_id, placed.mc)
            self.events += 1
            points.append(Point(item.event_id, vector, event_payload(item, placed.mc)))
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
                    segments=self.enum_keys.segments(item.project, item.metadata),
                    neutral=placed.topic in self.neutral,
                )
            )
        if not fresh:
            return out
        if points:
            self.store.upsert(self.names.events, points)
        crash_point("events")
        self._commit(fresh, placed_in, time.time())
        return out

    def tick(self, now: float) -> bool:
        """Recluster if due (called on a timer, so the last events before a pause get
        their topics without waiting for more traffic), and write the topic figures
        still due. True if it reclustered."""
        if self.model is None:
            return False
        if not self.model.recluster_due(now, self._last_batch):
            self._write_due_topics()
            return False
        try:
            self._commit([], {}, now)
        except Exception:
            self._load()
            raise
        return True

    def _segments(self, metadata: dict[str, Any]) -> tuple[Segment, ...]:
        """The event's enum segment values (keys the catalog types ``enum``)."""
        read_at, types = self._key_types
        clock = time.monotonic()
        if clock - read_at >= SEGMENT_TYPES_TTL_S:
            types = {d.key: d.type for d in self.catalog.dimensions(self.project)}
            self._key_types = (clock, types)
        out = []
        for key, value in metadata.items():
            if key == self.key or value is None:
                continue
            kind = types.get(key) or classify_value(value, self.settings.dimensions)
            if kind == "enum":
                out.append((key, value if isinstance(value, str) else json.dumps(value)))
        return tuple(out)

    def _commit(
        self,
        fresh: list[str],
        placed_in: dict[int, list[tuple[float, tuple[Segment, ...]]]],
        now: float,
    ) -> None:
        """Persist what this batch changed (see owner_state.py for the protocol)."""
        started = time.perf_counter()
        recluster_seconds = 0.0
        seq = self.seq + 1
        changes = Changes(seq=seq, header={}, seen=fresh)
        written = 0
        topic_changes: list = []
        touched_topics: set[str] = set()
        reclustered = False
        model = self.model
        if model is not None:
            assert self.index is not None
            cap = self.settings.clustering.segment_values_max
            for mc, placed in placed_in.items():
                topic = model.topic_of(mc)
                if topic is not None:
                    figures = self.figures.setdefault(topic, TopicFigures())
                    for t, segments in placed:
                        figures.add_event(t, segments)
                    touched_topics.add(topic)
            if fresh:
                self._last_batch = now
            reclustered = model.recluster_due(now, self._last_batch)
            if reclustered:
                learning = time.perf_counter()
                topic_changes = model.recluster(now)
                self._update_neutral()
                # Themes group the topics by their centres (those written for the topic
                # points, recomputed only where stale: not a read of every centre).
                self._refresh_centres()
                model.regroup_themes({t: c[0] for t, c in self._centres.items()}, now)
                recluster_seconds = time.perf_counter() - learning
            touched, removed = model.take_dirty()
            stats_dirty = set(placed_in)
            whole, self._stats_whole = self._stats_whole, set()
            for mc in removed:  # absorbed micro-clusters hand their counts to their new home
                gone = self.stats.pop(mc, None)
                home = model.engine.resolve(mc)
                if gone is not None and home is not None:
                    home_stats = self.stats.setdefault(home, McStats(gone.first, gone.last))
                    home_stats.merge(gone, cap)
                    stats_dirty.add(home)
                    whole.add(home)
            engine = model.engine
            live = engine.micro_clusters
            changes.micro_clusters = [engine.micro_cluster_record(mc) for mc in sorted(touched)]
            changes.stats = {
                mc: self.stats[mc].to_record()
                if mc in whole
                else self.stats[mc].partial_record(
                    [t for t, _ in placed_in[mc]], [s for _, segs in placed_in[mc] for s in segs]
                )
                for mc in sorted(stats_dirty)
                if mc in live and mc in self.stats
            }
            moved, deleted = self.index.pending()
            changes.centres = moved
            changes.removed = sorted(set(removed) | deleted)
            changes.absorbed = {mc: engine.absorbed.get(mc) for mc in removed}
            if reclustered:
                base = TopicMap.base_record(
                    seq,
                    model.registry.to_record(),
                    engine.absorbed,
                    self.neutral,
                    model.themes.to_record(),
                )
                written += self.topic_maps.write_base(self.names, base)
                changes.communities = self.communities = model.communities_record()
                self._absorbed_since = {}
            else:
                assigned = model.registry.assigned_since
                changes.assigned = {
                    mc: t for mc, t in assigned.items() if self._logged_assigned.get(mc, 0) != t
                }
                self._absorbed_since.update(changes.absorbed)
            self._logged_assigned = dict(model.registry.assigned_since)
            crash_point("shadow")
        base_version = seq if reclustered else self.base_version
        changes.header = self._header(base_version)
        log_bytes = self.records.commit(changes)
        written += log_bytes
        # Committed. What follows is redone at a restart, or derived, or clean-up.
        self.seq = seq
        previous_base, self.base_version = self.base_version, base_version
        if model is not None:
            assert self.index is not None
            self.index.write(changes.centres, changes.removed)
            written += 4 * self.dim * len(changes.centres)
            crash_point("centres")
            if reclustered or changes.assigned or changes.absorbed:
                written += self._write_head()
            crash_point("topic-map")
            if reclustered and previous_base:
                self.topic_maps.drop_base(self.names, previous_base)
        if fresh:
            self._seen_batches.append((seq, fresh))
            self._seen_count += len(fresh)
            self._trim_seen()
        if model is not None:
            if reclustered:
                learning = time.perf_counter()
                self._sum_figures()
                recluster_seconds += time.perf_counter() - learning
                retired = [c for c in topic_changes if c.kind in ("merged", "retired")]
                self._write_topics(retired=retired)
                self._topics_due.clear()
                self._topics_written = self.clock()
            elif touched_topics:
                self._topics_due |= touched_topics
                self._write_due_topics()
        crash_point("topics")
        if model is not None:
            self._announce(topic_changes, touched_topics, placed_in)
        self._save_catalog()
        if self.records.compaction_due():
            written += self.records.checkpoint(self._whole_state())
        self.last_persist = PersistCost(
            written,
            time.perf_counter() - started,
            reclustered,
            log_bytes,
            len(changes.centres),
            recluster_seconds,
        )
        if reclustered and model is not None:
            model.recluster_cost = self.last_persist.seconds

    def _announce(
        self,
        changes: Sequence[TopicChange],
        touched: set[str],
        placed_in: dict[int, list[tuple[float, tuple[Segment, ...]]]],
    ) -> None:
        """Queue the topic events of a committed batch (births, splits, merges, spikes)."""
        events = self.announcer.changes(changes, self._describe, self._last_event_time)
        if placed_in:
            newest = max(t for placed in placed_in.values() for t, _ in placed)
            counted = {
                t: (f.stats.hours, f.stats.first)
                for t in touched
                if (f := self.figures.get(t)) is not None and f.stats is not None
            }
            events += self.announcer.counts(counted, newest, self._describe)
        self.topic_events.extend(events)

    def _describe(self, topics: Sequence[str]) -> dict[str, TopicView]:
        assert self.model is not None
        labels = self._label_book.labels(self.names, list(topics))
        members = self.model.topics()
        batch: dict[str, list[str]] = {}
        for mc, texts in self._batch_texts.items():
            topic = self.model.topic_of(mc)
            if topic is not None:
                batch.setdefault(topic, []).extend(texts)
        out = {}
        for topic in topics:
            f = self.figures.get(topic)
            stats = f.stats if f is not None else None
            label = labels.get(topic)
            out[topic] = TopicView(
                size=f.size if f is not None else 0,
                label=label.name if label is not None else None,
                examples=self._examples(batch.get(topic, []), members.get(topic)),
                hours=stats.hours if stats is not None else {},
                first_seen=stats.first if stats is not None else None,
            )
        return out

    def _examples(self, batch: list[str], mcs: set[int] | None) -> list[str]:
        """The batch's texts of the topic first (what is happening now), then stored ones."""
        out = list(dict.fromkeys(batch))[:EXAMPLES]
        if len(out) < EXAMPLES and mcs:
            records, _ = self.store.scroll(
                self.names.events, filter=Filter(must={"mc": sorted(mcs)}), limit=2 * EXAMPLES
            )
            for r in records:
                text = r.payload.get("text", "")
                if text not in out and len(out) < EXAMPLES:
                    out.append(text)
        return out

    def take_topic_events(self) -> list[TopicEvent]:
        events, self.topic_events = self.topic_events, []
        return events

    def _save_catalog(self) -> None:
        self.catalog.save_dimension(
            self.project,
            self.key,
            self.tracker.type,
            self.tracker.decided,
            self.tracker.to_dict(),
            self.events,
        )

    def _header(self, base_version: int) -> dict[str, Any]:
        """The owner's scalars, as every log record and checkpoint carries them."""
        return {
            "format": 2,
            "clock": self.model.clock_record() if self.model is not None else None,
            "tracker": self.tracker.to_dict(),
            "events": self.events,
            "neutral": sorted(self.neutral),
            "base": base_version,
        }

    def _write_head(self) -> int:
        """The topic map head: what changed since the base in use."""
        if self.model is None:
            return 0
        head = TopicMap.head_record(
            self.base_version,
            self.seq,
            self.model.registry.assigned_since,
            self._absorbed_since,
            self.neutral,
        )
        return self.topic_maps.write_head(self.names, head)

    def _whole_state(self) -> State:
        """Everything, as a checkpoint holds it (the dedupe window's batches only)."""
        state = State(
            seq=self.seq, header=self._header(self.base_version), seen=list(self._seen_batches)
        )
        model = self.model
        if model is not None:
            engine = model.engine
            state.micro_clusters = {
                m: engine.micro_cluster_record(m) for m in engine.micro_clusters
            }
            state.stats = {mc: s.to_record() for mc, s in self.stats.items()}
            state.absorbed = dict(engine.absorbed)
            state.communities = model.communities_record()
            state.assigned = dict(model.registry.assigned_since)
            state.absorbed_since = dict(self._absorbed_since)
        return state

    def _trim_seen(self) -> None:
        """Forget the oldest batches' ids while the rest still cover the window."""
        window = self.settings.clustering.dedupe_window_events
        while self._seen_batches and self._seen_count - len(self._seen_batches[0][1]) >= window:
            _, ids = self._seen_batches.popleft()
            self._seen_count -= len(ids)
            self.seen.difference_update(ids)

    def _update_neutral(self) -> None:
        """Re-learn which topics are neutral for journeys, through today's topics; the
        session context behind it is saved here (at most once a minute), not per batch."""
        assert self.model is not None
        journeys = self.settings.journeys
        if not journeys.neutral_topics:
            self.neutral = frozenset()
        else:
            self.neutral = neutral_of(
                self.context.presence(self.model.topic_of),
                min_sessions=journeys.neutral_min_sessions,
                min_topic_sessions=journeys.neutral_min_topic_sessions,
            )
        now = time.monotonic()
        if now - self._context_saved_at >= CONTEXT_SAVE_INTERVAL_S:
            self.catalog.save_state(self.names, self.context.to_blob(), part="context")
            self._context_saved_at = now

    # -- topics ---------------------------------------------------------------------------

    def _sum_figures(self) -> None:
        assert self.model is not None
        figures: dict[str, TopicFigures] = {}
        mcs = self.model.engine.micro_clusters
        for topic, members in self.model.topics().items():
            f = figures[topic] = TopicFigures()
            for m in members:
                if m in mcs:
                    f.add_micro_cluster(mcs[m].count, self.stats.get(m))
        self.figures = figures

    def _reconcile_topics(self) -> None:
        """After a restart: the topics collection is derived state, written after each
        commit; rewrite it from the model so a crash between the two leaves nothing
        stale (topics that were live but were merged or retired in the last batch)."""
        assert self.model is not None
        live = self.model.topics()
        stale = []
        if self.store.has_collection(self.names.topics):
            offset = None
            while True:
                records, offset = self.store.scroll(
                    self.names.topics,
                    filter=Filter(must={"status": "active"}),
                    limit=1024,
                    offset=offset,
                )
                stale += [r.id for r in records if r.id not in live]
                if offset is None:
                    break
        registry = self.model.registry
        retired = [
            TopicChange(
                "merged" if registry.successor.get(t) else "retired",
                t,
                time.time(),
                registry.successor.get(t),
            )
            for t in stale
        ]
        self._write_topics(retired=retired)

    @property
    def figures_pending(self) -> bool:
        """Some topics' figures grew since their points were written (they will be
        within ``topic_points_interval_s``)."""
        return bool(self._topics_due)

    def write_figures(self) -> None:
        """Write the topic figures still due now (before the owner is let go)."""
        self._write_due_topics(force=True)

    def _write_due_topics(self, force: bool = False) -> None:
        """Write the figures of the topics that grew since the last write, if
        ``topic_points_interval_s`` has passed since it. Topic points are derived state:
        what a crash leaves unwritten, the restart rewrites (``_reconcile_topics``)."""
        interval = self.settings.clustering.topic_points_interval_s
        if not self._topics_due:
            return
        if not force and self.clock() - self._topics_written < interval:
            return
        assert self.model is not None
        live = set(self.model.topics())
        self._write_topics(only=self._topics_due & live)
        self._topics_due.clear()
        self._topics_written = self.clock()

    def _write_topics(self, only: set[str] | None = None, retired: Sequence = ()) -> None:
        """Write topic points: all of them (``only`` None: after a reclustering or a
        restart; centres recomputed where ``_centre_current`` says so), or the ``only``
        topics' figures, in one upsert with their centres as last written (a topic
        without one yet gets its payload set alone)."""
        assert self.model is not None and self.index is not None
        registry = self.model.registry
        created = registry.created_at()
        points = []
        if only is None:
            members = self._refresh_centres()
            for topic in members:
                payload = self._topic_payload(topic, created.get(topic))
                points.append(Point(topic, self._centres[topic][0], payload))
        else:
            for topic in sorted(only):  # topics of placed events: live ones
                payload = self._topic_payload(topic, created.get(topic))
                known = self._centres.get(topic)
                if known is not None:
                    points.append(Point(topic, known[0], payload))
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

    def _refresh_centres(self) -> dict[str, frozenset[int]]:
        """Recompute the centres ``_centre_current`` says are stale, forget those of gone
        topics; returns each live topic's micro-clusters."""
        assert self.model is not None and self.index is not None
        members = {t: frozenset(m) for t, m in self.model.topics().items()}
        stale = [t for t, m in members.items() if not self._centre_current(t, m)]
        centres = self.index.centres({mc for t in stale for mc in members[t]})
        mcs = self.model.engine.micro_clusters
        for topic in stale:
            topic_mcs = members[topic]
            vecs = [centres[m] * mcs[m].count for m in topic_mcs if m in centres]
            centre = np.sum(vecs, axis=0) if vecs else np.zeros(self.dim)
            norm = np.linalg.norm(centre)
            centre = centre / norm if norm else centre + 1e-6
            self._centres[topic] = (centre, topic_mcs, self._size(topic))
        self._centres = {t: c for t, c in self._centres.items() if t in members}
        return members

    def _size(self, topic: str) -> int:
        figures = self.figures.get(topic)
        return figures.size if figures else 0

    def _centre_current(self, topic: str, members: frozenset[int]) -> bool:
        known = self._centres.get(topic)
        return known is not None and known[1] == members and self._size(topic) <= 1.1 * known[2]

    def _topic_payload(self, topic: str, created: float | None) -> dict[str, Any]:
        f = self.figures.get(topic) or TopicFigures()
        s = f.stats
        return {
            "topic": topic,
            "status": "active",
            "merged_into": None,
            "size": f.size,
            "micro_clusters": f.micro_clusters,
            "first_seen": s.first if s else None,
            "last_seen": s.last if s else None,
            # Events by hour, day and enum segment value, as one text (topic_series.py).
            **(TopicSeries(s.hours, s.days, s.segments) if s else TopicSeries()).to_payload(),
            "created_at": created,
            "neutral": topic in self.neutral,
            "updated_at": time.time(),
        }
