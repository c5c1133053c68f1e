"""create_ingest_app: the public app of `up` when its worker runs in a process of its own
(``worker.separate_process``).

This process serves what must never wait for the worker: ``POST /track`` (key, journal,
producer, back-pressure), ``/healthz``, ``/readyz`` and ``/metrics`` (the lag is counted
here), and ``/v1/live`` (its feed reads the transitions topic, not the store; serving it
here costs less than relaying every frame). Every other route is forwarded to the worker
process's read API (``forward.py``), after the same middlewares as everywhere.
"""

from __future__ import annotations

from aiohttp import web

from turret_stream.http import handlers, live, pipeline_handlers
from turret_stream.http.forward import UPSTREAM, Upstream, forward, forward_context
from turret_stream.http.guards import guarded_application
from turret_stream.http.keys import (
    KEYSTORE,
    LIVE_FEED,
    LIVE_HUB,
    PUBLISHER,
    STACK_PROCESSES,
    WORKER_PROBE,
    WorkerProbe,
)
from turret_stream.keys import KeyStore
from turret_stream.process_figures import StackProcesses
from turret_stream.producer import EventPublisher
from turret_stream.settings import Settings


def create_ingest_app(
    settings: Settings,
    *,
    keystore: KeyStore,
    publisher: EventPublisher,
    worker_probe: WorkerProbe,
    worker_url: str,
    processes: StackProcesses | None = None,
) -> web.Application:
    app = guarded_application(settings)
    if processes is not None:
        app[STACK_PROCESSES] = processes
    app[WORKER_PROBE] = worker_probe
    app[KEYSTORE] = keystore
    app[PUBLISHER] = publisher
    app[LIVE_HUB] = live.LiveHub(settings.live)
    app[LIVE_FEED] = live.TransitionsFeed(settings, app[LIVE_HUB])
    app[UPSTREAM] = Upstream(worker_url, settings.worker.api_timeout_s)
    app.cleanup_ctx.append(forward_context)
    app.cleanup_ctx.append(live.run_live_feed)
    app.on_shutdown.append(live.close_live_clients)

    app.router.add_post("/track", handlers.track)
    app.router.add_get("/healthz", handlers.healthz)
    app.router.add_get("/readyz", handlers.readyz)
    app.router.add_get("/metrics", pipeline_handlers.metrics)
    app.router.add_get("/v1/live", live.live)
    # Anything else, any method (a route above with another method too: the worker
    # answers 405 with Allow, as the one-process app does).
    app.router.add_route("*", "/{path:.*}", forward)
    return app
