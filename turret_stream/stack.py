"""Runs the pieces of turret-stream: the embedded broker, the Faust worker and the HTTP
API, in that order, and stops them in reverse on Ctrl-C / SIGTERM.

Two layouts: everything in this process (``running_stack``), or, for `up` with
``worker.separate_process`` (``running_split_stack``), the broker, /track, the journal and
the producer in this process and the worker with the read API in a child process
(``worker_process.py``) that this one forwards the other routes to."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol

from aiohttp import web

from turret_stream import thread_calls
from turret_stream.broker import EmbeddedBroker
from turret_stream.broker_recycle import BrokerRecycler
from turret_stream.embedding import Embedder, open_embedder
from turret_stream.embedding.base import cores
from turret_stream.embedding.pool import PooledEmbedder
from turret_stream.faust_app import quiet_cancelled_sends
from turret_stream.gc_tuning import tune_gc
from turret_stream.http.app import create_app
from turret_stream.http.forward import UPSTREAM
from turret_stream.http.ingest_app import create_ingest_app
from turret_stream.http.keys import LIVE_FEED, WorkerProbe
from turret_stream.http.server import ApiRunner
from turret_stream.journal import Journal, JournalRecord
from turret_stream.keys import KeyStore
from turret_stream.preflight import check_broker, check_store
from turret_stream.producer import EventPublisher, ensure_topic
from turret_stream.progress import PipelineProgress, ProgressReports
from turret_stream.settings import Settings
from turret_stream.storage import VectorStore, open_store
from turret_stream.topology import Topology, build_topology, topic_names
from turret_stream.worker_process import WorkerProcess

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
    # What the journal checkpoint flushes: the store here, or the worker process's.
    flusher: StoreFlusher | None = None
    # The split layout: the worker's process, and why `up` must stop (it died).
    worker_process: WorkerProcess | None = None
    failure: asyncio.Future[str] | None = None
    model_processes: int = 0
    # Watches the worker process (split layout); replaced with it by a broker recycle.
    watch: asyncio.Task[None] | None = None
    # One checkpoint at a time; a broker recycle holds it while it replaces the worker.
    checkpoint_lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class StoreFlusher(Protocol):
    """Makes the store's writes durable, where the store is (journal checkpoints)."""

    @property
    def alive(self) -> bool: ...

    async def written_since_flush(self) -> list[str]: ...

    async def flush(self, names: list[str] | None = None) -> None: ...


class _LocalFlusher:
    """The store of this process; its calls hold the GIL, so they run in a thread."""

    alive = True

    def __init__(self, store: VectorStore) -> None:
        self._store = store

    async def written_since_flush(self) -> list[str]:
        return await asyncio.to_thread(self._store.written_since_flush)

    async def flush(self, names: list[str] | None = None) -> None:
        await asyncio.to_thread(self._store.flush, names)


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
    worker = settings.worker
    return PooledEmbedder(
        settings.embedding,
        processes,
        threads,
        worker.model_nice,
        chunk_texts=worker.embed_chunk_texts,
    )


@contextlib.asynccontextmanager
async def running_worker(
    settings: Settings,
    store: VectorStore,
    embedder: Embedder,
    progress: ProgressReports | None = None,
) -> AsyncIterator[Topology]:
    """The Faust app started inside this event loop; stopped on exit."""
    tune_gc(settings.worker.gc_young_threshold)  # the process that holds the state
    topology = build_topology(settings, store, embedder, progress=progress)
    # Declare every topic with its partition count before any consumer joins.
    k = settings.kafka
    for name in topic_names(settings):
        await ensure_topic(settings.bootstrap_servers, name, k.partitions, k.replication_factor)
    await ensure_topic(settings.bootstrap_servers, k.workers_topic, 1, k.replication_factor)
    quiet_cancelled_sends(asyncio.get_running_loop())
    await topology.app.start()
    try:
        yield topology
    finally:
        try:
            await asyncio.wait_for(topology.app.stop(), STOP_TIMEOUT_S)
        except TimeoutError:
            log.warning("worker did not stop within %ss; leaving anyway", STOP_TIMEOUT_S)
        # The agents' store calls in threads outlive their cancelled tasks: the store is
        # closed after this, so let them end first (thread_calls.py; the stacks install
        # the counting executor before their first thread call).
        if left := await thread_calls.settle(STOP_TIMEOUT_S):
            log.warning("%d thread calls still run after %ss; closing anyway", left, STOP_TIMEOUT_S)


def _count_thread_calls() -> None:
    """The loop's default executor counts its calls (thread_calls.py). Installed before
    any ``to_thread`` call: the model pool's processes die with the thread that started
    them (PR_SET_PDEATHSIG), and replacing a default executor ends its threads."""
    thread_calls.install(asyncio.get_running_loop())


def _worker_running(topology: Topology) -> WorkerProbe:
    async def probe() -> bool:
        app = topology.app
        return bool(app.started and not app.should_stop and not app.crashed)

    return probe


async def _start_broker(
    stack: RunningStack, exits: contextlib.AsyncExitStack, broker: bool
) -> None:
    settings = stack.settings
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


@contextlib.asynccontextmanager
async def running_stack(
    settings: Settings, *, broker: bool, worker: bool, api: bool
) -> AsyncIterator[RunningStack]:
    """Everything asked for, in this process."""
    _count_thread_calls()
    stack = RunningStack(settings)
    async with contextlib.AsyncExitStack() as exits:
        await _start_broker(stack, exits, broker)
        if worker or api:
            # One store per process: the in-process engine allows one opener per data
            # dir, so the API reads through the same object the worker writes.
            stack.store = open_store(settings)
            exits.callback(stack.store.close)
            await check_store(stack.store, settings)
        pending: list[JournalRecord] = []
        if api and worker and settings.journal_enabled:
            # Taken before anything is served: the journal is this data dir's entry point.
            # Only with the worker in this process: it is what confirms journaled events.
            pending = _open_journal(stack, exits)
        if api and worker:
            # API and worker share this process: lag is counted in it (back-pressure).
            stack.progress = PipelineProgress()
            if broker and settings.kafka.embedded_recycle_bytes > 0:
                log.info(
                    "the embedded broker is recycled only with the worker in a process of "
                    "its own (worker.separate_process): its memory grows until `up` restarts"
                )
        if worker:
            stack.embedder = await asyncio.to_thread(open_worker_embedder, settings)
            if isinstance(stack.embedder, PooledEmbedder):
                exits.callback(stack.embedder.close)
            stack.topology = await exits.enter_async_context(
                running_worker(settings, stack.store, stack.embedder, stack.progress)
            )
        if api:
            _start_publisher(stack, exits)
        if stack.journal is not None and stack.publisher is not None:
            await _start_checkpoints(stack, exits, pending)
        elif worker:
            _start_store_flushes(stack, exits)
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
                # With the worker here (`up --one-process`): the stack's processes. A
                # separate `api` has no others to count.
                processes=partial(_stack_processes, stack) if worker else None,
            )
            stack.api_url = await _serve(app, settings, exits)
        yield stack


def _open_journal(stack: RunningStack, exits: contextlib.AsyncExitStack) -> list[JournalRecord]:
    """The data dir's journal, open until ``exits`` closes; the records to replay."""
    p = stack.settings.pipeline
    stack.journal = Journal(
        stack.settings.journal_path, p.journal_segment_bytes, fsync=p.journal_fsync
    )
    pending = stack.journal.open()
    exits.push_async_callback(stack.journal.close)
    return pending


def _start_publisher(stack: RunningStack, exits: contextlib.AsyncExitStack) -> None:
    """The producer of /track (journal, lag), closed when ``exits`` closes."""
    settings = stack.settings
    stack.publisher = EventPublisher(
        settings.bootstrap_servers,
        settings.kafka,
        journal=stack.journal,
        progress=stack.progress,
        pipeline=settings.pipeline,
    )
    exits.push_async_callback(stack.publisher.close)


async def _serve(app: web.Application, settings: Settings, exits: contextlib.AsyncExitStack) -> str:
    """Serve ``app`` on the public port until ``exits`` closes; its URL. The access log
    carries no headers; ApiRunner answers parse errors as JSON without echoing (or
    logging) the request bytes."""
    runner = ApiRunner(app)
    await runner.setup()
    exits.push_async_callback(runner.cleanup)
    site = web.TCPSite(runner, settings.http.host, settings.http.port)
    await site.start()
    host, port = runner.addresses[0][:2]
    return f"http://{host}:{port}"


@contextlib.asynccontextmanager
async def running_worker_api(
    settings: Settings,
    progress: ProgressReports,
    before_store: Callable[[], Awaitable[None]] | None = None,
) -> AsyncIterator[tuple[str, VectorStore, WorkerProbe, Callable[[], list[int]]]]:
    """The worker process of the split layout: the model, the store, the Faust agents
    (reporting to ``progress``) and the read API on a private loopback port. Yields the
    API's URL, the store (the checkpoints flush it), whether the agents run and the pids
    of the model processes. ``before_store`` is awaited once the model is loaded, before
    the store is opened (a broker recycle's next worker waits there for the last)."""
    _count_thread_calls()
    async with contextlib.AsyncExitStack() as exits:
        embedder = await asyncio.to_thread(open_worker_embedder, settings)
        if isinstance(embedder, PooledEmbedder):
            exits.callback(embedder.close)
        if before_store is not None:
            await before_store()
        store = open_store(settings)
        exits.callback(store.close)
        await check_store(store, settings)
        topology = await exits.enter_async_context(
            running_worker(settings, store, embedder, progress)
        )
        keystore = KeyStore(settings.keys_db_path, settings.http.auth_cache_s)
        exits.callback(keystore.close)
        probe = _worker_running(topology)
        app = create_app(
            settings,
            keystore=keystore,
            worker_probe=probe,
            store=store,
            embedder=embedder,
            behind_ingest=True,
        )
        # The ingest process logs every request (keys redacted) once.
        runner = ApiRunner(app, access_log=None)
        await runner.setup()
        exits.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}", store, probe, partial(_model_pids, embedder)


@contextlib.asynccontextmanager
async def running_split_stack(settings: Settings, *, broker: bool) -> AsyncIterator[RunningStack]:
    """`up` with ``worker.separate_process``: the broker, the journal, the producer, the
    lag and the public port here; the worker and the read API in a child process."""
    stack = RunningStack(settings)
    async with contextlib.AsyncExitStack() as exits:
        await _start_broker(stack, exits, broker)
        pending: list[JournalRecord] = []
        if settings.journal_enabled:
            pending = _open_journal(stack, exits)
        stack.progress = PipelineProgress()
        stack.failure = asyncio.get_running_loop().create_future()
        exits.push_async_callback(_stop_worker_process, stack)
        worker = await _start_worker_process(stack)
        stack.model_processes = embed_processes(settings)
        _start_publisher(stack, exits)
        if stack.journal is not None:
            await _start_checkpoints(stack, exits, pending)
        else:
            _start_store_flushes(stack, exits)
        stack.keystore = KeyStore(settings.keys_db_path, settings.http.auth_cache_s)
        exits.callback(stack.keystore.close)
        app = create_ingest_app(
            settings,
            keystore=stack.keystore,
            publisher=stack.publisher,
            worker_probe=partial(_worker_process_running, stack),
            worker_url=worker.url,
            processes=partial(_stack_processes, stack),
        )
        stack.api_url = await _serve(app, settings, exits)
        # After the API: on stop, a recycle in progress finishes before the API closes.
        _start_broker_recycles(stack, exits, app)
        # What start-up made lives as long as the process: out of the collector's sight,
        # so that a full collection does not walk it in the middle of a burst.
        gc.freeze()
        yield stack


def _model_pids(embedder: Embedder | None) -> list[int]:
    return embedder.pids if isinstance(embedder, PooledEmbedder) else []


def _stack_processes(stack: RunningStack) -> dict[str, list[int]]:
    """`up`'s processes by role (/metrics): this one, the embedded broker, the worker
    process (split layout) and the model processes (here, or as the worker reports)."""
    broker = stack.broker.pid if stack.broker is not None else None
    worker = stack.worker_process
    roles = {"main": [os.getpid()], "broker": [broker] if broker else []}
    if worker is not None:
        roles["worker"] = [worker.pid] if worker.pid else []
        roles["model"] = list(worker.link.model_pids) if worker.link is not None else []
    else:
        roles["model"] = _model_pids(stack.embedder)
    return roles


async def _start_worker_process(stack: RunningStack) -> WorkerProcess:
    """Start the split layout's worker process, and watch it (``_watch_worker``)."""
    assert stack.progress is not None
    worker = WorkerProcess(stack.settings, stack.progress)
    stack.worker_process = worker
    await worker.start()
    _watch_started(stack, worker)
    return worker


def _watch_started(stack: RunningStack, worker: WorkerProcess) -> None:
    """``worker`` (current, started) is what checkpoints flush, and is watched."""
    assert worker.link is not None
    stack.flusher = worker.link
    stack.watch = asyncio.create_task(_watch_worker(stack))


async def _stop_worker_process(stack: RunningStack) -> None:
    """Stop the worker process there is now (a recycle may have replaced the first)."""
    if stack.watch is not None:
        stack.watch.cancel()  # a stop asked for is not a failure
    if stack.worker_process is not None:
        await stack.worker_process.stop()


async def _worker_process_running(stack: RunningStack) -> bool:
    worker = stack.worker_process
    return worker is not None and worker.link is not None and await worker.link.running()


class _ReplaceableWorkerProcess:
    """The split layout's worker process as a broker recycle replaces it: the next one
    is prepared (model loaded) while the current one runs; the ingest app forwards to
    the new one's private port."""

    def __init__(self, stack: RunningStack, app: web.Application) -> None:
        self._stack = stack
        self._app = app
        self._next: WorkerProcess | None = None

    def alive(self) -> bool:
        worker = self._stack.worker_process
        return worker is not None and worker.link is not None and worker.link.alive

    async def prepare_next(self) -> None:
        assert self._stack.progress is not None
        self._next = WorkerProcess(self._stack.settings, self._stack.progress)
        await self._next.start(prepare_only=True)

    async def discard_next(self) -> None:
        if self._next is not None:
            worker, self._next = self._next, None
            await worker.stop()

    async def checkpoint(self) -> None:
        await _checkpoint_now(self._stack)

    async def stop(self) -> None:
        await _stop_worker_process(self._stack)

    async def start_next(self) -> None:
        stack, worker = self._stack, self._next
        assert worker is not None and worker.link is not None
        stack.worker_process = worker  # stopped with `up` from here on, started or not
        self._next = None
        await worker.proceed()
        _watch_started(stack, worker)
        self._app[UPSTREAM].url = worker.url


def _start_broker_recycles(
    stack: RunningStack, exits: contextlib.AsyncExitStack, app: web.Application
) -> None:
    """Replace the embedded broker once it holds ``kafka.embedded_recycle_bytes``
    (``broker_recycle.py``): the split layout with the journal and the embedded broker."""
    k = stack.settings.kafka
    if stack.broker is None or k.embedded_recycle_bytes <= 0:
        return
    if stack.journal is None or stack.publisher is None or stack.progress is None:
        log.info(
            "the embedded broker is not recycled without the journal: its memory grows "
            "until `up` restarts"
        )
        return
    failure = stack.failure

    def fail(message: str) -> None:
        if failure is not None and not failure.done():
            failure.set_result(message)

    recycler = BrokerRecycler(
        stack.settings,
        broker=stack.broker,
        publisher=stack.publisher,
        journal=stack.journal,
        progress=stack.progress,
        feed=app[LIVE_FEED],
        worker=_ReplaceableWorkerProcess(stack, app),
        checkpoint_lock=stack.checkpoint_lock,
        fail=fail,
    )
    _start_every(exits, k.embedded_recycle_check_s, recycler.check, "broker recycle check")


async def _watch_worker(stack: RunningStack) -> None:
    """A worker process that dies stops `up` (a supervisor restarts it; what the worker
    had not finished stays in the journal and is replayed then)."""
    worker = stack.worker_process
    assert worker is not None and worker.link is not None and stack.failure is not None
    await worker.link.closed.wait()
    await worker.wait_exit(5.0)
    message = f"the worker process {worker.exit_description()}"
    log.error("%s; stopping", message)
    if not stack.failure.done():
        stack.failure.set_result(message)


async def _start_checkpoints(
    stack: RunningStack, exits: contextlib.AsyncExitStack, pending: list[JournalRecord]
) -> None:
    """Replay what the journal holds, then confirm journaled events as the worker stores
    them (periodically, and once more on stop after the drain)."""
    assert stack.journal is not None and stack.publisher is not None
    if stack.progress is not None:
        stack.progress.note_seq(stack.journal.confirmed)
    if pending:
        log.info("replaying %d journaled events into the broker", len(pending))
        await stack.publisher.replay(pending)
    exits.push_async_callback(_drain, stack)
    interval = stack.settings.pipeline.checkpoint_interval_s
    _start_every(exits, interval, partial(_checkpoint, stack), "journal checkpoint")


def _start_store_flushes(stack: RunningStack, exits: contextlib.AsyncExitStack) -> None:
    """Without a journal (``journal_enabled: false``, a separate `worker`) nothing else
    flushes the store while it runs, and the in-process engine keeps what was written
    since its last flush in memory (about 6 KB an event, README *Scale*): flush the
    written collections every ``pipeline.checkpoint_interval_s``, one at a time."""
    flusher = _flusher(stack)
    if flusher is None:
        return

    async def flush_written(stop: asyncio.Event) -> None:
        if flusher.alive:
            for name in await flusher.written_since_flush():
                await flusher.flush([name])

    interval = stack.settings.pipeline.checkpoint_interval_s
    _start_every(exits, interval, flush_written, "store flush")


def _start_every(
    exits: contextlib.AsyncExitStack,
    interval_s: float,
    step: Callable[[asyncio.Event], Awaitable[None]],
    what: str,
) -> None:
    """Run ``step(stop)`` every ``interval_s`` until ``exits`` closes; a failed step is
    logged and tried again at the next interval. On close, a step in progress finishes."""
    stop = asyncio.Event()

    async def loop() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)
                return
            try:
                await step(stop)
            except Exception:
                log.exception("%s failed; retrying in %ss", what, interval_s)

    exits.push_async_callback(_stop_loop, stop, asyncio.create_task(loop()))


def _flusher(stack: RunningStack) -> StoreFlusher | None:
    if stack.flusher is None and stack.store is not None:
        stack.flusher = _LocalFlusher(stack.store)
    return stack.flusher


async def _checkpoint(stack: RunningStack, stop: asyncio.Event | None = None) -> None:
    """Confirm in the journal what the worker has stored: flush the store first, so that a
    confirmed event is on disk there before it leaves the journal. With ``stop`` (the
    periodic checkpoint, not the one at shutdown), one collection at a time, each after a
    quiet moment on /track (``_quiet_moment``)."""
    async with stack.checkpoint_lock:
        await _checkpoint_now(stack, stop)


async def _checkpoint_now(stack: RunningStack, stop: asyncio.Event | None = None) -> None:
    """``_checkpoint``, with the checkpoint lock held by the caller."""
    journal, progress = stack.journal, stack.progress
    assert journal is not None
    if progress is None:
        return  # no worker here to confirm anything: replay it all next time
    # Everything up to ``upto`` was written to the store before the flushes below start.
    upto = progress.confirmed_seq()
    if upto <= journal.confirmed:
        return
    flusher = _flusher(stack)
    if flusher is not None and not flusher.alive:
        return  # the worker process is gone: the journal keeps everything for a replay
    if flusher is not None:
        if stop is None or stack.worker_process is not None:
            # At stop; or in the worker process, whose GIL /track does not wait for.
            await flusher.flush()
        else:
            give_up = (
                asyncio.get_running_loop().time() + stack.settings.pipeline.checkpoint_max_delay_s
            )
            for name in await flusher.written_since_flush():
                await _quiet_moment(stack, stop, give_up)
                await flusher.flush([name])
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


async def _stop_loop(stop: asyncio.Event, task: asyncio.Task[None]) -> None:
    # Not cancelled: a checkpoint in progress finishes (its file writes run in a thread).
    stop.set()
    await task


async def _drain(stack: RunningStack) -> None:
    """On stop, after the API stopped taking events: give the worker up to
    ``pipeline.drain_timeout_s`` to finish what was accepted, then confirm it. Whatever is
    left stays in the journal and is replayed on the next start."""
    progress, flusher = stack.progress, _flusher(stack)
    if progress is not None:
        left = await progress.drained(
            stack.settings.pipeline.drain_timeout_s,
            lambda: flusher is None or flusher.alive,
        )
        if left:
            log.warning("stopping with %d events still in the journal", left)
    if flusher is not None and not flusher.alive:
        return  # the worker is gone: nothing more is confirmed; the journal replays it
    await _checkpoint(stack)


async def wait_for_stop_signal(failure: asyncio.Future[str] | None = None) -> str | None:
    """Until Ctrl-C or SIGTERM (None), or until ``failure`` says why `up` must stop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    signalled = asyncio.ensure_future(stop.wait())
    try:
        waits: set[asyncio.Future[object]] = {signalled}
        if failure is not None:
            waits.add(failure)  # type: ignore[arg-type]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        if failure is not None and failure.done() and not stop.is_set():
            return failure.result()
        return None
    finally:
        signalled.cancel()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
