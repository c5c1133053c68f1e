"""The model on several cores: an Embedder whose work runs in N processes.

``turret-stream up --workers N`` (``worker.embed_processes``) embeds through this pool. The
embed agent stays one Faust agent in the worker (so accepted-event accounting, the journal,
dead letters and ordering are unchanged); only the model's arithmetic moves: each batch's
texts are sorted by length, cut into chunks of a few texts of similar length
(``worker.embed_chunk_texts``), and handed to N processes longest first, each process
taking the next chunk when it is done, each with its share of the cores as ONNX Runtime
threads. One process with all the cores does not scale: the int8 model runs small
batches, and its intra-op threads mostly wait on each other (measured: README,
*Performance*).

Why chunks rather than one run per process: a run's cost grows with its longest text
(every text is padded to it), so N equal-count runs of sorted texts left the processes
with the short texts idle while the one with the long texts finished; on banking77 in
batches of 64, two processes embedded 237-258 texts/s that way and 276-347 in chunks of
4-12, longest first (README, *Pipeline*).

A child dies with its parent (PR_SET_PDEATHSIG); if one dies on its own, the pool is
rebuilt and the batch embedded again, so a crash costs a retry, never an event.

The children run at a lower CPU priority (``worker.model_nice``): the model can use every
idle cycle, but it never takes a core from the process that answers ``/track`` (the broker
and the API), so a backlog costs the API no latency (README, *Durability and
back-pressure*).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from turret_stream.embedding.base import Embedder
from turret_stream.settings import EmbeddingSettings

log = logging.getLogger(__name__)

_model: Embedder | None = None  # the model of this pool process


def _start_child(settings: EmbeddingSettings, nice: int) -> None:
    """Initializer of a pool process: die with the parent, yield the CPU to it, load the
    model once."""
    if nice:
        os.nice(nice)  # also the ONNX Runtime threads it starts below
    if sys.platform == "linux":
        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PDEATHSIG
    # The parent handles Ctrl-C and stops the pool itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    global _model
    from turret_stream.embedding.fastembed import FastEmbedder

    _model = FastEmbedder(settings)


def _embed_run(texts: list[str]) -> np.ndarray:
    assert _model is not None
    return _model.embed(texts)


class PooledEmbedder(Embedder):
    """``processes`` model processes, each with ``threads`` ONNX threads, at ``nice``
    (added to this process's niceness), given texts in chunks of ``chunk_texts``
    (``worker.embed_chunk_texts``: no default here, so every caller runs the setting's)."""

    def __init__(
        self,
        settings: EmbeddingSettings,
        processes: int,
        threads: int,
        nice: int = 0,
        *,
        chunk_texts: int,
    ) -> None:
        from turret_stream.embedding.fastembed import FastEmbedder

        if chunk_texts < 1:
            raise ValueError(f"chunk_texts must be at least 1, not {chunk_texts}")
        self.processes = processes
        self.nice = nice
        self.chunk_texts = chunk_texts
        self._child_settings = settings.model_copy(update={"threads": threads})
        # Loaded here too: the model's id and size, and a clear error at start (not in a
        # child) when the model cannot be loaded.
        probe = FastEmbedder(self._child_settings)
        self.model_id, self.dim = probe.model_id, probe.dim
        del probe
        self._lock = threading.Lock()
        self._executor = self._new_executor()

    def _new_executor(self) -> ProcessPoolExecutor:
        executor = ProcessPoolExecutor(
            max_workers=self.processes,
            # Not fork: the parent runs threads (Kafka, the event loop's helpers).
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_child,
            initargs=(self._child_settings, self.nice),
        )
        # Start every child now (each loads the model), not on the first batch.
        for f in [executor.submit(os.getpid) for _ in range(self.processes)]:
            f.result()
        return executor

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        chunks = length_chunks([len(t) for t in texts], self.chunk_texts)
        for attempt in (1, 2):
            with self._lock:
                executor = self._executor
            try:
                parts = list(executor.map(_embed_run, [[texts[i] for i in c] for c in chunks]))
                break
            except BrokenProcessPool:
                if attempt == 2:
                    raise
                log.warning("an embedding process died; starting the pool again")
                with self._lock:
                    if self._executor is executor:
                        executor.shutdown(wait=False, cancel_futures=True)
                        self._executor = self._new_executor()
        vectors = np.empty((len(texts), self.dim), dtype=np.float32)
        vectors[[i for chunk in chunks for i in chunk]] = np.concatenate(parts)
        return vectors

    @property
    def pids(self) -> list[int]:
        """The model processes' pids (/metrics). ProcessPoolExecutor keeps its processes
        by pid in ``_processes`` and has no public accessor. Read without ``_lock``: a
        rebuild holds it while the new processes load the model, and this is asked on
        an event loop; copying the dict's keys is one C call, atomic under the GIL."""
        processes = getattr(self._executor, "_processes", None) or {}
        return sorted(processes)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


def length_chunks(lengths: Sequence[int], size: int) -> list[list[int]]:
    """Indices of texts of these ``lengths`` in chunks of at most ``size``, of similar
    lengths (sorted), the longest chunk first: handed out in that order to whichever
    process is free, the costly chunks start first and the cheap ones fill the gaps
    (longest-processing-time-first scheduling)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i : i + size] for i in range(0, len(order), size)][::-1]
