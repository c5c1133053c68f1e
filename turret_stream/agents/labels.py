"""The labeller: names topics off the hot path.

A Faust timer that runs on the leader worker only (one labeller per deployment) looks at
every text dimension every ``labels.interval_s``, and names its topics, then its themes
(``clustering/themes.py``) by the same rules, each level told apart from its own peers (a
theme's texts are the events nearest its centre among its topics'). A theme of one topic
is not named: it shows its topic's label. A topic is (re)named
when it has no
label yet, has grown ``relabel_growth`` times since it was named, or its centre moved
(cosine to the centre it was named at below ``relabel_min_similarity``); a topic a person
named is never touched. The offline c-TF-IDF label is written at once; when Ollama is
configured, the topic is queued for an LLM round (``labels.naming``: contrastive prompt,
candidates, the name that identifies the topic best wins). One background task works
the queue, largest topic first; a topic queued again while waiting keeps one place. Ollama
being slow or down never holds up anything else.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import faust
import numpy as np

from turret_stream.catalog import DimensionNames, dimension_names
from turret_stream.clustering.topic_events import TopicView, new_event
from turret_stream.embedding import Embedder
from turret_stream.labels.book import Label, LabelBook
from turret_stream.labels.fallback import TopicLabel, label_topics
from turret_stream.labels.naming import Decision, decide
from turret_stream.queries import Queries
from turret_stream.records import TopicEvent, dimension_key
from turret_stream.settings import LabelSettings
from turret_stream.storage import Filter, VectorStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LlmJob:
    names: DimensionNames
    topic: str
    examples: list[str]
    basis: dict[str, Any]
    fallback: TopicLabel | None = None
    level: str = "topic"  # or "theme"

    @property
    def size(self) -> int:
        return int(self.basis.get("size", 0))


@dataclass
class LlmProgress:
    """The LLM rounds of one dimension since the labeller started (for logs and the CLI)."""

    queued: int = 0
    llm: int = 0  # the model's name won
    kept: int = 0  # the fallback's name identified the topic better
    failed: int = 0  # no usable answer: the fallback stays
    seconds: list[float] = field(default_factory=list)

    @property
    def done(self) -> int:
        return self.llm + self.kept + self.failed


class Labeller:
    def __init__(
        self,
        store: VectorStore,
        settings: LabelSettings,
        ollama: Any = None,
        embedder: Embedder | None = None,
    ) -> None:
        if ollama is not None and embedder is None:
            raise ValueError("an LLM labeller needs the embedder to choose between names")
        self.store = store
        self.settings = settings
        self.queries = Queries(store)
        self.book = LabelBook(store)
        self.ollama = ollama
        self.embedder = embedder
        self.progress: dict[str, LlmProgress] = {}
        self._queue: dict[tuple[str, str], LlmJob] = {}
        self._worker: asyncio.Task | None = None
        # When the last scan started and what it cost (see scan_if_due).
        self._scanned_at = float("-inf")
        self._scan_cost = 0.0
        # topic_labelled events, published by the labeller's timer (register_labeller).
        self.topic_events: list[TopicEvent] = []

    def _labelled(
        self, names: DimensionNames, topic: str, name: str, size: int, examples: list[str]
    ) -> None:
        view = TopicView(size=size, label=name, examples=examples, hours={}, first_seen=None)
        self.topic_events.append(
            new_event(names.project, names.dimension, "topic_labelled", topic, view)
        )

    def take_topic_events(self) -> list[TopicEvent]:
        events, self.topic_events = self.topic_events, []
        return events

    def _due(self, record: Any, auto: dict[str, Any] | None) -> bool:
        if not auto or not auto.get("name"):
            return True
        basis = auto.get("basis") or {}
        size = record.payload.get("size", 0)
        if size >= self.settings.relabel_growth * max(1, basis.get("size", 0)):
            return True
        old, new = basis.get("centre"), record.vector
        if old is None or new is None:
            return False
        cos = float(np.dot(old, new) / (np.linalg.norm(old) * np.linalg.norm(new) or 1.0))
        return cos < self.settings.relabel_min_similarity

    def _records(self, names: DimensionNames, level: str) -> list[Any]:
        if level == "theme":
            return self.queries.theme_records(names)
        return self.queries._topic_records(names, with_vectors=True)

    def _members(self, names: DimensionNames, level: str, topic: str) -> list[int]:
        topic_map = self.queries.topic_map(names)
        if level == "theme":
            return [mc for t in topic_map.theme_topics(topic) for mc in topic_map.members(t)]
        return topic_map.members(topic)

    def _texts(
        self, names: DimensionNames, topic: str, centre: list[float], level: str = "topic"
    ) -> list[str]:
        members = self._members(names, level, topic)
        if not members:
            return []
        hits = self.store.search(
            names.events,
            np.asarray(centre),
            self.settings.texts_per_topic,
            filter=Filter(must={"mc": members}),
        )
        return [h.payload["text"] for h in hits]

    def scan_dimension(
        self, names: DimensionNames, now: float, *, force: bool = False
    ) -> list[LlmJob]:
        """Write fallback labels for the topics, then the themes, that need one (all but a
        person's with ``force``); return the LLM's work, largest first."""
        jobs = self._scan_level(names, now, "topic", force)
        jobs += self._scan_level(names, now, "theme", force)
        jobs.sort(key=lambda j: -j.size)
        return jobs

    def _scan_level(
        self, names: DimensionNames, now: float, level: str, force: bool
    ) -> list[LlmJob]:
        records = self._records(names, level)
        if not records:
            return []
        ids = [r.id for r in records]
        auto = self.book.automatic(names, ids)
        manual = self.book.manual_topics(names, ids)
        due = [r for r in records if r.id not in manual and (force or self._due(r, auto.get(r.id)))]
        if level == "theme":
            due = [r for r in due if len(r.payload["topics"]) > 1]
        if not due:
            return []
        # Every topic's texts: a label says what sets a topic apart from its neighbours.
        texts = {r.id: self._texts(names, r.id, r.vector, level) for r in records if r.vector}
        labels = label_topics({t: x for t, x in texts.items() if x}, representatives=texts)
        jobs = []
        written = []
        for record in due:
            made = labels.get(record.id)
            if made is None:
                continue
            basis = {"size": record.payload.get("size", 0), "centre": record.vector}
            label = Label(made.name, made.description, "fallback", now)
            written.append((record.id, label, basis))
            examples = texts.get(record.id, [])[: self.settings.llm_examples]
            before = auto.get(record.id) or {}
            if level == "topic" and before.get("name") != made.name:
                self._labelled(names, record.id, made.name, basis["size"], examples)
            jobs.append(LlmJob(names, record.id, examples, basis, made, level))
        # One read and one write for the scan's labels (the book packs each basis).
        self.book.set_automatic_many(names, written)
        return jobs

    def scan_if_due(self) -> list[LlmJob]:
        """``scan``, unless the last one was so recent that scanning now would take the
        labeller over ``labels.max_share`` of the time: the offline labels of a large
        dimension cost seconds, and they run on the worker's cores."""
        share = self.settings.max_share
        if time.monotonic() - self._scanned_at < self._scan_cost / share:
            return []
        self._scanned_at = time.monotonic()
        jobs = self.scan()
        self._scan_cost = time.monotonic() - self._scanned_at
        return jobs

    def scan(self) -> list[LlmJob]:
        now = time.time()
        jobs: list[LlmJob] = []
        for info in self.queries.catalog.all_dimensions():
            if info.type != "text" or not info.events:
                continue
            names = dimension_names(info.project, info.key)
            if self.store.has_collection(names.topics):
                jobs.extend(self.scan_dimension(names, now))
        return jobs

    # -- the LLM queue ----------------------------------------------------------------------

    def enqueue(self, jobs: list[LlmJob], *, start: bool = True) -> None:
        """Queue LLM rounds and (``start``) make sure one background task works them."""
        if self.ollama is None:
            return
        for job in jobs:
            key = (job.names.slug, job.topic)
            if key not in self._queue:
                self.progress.setdefault(job.names.slug, LlmProgress()).queued += 1
            self._queue[key] = job  # a newer scan's job replaces a waiting one
        if start and self._queue and (self._worker is None or self._worker.done()):
            self._worker = asyncio.create_task(self.drain())

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def drain(self, on_done: Callable[[LlmJob, Decision | None], None] | None = None) -> None:
        """Work the queue, largest topic first, until it is empty."""
        while self._queue:
            key = max(self._queue, key=lambda k: self._queue[k].size)
            job = self._queue.pop(key)
            try:
                decision = await self.name_with_llm(job)
            except Exception:  # one bad topic must not stop the others
                log.exception("LLM labelling of topic %s failed", job.topic)
                decision = None
            self._count(job, decision)
            if on_done is not None:
                on_done(job, decision)
        for slug, p in self.progress.items():
            log.info(
                "LLM labels of %s: %d of %d done (%d LLM names won, %d kept the offline name, "
                "%d failed)",
                slug,
                p.done,
                p.queued,
                p.llm,
                p.kept,
                p.failed,
            )

    async def ask_llm(self, jobs: list[LlmJob]) -> None:
        """Run the LLM rounds of ``jobs`` now (largest first) and return when all are done."""
        self.enqueue(jobs)
        if self._worker is not None:
            await self._worker

    def _count(self, job: LlmJob, decision: Decision | None) -> None:
        progress = self.progress.setdefault(job.names.slug, LlmProgress())
        if decision is None or decision.failed:
            progress.failed += 1
        elif decision.source == "llm":
            progress.llm += 1
        else:
            progress.kept += 1
        if decision is not None and decision.seconds:
            progress.seconds.append(decision.seconds)

    async def name_with_llm(self, job: LlmJob) -> Decision | None:
        """One topic's LLM round; writes the winner. None when the topic needs no name now."""
        if self.ollama is None or self.embedder is None or job.fallback is None:
            return None
        context = await asyncio.to_thread(self._context, job)
        if context is None:
            return None  # merged away, or a person named it
        centre, others, neighbours, taken = context
        decision = await decide(
            self.ollama,
            self.embedder,
            texts=job.examples,
            fallback=job.fallback,
            centre=centre,
            others=others,
            neighbours=neighbours,
            taken=taken,
            tolerance=self.settings.llm_margin_tolerance,
        )
        if decision.failed:
            return decision  # the fallback label written by the scan stays as it is
        manual = await asyncio.to_thread(self.book.manual_topics, job.names, [job.topic])
        if manual:
            return None  # a person named it meanwhile
        label = Label(
            decision.name,
            decision.description,
            decision.source,
            time.time(),
            decision.model if decision.source == "llm" else None,
            decision.note(),
        )
        await asyncio.to_thread(self.book.set_automatic, job.names, job.topic, label, job.basis)
        if job.level == "topic" and decision.name != job.fallback.name:
            self._labelled(job.names, job.topic, decision.name, job.size, job.examples)
        return decision

    def _context(self, job: LlmJob) -> tuple[np.ndarray, np.ndarray, list[str], list[str]] | None:
        """The topic's centre, the other topics' centres, the nearest ones' current names
        (nearest first) and every other topic's current name."""
        records = [r for r in self._records(job.names, job.level) if r.vector]
        mine = next((r for r in records if r.id == job.topic), None)
        if mine is None or self.book.manual_topics(job.names, [job.topic]):
            return None
        rest = [r for r in records if r.id != job.topic]
        centre = np.asarray(mine.vector, dtype=np.float32)
        others = np.asarray([r.vector for r in rest], dtype=np.float32).reshape(-1, len(centre))
        current = self.book.labels(job.names, [r.id for r in rest])
        order = np.argsort(-(others @ centre)) if len(rest) else np.array([], dtype=int)
        near = [rest[i].id for i in order[: self.settings.llm_neighbours]]
        neighbours = [current[t].name for t in near if t in current]
        taken = [label.name for label in current.values()]
        return centre, others, neighbours, taken


def make_ollama(settings: LabelSettings) -> Any:
    if not settings.ollama_host:
        return None
    from turret_stream.labels.ollama import OllamaLabeller

    return OllamaLabeller(
        settings.ollama_host,
        settings.ollama_model,
        timeout_s=settings.ollama_timeout_s,
        min_timeout_s=settings.ollama_min_timeout_s,
        timeout_factor=settings.ollama_timeout_factor,
        max_concurrency=settings.ollama_max_concurrency,
        retries=settings.ollama_retries,
        backoff_s=settings.ollama_backoff_s,
        max_prompt_chars=settings.max_prompt_chars,
        candidates=settings.llm_candidates,
    )


def register_labeller(
    app: faust.App, labeller: Labeller, topic_events: faust.TopicT | None = None
) -> None:
    @app.timer(labeller.settings.interval_s, on_leader=True, name="turret.labels")
    async def name_topics() -> None:
        jobs = await asyncio.to_thread(labeller.scan_if_due)
        # The LLM answers in its own time, in one background task; the next scan does not
        # wait for it (its names are announced at the next tick).
        labeller.enqueue(jobs)
        for event in labeller.take_topic_events():
            if topic_events is not None:
                await topic_events.send(
                    key=dimension_key(event.project, event.dimension), value=event
                )
