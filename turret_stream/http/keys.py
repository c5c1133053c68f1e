"""Typed keys for the objects the aiohttp app shares between handlers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from turret_stream.embedding import Embedder
from turret_stream.keys import KeyStore
from turret_stream.producer import EventPublisher
from turret_stream.queries import Queries
from turret_stream.ratelimit import RateLimiter
from turret_stream.settings import Settings
from turret_stream.storage import VectorStore

WorkerProbe = Callable[[], Awaitable[bool]]
# Returns the embedder, loading it on first use (only search needs it in the API).
EmbedderSource = Callable[[], Embedder]

SETTINGS = web.AppKey("settings", Settings)
KEYSTORE = web.AppKey("keystore", KeyStore)
PUBLISHER = web.AppKey("publisher", EventPublisher)
RATE_LIMITER = web.AppKey("rate_limiter", RateLimiter)
WORKER_PROBE = web.AppKey("worker_probe", WorkerProbe)
QUERIES = web.AppKey("queries", Queries)
EMBEDDER = web.AppKey("embedder", EmbedderSource)
STORE = web.AppKey("store", VectorStore)
