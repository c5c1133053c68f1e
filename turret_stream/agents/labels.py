"""The labeller: names topics off the hot path.

A Faust timer that runs on the leader worker only (one labeller per deployment) looks at
every text dimension every ``labels.interval_s``. A topic is (re)named when it has no
label yet, has grown ``relabel_growth`` times since it was named, or its centre moved
(cosine to the centre it was named at below ``relabel_min_similarity``); a topic a person
named is never touched. The offline c-TF-IDF label is written at once; when Ollama is
configured, an LLM label is then asked for in the background and replaces it if it
answers with a usable name. Ollama being slow or down never holds up anything else.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import faust
import numpy as np

from turret_stream.catalog import DimensionNames, dimension_names
from turret_stream.labels.book import Label, LabelBook
from turret_stream.labels.fallback import label_topics
from turret_stream.queries import Queries
from turret_stream.settings import LabelSettings
from turret_stream.storage import Filter, VectorStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LlmJob:
    names: DimensionNames
    topic: str
    examples: list[str]
    basis: dict[str, Any]


class Labeller:
    def __init__(self, store: VectorStore, settings: LabelSettings, ollama: Any = None) -> None:
        self.store = store
        self.settings = settings
        self.queries = Queries(store)
        self.book = LabelBook(store)
        self.ollama = ollama
        self._inflight: set[tuple[str, str]] = set()

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

    def _texts(self, names: DimensionNames, topic: str, centre: list[float]) -> list[str]:
        members = self.queries.topic_map(names).members(topic)
        if not members:
            return []
        hits = self.store.search(
            names.events,
            np.asarray(centre),
            self.settings.texts_per_topic,
            filter=Filter(must={"mc": members}),
        )
        return [h.payload["text"] for h in hits]

    def scan_dimension(self, names: DimensionNames, now: float) -> list[LlmJob]:
        """Write fallback labels for the topics that need one; return the LLM's work."""
        records = self.queries._topic_records(names, with_vectors=True)
        if not records:
            return []
        ids = [r.id for r in records]
        auto = self.book.automatic(names, ids)
        manual = self.book.manual_topics(names, ids)
        due = [r for r in records if r.id not in manual and self._due(r, auto.get(r.id))]
        if not due:
            return []
        # Every topic's texts: a label says what sets a topic apart from its neighbours.
        texts = {r.id: self._texts(names, r.id, r.vector) for r in records if r.vector}
        labels = label_topics({t: x for t, x in texts.items() if x}, representatives=texts)
        jobs = []
        for record in due:
            made = labels.get(record.id)
            if made is None:
                continue
            basis = {"size": record.payload.get("size", 0), "centre": record.vector}
            label = Label(made.name, made.description, "fallback", now)
            self.book.set_automatic(names, record.id, label, basis)
            examples = texts.get(record.id, [])[: self.settings.llm_examples]
            jobs.append(LlmJob(names, record.id, examples, basis))
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

    async def ask_llm(self, jobs: list[LlmJob]) -> None:
        if self.ollama is None:
            return
        for job in jobs:
            key = (job.names.slug, job.topic)
            if key in self._inflight:
                continue
            self._inflight.add(key)
            try:
                answer = await self.ollama.label(job.examples)
                if answer is None:
                    continue  # the fallback label stays
                manual = await asyncio.to_thread(self.book.manual_topics, job.names, [job.topic])
                if manual:
                    continue  # a person named it meanwhile
                label = Label(answer.name, answer.description, "llm", time.time(), answer.model)
                await asyncio.to_thread(
                    self.book.set_automatic, job.names, job.topic, label, job.basis
                )
            finally:
                self._inflight.discard(key)


def make_ollama(settings: LabelSettings) -> Any:
    if not settings.ollama_host:
        return None
    from turret_stream.labels.ollama import OllamaLabeller

    return OllamaLabeller(
        settings.ollama_host,
        settings.ollama_model,
        timeout_s=settings.ollama_timeout_s,
        max_concurrency=settings.ollama_max_concurrency,
        retries=settings.ollama_retries,
        backoff_s=settings.ollama_backoff_s,
        max_prompt_chars=settings.max_prompt_chars,
    )


def register_labeller(app: faust.App, labeller: Labeller) -> None:
    background: set[asyncio.Task] = set()

    @app.timer(labeller.settings.interval_s, on_leader=True, name="turret.labels")
    async def name_topics() -> None:
        jobs = await asyncio.to_thread(labeller.scan)
        if jobs and labeller.ollama is not None:
            # The LLM answers in its own time; the next scan does not wait for it.
            task = asyncio.create_task(labeller.ask_llm(jobs))
            background.add(task)
            task.add_done_callback(background.discard)
