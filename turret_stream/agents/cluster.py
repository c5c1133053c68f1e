"""The cluster agent: the one owner of each (project, dimension)'s topics.

Its input, the texts topic, is keyed by project:dimension, so every text of a dimension
reaches the same agent instance, in order (a message holds one embed batch's texts of one
dimension: ``TextBatch``). The instance keeps a DimensionOwner per
dimension it has seen, hands it each batch, and publishes where every event landed on
the assignments topic: one ``AssignmentBatch`` per partition, sent to the partition its
sessions' keys (project:session_id) hash to, for the session actors.

One bad text never stops the line: when a dimension's batch fails, its owner is dropped
(so it comes back from its last saved state, not from a half-applied batch) and the
batch is retried text by text; a text that fails twice alone goes to the dead-letters
topic. A project has at most ``limits.max_text_dimensions`` text dimensions: the values
of a further text key stay on the events as context (``metadata``) and the key is
listed in the catalog as ``capped``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence

import faust

from turret_stream import dead_letters
from turret_stream.agents.partitions import KeyPartitions
from turret_stream.catalog import Catalog, dimension_names
from turret_stream.clustering.owner import DimensionOwner
from turret_stream.dimensions import FieldTypeTracker
from turret_stream.fencing import FencedStore, Lease, StaleOwner
from turret_stream.poison import PoisonEvent, carry_problem
from turret_stream.progress import ProgressReports
from turret_stream.records import (
    AssignmentBatch,
    DeadLetter,
    EmbeddedText,
    TextBatch,
    TopicAssignment,
    TopicEvent,
    dimension_key,
    event_key,
)
from turret_stream.settings import Settings
from turret_stream.storage import VectorStore

log = logging.getLogger(__name__)

# Text keys over the cap listed per project (GET /v1/dimensions); beyond, only logged.
MAX_CAPPED_LISTED = 100


class Owners:
    """This worker's DimensionOwners, created (and restored from the store) on first use."""

    def __init__(self, store: VectorStore, settings: Settings, dim: int) -> None:
        self.store = store
        self.catalog = Catalog(store)
        self.settings = settings
        self.dim = dim
        self._owners: dict[tuple[str, str], DimensionOwner] = {}
        self._text_dims: dict[str, set[str]] = {}
        self._capped_keys: dict[str, set[str]] = {}
        self.capped_texts = 0  # texts not clustered because of the cap (for metrics)
        # Batches and timer ticks run in worker threads; one at a time touches owners.
        self._lock = threading.Lock()
        # Writes refused because another worker had taken the dimension over.
        self.stale_refused = 0
        # Tests and the pipeline benchmark watch assignments as they happen.
        self.listeners: list[Callable[[TopicAssignment], None]] = []
        self.topic_listeners: list[Callable[[TopicEvent], None]] = []

    def get(self, project: str, dimension: str) -> DimensionOwner:
        owner = self._owners.get((project, dimension))
        if owner is None:
            # Take the dimension over before reading its state: from here on an owner
            # elsewhere that missed its eviction can no longer write (fencing.py).
            lease = Lease(self.store, dimension_names(project, dimension).slug)
            lease.acquire()
            owner = DimensionOwner(
                FencedStore(self.store, lease),
                self.catalog,
                project,
                dimension,
                self.settings,
                self.dim,
            )
            self._owners[(project, dimension)] = owner
        return owner

    def _drop_stale(self, key: tuple[str, str], exc: StaleOwner) -> None:
        log.warning("stopped owning %s:%s: %s", key[0], key[1], exc)
        self._owners.pop(key, None)
        self.stale_refused += 1

    def process(self, items: Sequence[EmbeddedText]) -> list[TopicAssignment]:
        placed, failed = self.process_isolated(items)
        if failed:
            raise failed[0][1]
        return placed

    def process_isolated(
        self, items: Sequence[EmbeddedText]
    ) -> tuple[list[TopicAssignment], list[tuple[EmbeddedText, Exception]]]:
        """Learn a batch; returns the assignments and the texts that failed twice alone."""
        groups: dict[tuple[str, str], list[EmbeddedText]] = {}
        failed: list[tuple[EmbeddedText, Exception]] = []
        for item in items:
            problem = carry_problem(item.asdict(), "text")
            if problem is not None:  # found before any owner state changes
                failed.append((item, PoisonEvent(problem)))
                continue
            groups.setdefault((item.project, item.dimension), []).append(item)
        out: list[TopicAssignment] = []
        with self._lock:
            for (project, dimension), group in groups.items():
                try:
                    if self._capped(project, dimension, group):
                        continue
                    out.extend(self.get(project, dimension).process(group))
                    self._note_type(project, dimension)
                except StaleOwner as exc:
                    # Its partition moved: the new owner gets these texts redelivered.
                    self._drop_stale((project, dimension), exc)
                except Exception as exc:
                    log.warning(
                        "dimension %s:%r failed on %d texts (%r): one by one",
                        project,
                        dimension,
                        len(group),
                        exc,
                    )
                    self._one_by_one(project, dimension, group, out, failed)
        return out, failed

    def _one_by_one(
        self,
        project: str,
        dimension: str,
        group: list[EmbeddedText],
        out: list[TopicAssignment],
        failed: list[tuple[EmbeddedText, Exception]],
    ) -> None:
        # A failed batch left the owner at its last committed state (it reloads it), so
        # each text is learned again, alone; one already committed is skipped as seen.
        for item in group:
            for attempt in (1, 2):
                try:
                    out.extend(self.get(project, dimension).process([item]))
                    break
                except StaleOwner as exc:
                    self._drop_stale((project, dimension), exc)
                    return
                except Exception as exc:
                    if attempt == 2:
                        failed.append((item, exc))

    # -- the cap on text dimensions per project -----------------------------------------

    def _tracker(self, project: str, dimension: str) -> FieldTypeTracker:
        """A copy of the key's type tracker, to try values on (no owner is created)."""
        owner = self._owners.get((project, dimension))
        if owner is not None:
            state = owner.tracker.to_dict()
        else:
            entry = self.catalog.dimension(project, dimension)
            if entry is None or not entry.get("tracker"):
                return FieldTypeTracker(project, dimension, self.settings.dimensions)
            state = entry["tracker"]
        return FieldTypeTracker.from_dict(state, self.settings.dimensions)

    def _text_dimensions(self, project: str) -> set[str]:
        known = self._text_dims.get(project)
        if known is None:
            known = {d.key for d in self.catalog.dimensions(project) if d.type == "text"}
            self._text_dims[project] = known
        return known

    def _note_type(self, project: str, dimension: str) -> None:
        owner = self._owners.get((project, dimension))
        if owner is not None and owner.tracker.type == "text":
            self._text_dimensions(project).add(dimension)

    def _capped(self, project: str, dimension: str, group: list[EmbeddedText]) -> bool:
        """True when this key would become one text dimension too many for its project;
        such a key is recorded in the catalog and its texts are not clustered."""
        known = self._text_dimensions(project)
        limit = self.settings.limits.max_text_dimensions
        if dimension in known or len(known) < limit:
            return False
        probe = self._tracker(project, dimension)
        for item in group:
            probe.observe(item.text)
        if probe.type != "text":
            return False
        listed = self._capped_keys.get(project)
        if listed is None:
            found = self.catalog.dimensions(project)
            listed = self._capped_keys[project] = {d.key for d in found if d.type == "capped"}
        # Listed up to a bound: a client inventing key names cannot grow the catalog.
        if dimension not in listed and len(listed) < MAX_CAPPED_LISTED:
            listed.add(dimension)
            self.catalog.save_capped(project, dimension)
            log.warning(
                "project %s: key %r not clustered: already %d text dimensions "
                "(limits.max_text_dimensions)",
                project,
                dimension,
                limit,
            )
        self.capped_texts += len(group)
        return True

    def tick(self) -> int:
        """Recluster every owner that is due; returns how many did."""
        # A batch in progress reclusters on its own when due: do not queue behind it.
        if not self._lock.acquire(blocking=False):
            return 0
        try:
            now = time.time()
            done = 0
            for key, owner in list(self._owners.items()):
                try:
                    done += owner.tick(now)
                except StaleOwner as exc:
                    self._drop_stale(key, exc)
            return done
        finally:
            self._lock.release()

    def take_topic_events(self) -> list[TopicEvent]:
        """The topic events of the owners' committed batches since the last call."""
        with self._lock:
            return [e for owner in self._owners.values() for e in owner.take_topic_events()]

    def clear(self) -> None:
        """Forget in-memory owners (after a rebalance a dimension may have moved to
        another worker; if it comes back, its owner is restored from the store)."""
        with self._lock:
            for (project, key), owner in self._owners.items():
                try:  # figures batched since the last write (a fenced write is refused)
                    owner.write_figures()
                except Exception as exc:
                    log.warning("topic figures of %s:%s not written: %r", project, key, exc)
            self._owners.clear()
            self._text_dims.clear()


def unpack(messages: Sequence[TextBatch | EmbeddedText]) -> list[EmbeddedText]:
    """The texts of the texts topic's messages, in order. A lone ``EmbeddedText`` is what
    a worker before ``TextBatch`` sent: left on the topic by an upgrade, it still counts."""
    out: list[EmbeddedText] = []
    for message in messages:
        if isinstance(message, EmbeddedText):
            out.append(message)
            continue
        try:
            out.extend(message.texts())
        except Exception as exc:  # not written by an embed agent: skipped like bad JSON
            log.warning("skipped a malformed message on the texts topic: %r", exc)
    return out


def register_cluster_agent(
    app: faust.App,
    texts: faust.TopicT,
    assignments: faust.TopicT,
    owners: Owners,
    dead: faust.TopicT,
    progress: ProgressReports | None = None,
    topic_events: faust.TopicT | None = None,
) -> None:
    async def announce() -> list:
        """Send the owners' topic events (keyed project:dimension, in order)."""
        if topic_events is None:
            owners.take_topic_events()
            return []
        events = await asyncio.to_thread(owners.take_topic_events)
        sent = []
        for e in events:
            sent.append(await topic_events.send(key=dimension_key(e.project, e.dimension), value=e))
            for listener in owners.topic_listeners:
                listener(e)
        return sent

    @app.on_partitions_revoked.connect
    async def forget_owners(app: faust.App, revoked: object, **_: object) -> None:
        await asyncio.to_thread(owners.clear)

    # Check often; each owner reclusters only when due (a pause of recluster_interval_s
    # after its last batch, or recluster_max_wait_s since its last reclustering).
    tick = min(0.5, owners.settings.clustering.recluster_interval_s / 4)

    @app.timer(tick, name="turret.recluster")
    async def recluster_idle() -> None:
        await asyncio.to_thread(owners.tick)
        await asyncio.gather(*await announce())

    # About 256 texts per owner batch, as the embed agent's messages hold a batch each.
    per_take = max(1, 256 // owners.settings.embedding.batch_size)
    partition_of = KeyPartitions(app, assignments)
    max_bytes = owners.settings.kafka.batch_message_bytes

    async def publish(placed: list[TopicAssignment]) -> list:
        """Send the assignments as one message per partition (in event order within it)."""
        by_partition: dict[int, list[TopicAssignment]] = {}
        for a in placed:
            partition = await partition_of(event_key(a.project, a.session_id))
            by_partition.setdefault(partition, []).append(a)
        sent = []
        for partition, group in by_partition.items():
            key = event_key(group[0].project, group[0].session_id)
            for message in AssignmentBatch.split(group, max_bytes):
                sent.append(await assignments.send(key=key, value=message, partition=partition))
        for a in placed:
            for listener in owners.listeners:
                listener(a)
        return sent

    @app.agent(texts, name="turret.cluster")
    async def cluster(stream: faust.StreamT[TextBatch | EmbeddedText]) -> None:
        async for messages in stream.take(per_take, within=0.05):
            batch = unpack(messages)
            placed, failed = await asyncio.to_thread(owners.process_isolated, batch)
            sent = await publish(placed)
            letters: list[DeadLetter] = []
            for item, exc in failed:
                log.warning("text of event %s dead-lettered: %r", item.event_id, exc)
                letters.append(dead_letters.from_text(item, exc))
            for letter in letters:
                sent.append(await dead.send(key=letter.project.encode(), value=letter))
            sent += await announce()
            # Delivered before take() acknowledges the batch's texts.
            await asyncio.gather(*sent)
            if progress is not None:
                failed_ids = {id(item) for item, _ in failed}
                for item in batch:
                    if id(item) not in failed_ids:
                        progress.clustered(item.event_id)
