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
from turret_stream.embedding.pool import PooledEmbedder, cores
from turret_stream.http.app import create_app
from turret_stream.http.keys import WorkerProbe
from turret_stream.http.server import ApiRunner
from turret_stream.keys import KeyStore
from turret_stream.preflight import check_broker, check_store
from turret_stream.producer import ensure_topic
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
    notes: list[str] = field(default_factory=list)


def embed_processes(settings: Settings) -> int:
    """Processes that run the model: the setting, or by default one per two cores."""
    wanted = settings.worker.embed_processes
    return wanted if wanted > 0 else max(1, cores() // 2)


def open_worker_embedder(settings: Settings) -> Embedder:
    """The worker's model: in this process, or in a pool of ``embed_processes`` processes
    sharing the cores (``embedding.threads`` each, or an equal share)."""
    processes = embed_processes(settings)
    if processes == 1:
        return open_embedder(settings.embedding)
    threads = settings.embedding.threads or max(1, cores() // processes)
    return PooledEmbedder(settings.embedding, processes, threads)


@contextlib.asynccontextmanager
async def running_worker(
    settings: Settings, store: VectorStore, embedder: Embedder
) -> AsyncIterator[Topology]:
    """The Faust app started inside this event loop; stopped on exit."""
    topology = build_topology(settings, store, embedder)
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
        if worker:
            stack.embedder = await asyncio.to_thread(open_worker_embedder, settings)
            if isinstance(stack.embedder, PooledEmbedder):
                exits.callback(stack.embedder.close)
            stack.topology = await exits.enter_async_context(
                running_worker(settings, stack.store, stack.embedder)
            )
        if api:
            stack.keystore = KeyStore(settings.keys_db_path)
            exits.callback(stack.keystore.close)
            probe = _worker_running(stack.topology) if stack.topology else None
            app = create_app(
                settings,
                keystore=stack.keystore,
                worker_probe=probe,
                store=stack.store,
                embedder=stack.embedder,
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
