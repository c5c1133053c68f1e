"""create_app(settings): the aiohttp application, its shared objects and error rendering."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web
from aiokafka.admin import AIOKafkaAdminClient

from turret_stream.embedding import Embedder, open_embedder
from turret_stream.errors import ApiError, ErrorCode
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
from turret_stream.http.routes import setup_routes
from turret_stream.journey_queries import JourneyQueries
from turret_stream.keys import KeyStore
from turret_stream.producer import EventPublisher
from turret_stream.queries import Queries
from turret_stream.ratelimit import RateLimiter
from turret_stream.settings import Settings
from turret_stream.storage import VectorStore, open_store

log = logging.getLogger(__name__)


def _error_response(error: ApiError) -> web.Response:
    return web.json_response(error.body(), status=error.status, headers=error.headers())


@web.middleware
async def json_errors(request: web.Request, handler: web.Handler) -> web.StreamResponse:
    """Every error leaves as JSON with a machine-readable code; never a bare stack trace."""
    try:
        return await handler(request)
    except ApiError as exc:
        return _error_response(exc)
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[SETTINGS].http.max_body_bytes
        return _error_response(
            ApiError(
                413,
                ErrorCode.PAYLOAD_TOO_LARGE,
                f"Request body is larger than the limit of {limit} bytes",
                max_bytes=limit,
            )
        )
    except web.HTTPNotFound:
        return _error_response(ApiError(404, ErrorCode.NOT_FOUND, f"No route {request.path}"))
    except web.HTTPMethodNotAllowed as exc:
        return _error_response(
            ApiError(
                405,
                ErrorCode.METHOD_NOT_ALLOWED,
                f"{request.method} is not allowed on {request.path}; "
                f"use {', '.join(sorted(exc.allowed_methods))}",
            )
        )
    except web.HTTPException:
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _error_response(ApiError(500, ErrorCode.INTERNAL_ERROR, "Internal server error"))


def consumer_group_probe(settings: Settings) -> WorkerProbe:
    """For an API running apart from the worker: ready when the worker's consumer group
    has live members."""

    async def probe() -> bool:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
        try:
            await admin.start()
            [described] = await admin.describe_consumer_groups([settings.worker.app_id])
            [group] = described.groups
            return group[0] == 0 and group[2] == "Stable" and bool(group[5])
        except Exception:
            return False
        finally:
            await admin.close()

    return probe


def create_app(
    settings: Settings,
    *,
    keystore: KeyStore | None = None,
    worker_probe: WorkerProbe | None = None,
    store: VectorStore | None = None,
    embedder: Embedder | None = None,
    publisher: EventPublisher | None = None,
) -> web.Application:
    """The API app. ``worker_probe`` tells /readyz whether the worker runs; by default it
    asks the broker about the worker's consumer group."""
    app = web.Application(
        middlewares=[json_errors],
        # Leave 1 byte of slack: aiohttp refuses bodies *equal* to client_max_size.
        client_max_size=settings.http.max_body_bytes + 1,
    )
    app[SETTINGS] = settings
    app[RATE_LIMITER] = RateLimiter(settings.rate_limit)
    app[WORKER_PROBE] = worker_probe or consumer_group_probe(settings)
    own_keystore = keystore is None
    app[KEYSTORE] = keystore or KeyStore(settings.keys_db_path)
    own_publisher = publisher is None
    app[PUBLISHER] = publisher or EventPublisher(settings.bootstrap_servers, settings.kafka)
    own_store = store is None
    app[STORE] = store if store is not None else open_store(settings)
    app[QUERIES] = Queries(app[STORE])
    app[JOURNEYS] = JourneyQueries(app[STORE], queries=app[QUERIES], settings=settings.journeys)
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
    app.cleanup_ctx.append(run_live_feed)
    # Sockets close on shutdown, before aiohttp waits for the handlers still running.
    app.on_shutdown.append(close_live_clients)
    setup_routes(app)
    return app
