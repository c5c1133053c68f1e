"""Typed keys for the objects the aiohttp app shares between handlers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from turret_stream.embedding import Embedder
from turret_stream.journey_queries import JourneyQueries
from turret_stream.keys import KeyStore
from turret_stream.process_figures import StackProcesses
from turret_stream.producer import EventPublisher
from turret_stream.queries import Queries
from turret_stream.ratelimit import RateLimiter
from turret_stream.settings import Settings
from turret_stream.storage import VectorStore

if TYPE_CHECKING:
    # live imports this module: its types are only needed by type checkers.
    from turret_stream.http.live import LiveHub, TransitionsFeed

WorkerProbe = Callable[[], Awaitable[bool]]
# Returns the embedder, loading it on first use (only search needs it in the API).
EmbedderSource = Callable[[], Embedder]

SETTINGS = web.AppKey("settings", Settings)
KEYSTORE = web.AppKey("keystore", KeyStore)
PUBLISHER = web.AppKey("publisher", EventPublisher)
RATE_LIMITER = web.AppKey("rate_limiter", RateLimiter)
WORKER_PROBE = web.AppKey("worker_probe", WorkerProbe)
QUERIES = web.AppKey("queries", Queries)
JOURNEYS = web.AppKey("journeys", JourneyQueries)
EMBEDDER = web.AppKey("embedder", EmbedderSource)
STORE = web.AppKey("store", VectorStore)
# `up`: the pids of every process it runs, by role (/metrics).
STACK_PROCESSES = web.AppKey("stack_processes", StackProcesses)
LIVE_HUB: web.AppKey[LiveHub] = web.AppKey("live_hub")
LIVE_FEED: web.AppKey[TransitionsFeed] = web.AppKey("live_feed")
