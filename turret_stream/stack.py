"""Runs the pieces of turret-stream in one process: the embedded broker, the Faust worker
and the HTTP API, in that order, and stops them in reverse on Ctrl-C / SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import web

from turret_stream.broker import EmbeddedBroker
from turret_stream.embedding import Embedder, open_embedder
from turret_stream.embedding.base import cores
from turret_stream.embedding.pool import PooledEmbedder
from turret_stream.http.app import create_app
from turret_stream.http.keys import WorkerProbe
from turret_stream.http.server import ApiRunner
from turret_stream.journal import Journal
from turret_stream.keys import KeyStore
from turret_stream.preflight import check_broker, check_store
from turret_stream.producer import EventPublisher, ensure_topic
from turret_stream.progress import PipelineProgress
from turret_stream.settings import Settings
from turret_stream.storage import VectorStore, open_store
from turret_stream.topology import Topology, build_topology, topic_names

log = logging.getLogger(__name__)

# Longest wait for the Faust worker to stop before the process leaves anyway.
STOP_TIMEOUT_S = 15.0


@dataclass
class RunningStack:
    settings: Settings
    api_url: str | None = None
    broker: EmbeddedBroker | None = None
    topology: Topology | None = None
    keystore: KeyStore | None = None
    store: VectorStore | None = None
    embedder: Embedder | None = None
    journal: Journal | None = None
    progress: PipelineProgress | None = None
    publisher: EventPublisher | None = None
    notes: list[str] = field(default_factory=list)


def embed_processes(settings: Settings) -> int:
    """Processes that run the model: the setting, or by default one per core (at most
    8): on 2 cores, 2 processes of 1 thread beat 1 of 2 threads (README, *Pipeline*)."""
    wanted = settings.worker.embed_processes
    return wanted if wanted > 0 else max(1, min(cores(), 8))


def open_worker_embedder(settings: Settings) -> Embedder:
    """The worker's model: in this process, or in a pool of ``embed_processes`` processes
    sharing the cores (``embedding.threads`` each, or an equal share), at the lower CPU
    priority ``worker.model_nice``."""
    processes = embed_processes(settings)
    if processes == 1:
        return open_embedder(settings.embedding)
    threads = settings.embedding.threads or max(1, cores() // processes)
    return PooledEmbedder(settings.embedding, processes, threads, settings.worker.model_nice)


@contextlib.asynccontextmanager
async def running_worker(
    settings: Settings,
    store: VectorStore,
    embedder: Embedder,
    progress: PipelineProgress | None = None,
) -> AsyncIterator[Topology]:
    """The Faust app started inside this event loop; stopped on exit."""
    topology = build_topology(settings, store, embedder, progress=progress)
    # Declare every topic with its partition count before any consumer joins.
    k = settings.kafka
    for name in topic_names(settings):
        await ensure_topic(settings.bootstrap_servers, name, k.partitions, k.replication_factor)
    await ensure_topic(settings.bootstrap_servers, k.workers_topic, 1, k.replication_factor)
    await topology.app.start()
    try:
        yield topology
    finally:
        try:
            await asyncio.wait_for(topology.app.stop(), STOP_TIMEOUT_S)
        except TimeoutError:
            log.warning("worker did not stop within %ss; leaving anyway", STOP_TIMEOUT_S)


def _worker_running(topology: Topology) -> WorkerProbe:
    async def probe() -> bool:
        app = topology.app
        return bool(app.started and not app.should_stop and not app.crashed)

    return probe


@contextlib.asynccontextmanager
async def running_stack(
    settings: Settings, *, broker: bool, worker: bool, api: bool
) -> AsyncIterator[RunningStack]:
    stack = RunningStack(settings)
    async with contextlib.AsyncExitStack() as exits:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        if broker:
            stack.broker = EmbeddedBroker(
                settings.kafka.embedded_host,
                settings.kafka.embedded_port,
                log_file=settings.data_dir / "broker.log",
            )
            await exits.enter_async_context(stack.broker)
        # Fail at start, in one line, rather than serve what cannot be honoured.
        await check_broker(settings)
        if worker or api:
            # One store per process: the in-process engine allows one opener per data
            # dir, so the API reads through the same object the worker writes.
            stack.store = open_store(settings)
            exits.callback(stack.store.close)
            await check_store(stack.store, settings)
        if api and worker and settings.journal_enabled:
            # Taken before anything is served: the journal is this data dir's entry point.
            # Only with the worker in this process: it is what confirms journaled events.
            stack.journal = Journal(
                settings.journal_path,
                settings.pipeline.journal_segment_bytes,
                fsync=settings.pipeline.journal_fsync,
            )
            pending = stack.journal.open()
            exits.push_async_callback(stack.journal.close)
        if api and worker:
            # API and worker share this process: lag is counted in it (back-pressure).
            stack.progress = PipelineProgress()
        if worker:
            stack.embedder = await asyncio.to_thread(open_worker_embedder, settings)
            if isinstance(stack.embedder, PooledEmbedder):
                exits.callback(stack.embedder.close)
            stack.topology = await exits.enter_async_context(
                running_worker(settings, stack.store, stack.embedder, stack.progress)
            )
        if api:
            stack.publisher = EventPublisher(
                settings.bootstrap_servers,
                settings.kafka,
                journal=stack.journal,
                progress=stack.progress,
                pipeline=settings.pipeline,
            )
            exits.push_async_callback(stack.publisher.close)
        if stack.journal is not None and stack.publisher is not None:
            if stack.progress is not None:
                stack.progress.note_seq(stack.journal.confirmed)
            if pending:
                log.info("replaying %d journaled events into the broker", len(pending))
                await stack.publisher.replay(pending)
            exits.push_async_callback(_drain, stack)
            stop_checkpoints = asyncio.Event()
            checkpoints = asyncio.create_task(_checkpoint_loop(stack, stop_checkpoints))
            exits.push_async_callback(_stop_loop, stop_checkpoints, checkpoints)
        if api:
            stack.keystore = KeyStore(settings.keys_db_path, settings.http.auth_cache_s)
            exits.callback(stack.keystore.close)
            probe = _worker_running(stack.topology) if stack.topology else None
            app = create_app(
                settings,
                keystore=stack.keystore,
                worker_probe=probe,
                store=stack.store,
                embedder=stack.embedder,
                publisher=stack.publisher,
            )
            # The access log carries no headers; ApiRunner answers parse errors as JSON
            # without echoing (or logging) the request bytes.
            runner = ApiRunner(app)
            await runner.setup()
            exits.push_async_callback(runner.cleanup)
            site = web.TCPSite(runner, settings.http.host, settings.http.port)
            await site.start()
            host, port = runner.addresses[0][:2]
            stack.api_url = f"http://{host}:{port}"
        yield stack


async def _checkpoint(stack: RunningStack, stop: asyncio.Event | None = None) -> None:
    """Confirm in the journal what the worker has stored: flush the store first, so that a
    confirmed event is on disk there before it leaves the journal. With ``stop`` (the
    periodic checkpoint, not the one at shutdown), one collection at a time, each after a
    quiet moment on /track (``_quiet_moment``)."""
    journal, progress = stack.journal, stack.progress
    assert journal is not None
    if progress is None:
        return  # no worker here to confirm anything: replay it all next time
    # Everything up to ``upto`` was written to the store before the flushes below start.
    upto = progress.confirmed_seq()
    if upto <= journal.confirmed:
        return
    if stack.store is not None:
        if stop is None:
            await asyncio.to_thread(stack.store.flush)
        else:
            give_up = (
                asyncio.get_running_loop().time() + stack.settings.pipeline.checkpoint_max_delay_s
            )
            for name in await asyncio.to_thread(stack.store.written_since_flush):
                await _quiet_moment(stack, stop, give_up)
                await asyncio.to_thread(stack.store.flush, [name])
    await asyncio.to_thread(journal.confirm, upto)


async def _quiet_moment(stack: RunningStack, stop: asyncio.Event, give_up: float) -> None:
    """Return once /track has had no request for ``pipeline.checkpoint_quiet_s``, or at
    loop time ``give_up``, or on stop. The edge store's flush holds the GIL (measured:
    35-105 ms per written collection, README *Durability and back-pressure*), so a flush
    in the middle of traffic stalls every request in flight."""
    p = stack.settings.pipeline
    publisher = stack.publisher
    if publisher is None or p.checkpoint_quiet_s <= 0:
        return
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        now = loop.time()
        quiet_until = publisher.last_request_at + p.checkpoint_quiet_s
        if now >= quiet_until or now >= give_up:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), min(quiet_until, give_up) - now)


async def _checkpoint_loop(stack: RunningStack, stop: asyncio.Event) -> None:
    interval = stack.settings.pipeline.checkpoint_interval_s
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
            return
        try:
            await _checkpoint(stack, stop)
        except Exception:
            log.exception("journal checkpoint failed; retrying in %ss", interval)


async def _stop_loop(stop: asyncio.Event, task: asyncio.Task[None]) -> None:
    # Not cancelled: a checkpoint in progress finishes (its file writes run in a thread).
    stop.set()
    await task


async def _drain(stack: RunningStack) -> None:
    """On stop, after the API stopped taking events: give the worker up to
    ``pipeline.drain_timeout_s`` to finish what was accepted, then confirm it. Whatever is
    left stays in the journal and is replayed on the next start."""
    progress = stack.progress
    if progress is not None:
        deadline = asyncio.get_running_loop().time() + stack.settings.pipeline.drain_timeout_s
        while progress.lag and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        if progress.lag:
            log.warning("stopping with %d events still in the journal", progress.lag)
    await _checkpoint(stack)


async def wait_for_stop_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
