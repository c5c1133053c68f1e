"""create_app(settings): the aiohttp application, its shared objects and error rendering."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from turret_stream.embedding import Embedder, open_embedder
from turret_stream.http.alert_handlers import run_alert_api, setup_alert_api
from turret_stream.http.guards import guarded_application
from turret_stream.http.keys import (
    EMBEDDER,
    JOURNEYS,
    KEYSTORE,
    LIVE_FEED,
    LIVE_HUB,
    PUBLISHER,
    QUERIES,
    STACK_PROCESSES,
    STORE,
    WORKER_PROBE,
    WorkerProbe,
)
from turret_stream.http.live import LiveHub, TransitionsFeed, close_live_clients, run_live_feed
from turret_stream.http.readiness import heartbeat_probe
from turret_stream.http.routes import setup_routes
from turret_stream.journey_queries import JourneyQueries
from turret_stream.keys import KeyStore
from turret_stream.process_figures import StackProcesses
from turret_stream.producer import EventPublisher
from turret_stream.queries import Queries
from turret_stream.settings import Settings
from turret_stream.storage import VectorStore, open_store

log = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    *,
    keystore: KeyStore | None = None,
    worker_probe: WorkerProbe | None = None,
    store: VectorStore | None = None,
    embedder: Embedder | None = None,
    publisher: EventPublisher | None = None,
    behind_ingest: bool = False,
    processes: StackProcesses | None = None,
) -> web.Application:
    """The API app. ``worker_probe`` tells /readyz whether the worker runs; by default it
    asks the broker about the worker's consumer group. ``behind_ingest``: the read API of
    `up`'s worker process, reached through the ingest process (``ingest_app.py``), which
    serves /track and /v1/live itself: no live feed here. ``processes``: `up`'s processes
    by role, for /metrics."""
    app = guarded_application(settings)
    if processes is not None:
        app[STACK_PROCESSES] = processes
    app[WORKER_PROBE] = worker_probe or heartbeat_probe(settings)
    own_keystore = keystore is None
    app[KEYSTORE] = keystore or KeyStore(settings.keys_db_path, settings.http.auth_cache_s)
    own_publisher = publisher is None
    app[PUBLISHER] = publisher or EventPublisher(settings.bootstrap_servers, settings.kafka)
    own_store = store is None
    app[STORE] = store if store is not None else open_store(settings)
    app[QUERIES] = Queries(app[STORE])
    app[JOURNEYS] = JourneyQueries(
        app[STORE],
        queries=app[QUERIES],
        settings=settings.journeys,
        use_aggregates=settings.journeys.aggregates,
    )
    loaded: list[Embedder] = [embedder] if embedder is not None else []

    def embedder_source() -> Embedder:
        if not loaded:
            loaded.append(open_embedder(settings.embedding))
        return loaded[0]

    app[EMBEDDER] = embedder_source
    # GET /v1/live: one hub and one transitions consumer per API process.
    app[LIVE_HUB] = LiveHub(settings.live)
    app[LIVE_FEED] = TransitionsFeed(settings, app[LIVE_HUB])

    async def resources(app: web.Application) -> AsyncIterator[None]:
        yield
        if own_publisher:
            await app[PUBLISHER].close()
        if own_store:
            app[STORE].close()
        if own_keystore:
            app[KEYSTORE].close()

    app.cleanup_ctx.append(resources)
    if not behind_ingest:
        app.cleanup_ctx.append(run_live_feed)
    setup_alert_api(app)
    app.cleanup_ctx.append(run_alert_api)
    # Sockets close on shutdown, before aiohttp waits for the handlers still running.
    app.on_shutdown.append(close_live_clients)
    setup_routes(app, public=not behind_ingest)
    return app
