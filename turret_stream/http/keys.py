"""Typed keys for the objects the aiohttp app shares between handlers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from turret_stream.keys import KeyStore
from turret_stream.producer import EventPublisher
from turret_stream.ratelimit import RateLimiter
from turret_stream.settings import Settings

WorkerProbe = Callable[[], Awaitable[bool]]

SETTINGS = web.AppKey("settings", Settings)
KEYSTORE = web.AppKey("keystore", KeyStore)
PUBLISHER = web.AppKey("publisher", EventPublisher)
RATE_LIMITER = web.AppKey("rate_limiter", RateLimiter)
WORKER_PROBE = web.AppKey("worker_probe", WorkerProbe)
