"""create_app(settings): the aiohttp application, its shared objects and error rendering."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from turret_stream.embedding import Embedder, open_embedder
from turret_stream.http.alert_handlers import run_alert_api, setup_alert_api
from turret_stream.http.guards import json_errors, request_guard
from turret_stream.http.keys import (
    EMBEDDER,
    JOURNEYS,
    KEYSTORE,
    LIVE_FEED,
    LIVE_HUB,
    PUBLISHER,
    QUERIES,
    RATE_LIMITER,
    SETTINGS,
    STORE,
    WORKER_PROBE,
    WorkerProbe,
)
from turret_stream.http.live import LiveHub, TransitionsFeed, close_live_clients, run_live_feed
from turret_stream.http.readiness import heartbeat_probe
from turret_stream.http.routes import setup_routes
from turret_stream.journey_queries import JourneyQueries
from turret_stream.keys import KeyStore
from turret_stream.producer import EventPublisher
from turret_stream.queries import Queries
from turret_stream.ratelimit import RateLimiter
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
) -> web.Application:
    """The API app. ``worker_probe`` tells /readyz whether the worker runs; by default it
    asks the broker about the worker's consumer group. ``behind_ingest``: the read API of
    `up`'s worker process, reached through the ingest process (``ingest_app.py``), which
    serves /track and /v1/live itself: no live feed here."""
    app = web.Application(
        middlewares=[json_errors, request_guard],
        # Handlers read bodies with guards.read_body (exact limit, read timeout); this is
        # aiohttp's own backstop for anything else (it refuses bodies *equal* to it).
        client_max_size=settings.http.max_body_bytes + 1,
        # A connection that has not sent a whole request head within this time (a first
        # request, or the next one on a kept-alive connection) is closed.
        # After an answer sent before the body was read (401, 408, 413, ...), the rest of
        # the body is drained for at most as long, then the connection is closed.
        handler_args={
            "keepalive_timeout": settings.http.read_timeout_s,
            "lingering_time": settings.http.read_timeout_s,
        },
    )
    app[SETTINGS] = settings
    app[RATE_LIMITER] = RateLimiter(settings.rate_limit)
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
