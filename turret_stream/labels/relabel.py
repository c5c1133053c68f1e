"""The `labels relabel` command: rename every topic of one dimension now.

Fallback labels for all topics at once (a person's labels stay), then, when Ollama is
configured, one LLM round per topic, largest first, reporting each as it finishes. It opens
the store itself, so with the in-process (edge) store the worker must be stopped first.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from turret_stream.agents.labels import Labeller, LlmJob, LlmProgress, make_ollama
from turret_stream.errors import TurretError
from turret_stream.labels.naming import Decision
from turret_stream.queries import NotFound, Queries
from turret_stream.settings import Settings
from turret_stream.storage import StorageLocked, VectorStore, open_store


class RelabelError(TurretError):
    """The dimension cannot be relabelled (no such dimension, store in use, Ollama down)."""


@dataclass(frozen=True)
class RelabelSummary:
    topics: int
    progress: LlmProgress
    llm: bool

    def line(self) -> str:
        if not self.llm:
            return f"{self.topics} topics named by the offline labeller (no Ollama configured)"
        p = self.progress
        times = sorted(p.seconds)
        median = f", {times[len(times) // 2]:.1f}s per label (median)" if times else ""
        return (
            f"{self.topics} topics: {p.llm} named by the LLM, {p.kept} kept the offline name "
            f"(it identifies the topic better), {p.failed} failed (offline name kept){median}"
        )


def _open(settings: Settings) -> VectorStore:
    if settings.storage.backend == "edge" and not settings.qdrant_path.exists():
        raise RelabelError(f"no vector store in {settings.data_dir} (check --data-dir)")
    try:
        return open_store(settings)
    except StorageLocked:
        raise RelabelError(
            f"the vector store in {settings.data_dir} is in use by a running turret-stream "
            "(`up` or `worker`); only one process may open it. Stop it first: the running "
            "worker relabels topics itself as they grow or move."
        ) from None


def run_relabel(
    settings: Settings,
    project: str,
    dimension: str,
    *,
    on_start: Callable[[int], None] = lambda total: None,
    on_done: Callable[[LlmJob, Decision | None], None] = lambda job, decision: None,
) -> RelabelSummary:
    """Relabel ``project``'s ``dimension``; ``on_start(n)`` then ``on_done`` per LLM round."""
    store = _open(settings)
    try:
        try:
            names = Queries(store).dimension(project, dimension)
        except NotFound as exc:
            raise RelabelError(str(exc)) from None
        ollama = make_ollama(settings.labels)
        embedder = None
        if ollama is not None:
            from turret_stream.embedding import open_embedder

            embedder = open_embedder(settings.embedding)
        labeller = Labeller(store, settings.labels, ollama, embedder)
        jobs = labeller.scan_dimension(names, time.time(), force=True)

        async def ask() -> None:
            try:
                health = await ollama.health()
                if not health.ok:
                    raise RelabelError(f"Ollama at {ollama.host}: {health.detail}")
                on_start(len(jobs))
                labeller.enqueue(jobs, start=False)
                await labeller.drain(on_done)
            finally:
                await ollama.aclose()

        if ollama is not None and jobs:
            asyncio.run(ask())
        return RelabelSummary(
            len(jobs), labeller.progress.get(names.slug, LlmProgress()), ollama is not None
        )
    finally:
        store.close()
