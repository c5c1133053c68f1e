"""Request handlers: parse -> act -> JSON. Domain errors become ApiError answers."""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from typing import Any

from aiohttp import web

from turret_stream.errors import (
    ApiError,
    BrokerUnavailable,
    ErrorCode,
    PipelineBehind,
    invalid,
    invalid_api_key,
)
from turret_stream.http.guards import API_KEY_HEADER, read_body
from turret_stream.http.keys import KEYSTORE, PUBLISHER, RATE_LIMITER, SETTINGS, WORKER_PROBE
from turret_stream.http.openapi import openapi_document
from turret_stream.http.track_request import parse_json_body, parse_track_request
from turret_stream.keys import ApiKeyInfo
from turret_stream.records import TrackedEvent, event_key

__all__ = ["API_KEY_HEADER", "IDEMPOTENCY_HEADER", "authenticate"]

IDEMPOTENCY_HEADER = "Idempotency-Key"
# Visible ASCII and spaces: what HTTP clients send, and what hashes the same everywhere.
_IDEMPOTENCY_KEY = re.compile(r"[\x20-\x7e]+")


def authenticate(request: web.Request) -> ApiKeyInfo:
    # aiohttp's headers are case-insensitive: x-api-key, X-API-KEY, ... all match.
    key = request.app[KEYSTORE].authenticate(request.headers.get(API_KEY_HEADER))
    if key is None:
        raise invalid_api_key()
    return key


class _GeneratedIds:
    """Ids the server makes up. Random by default; with an Idempotency-Key they derive from
    (project, key), so a retried request names the same event, session and user and is
    recognised downstream as one event."""

    def __init__(self, project: str, idempotency_key: str | None) -> None:
        self._seed = None if idempotency_key is None else f"{project}\0{idempotency_key}"

    def _hex(self, purpose: str) -> str:
        if self._seed is None:
            return uuid.uuid4().hex
        return hashlib.sha256(f"{purpose}\0{self._seed}".encode()).hexdigest()[:32]

    def event_id(self) -> str:
        return f"evt_{self._hex('event')}"

    def uuid(self, purpose: str) -> str:
        return str(uuid.UUID(hex=self._hex(purpose), version=4))


def _idempotency_key(request: web.Request, limit: int) -> str | None:
    """The header's value; an empty (or blank) one means no key, as if it were absent:
    some clients send the header empty rather than leave it out."""
    raw = request.headers.get(IDEMPOTENCY_HEADER)
    if raw is None or not raw.strip():
        return None
    value = raw.strip()
    if len(value) > limit or not _IDEMPOTENCY_KEY.fullmatch(value):
        raise invalid(IDEMPOTENCY_HEADER, f"must be 1-{limit} printable ASCII characters")
    return value


async def track(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    key = authenticate(request)
    retry_after = request.app[RATE_LIMITER].acquire(key.key_id)
    if retry_after is not None:
        raise ApiError(
            429,
            ErrorCode.RATE_LIMIT_EXCEEDED,
            f"Rate limit exceeded. Try again in {retry_after} seconds.",
            retry_after=retry_after,
        )
    try:
        # Shed load before reading the body while the worker is far behind.
        request.app[PUBLISHER].check_capacity()
    except PipelineBehind as exc:
        raise ApiError(
            503,
            ErrorCode.SERVICE_UNAVAILABLE,
            f"The pipeline is {exc.lag} events behind; the event was not tracked. Retry later.",
            retry_after=exc.retry_after,
        ) from exc
    idempotency_key = _idempotency_key(request, settings.limits.max_idempotency_key_chars)
    body = parse_track_request(parse_json_body(await read_body(request)), settings.limits)

    ids = _GeneratedIds(key.project, idempotency_key)
    event = TrackedEvent(
        event_id=ids.event_id(),
        project=key.project,
        name=body.name,
        metadata=body.metadata,
        session_id=body.session_id or ids.uuid("session"),
        user_id=body.user_id or ids.uuid("user"),
        # To the microsecond: the event store keeps 16 significant digits of a float
        # exactly but not 17 (qdrant-edge gives some back an ulp off), and journeys match
        # a redelivered event's time against the stored one.
        received_at=round(time.time(), 6),
        session_generated=body.session_id is None,
        user_generated=body.user_id is None,
    )
    try:
        await request.app[PUBLISHER].publish(
            event_key(event.project, event.session_id), event.dumps(), event.event_id
        )
    except BrokerUnavailable as exc:
        raise ApiError(
            503,
            ErrorCode.SERVICE_UNAVAILABLE,
            "Event store temporarily unavailable; the event was not tracked. Retry later.",
            retry_after=settings.kafka.unavailable_retry_after_s,
        ) from exc
    return web.json_response(
        {
            "success": True,
            "message": "Event tracked successfully",
            "event_id": event.event_id,
            "session_id": event.session_id,
            "user_id": event.user_id,
        }
    )


async def served_by_ingest(request: web.Request) -> web.Response:
    """/track and /v1/live on the worker process's private port: served on the public one."""
    raise ApiError(404, ErrorCode.NOT_FOUND, "Served on the public port, not here")


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    publisher = request.app[PUBLISHER]
    # `up` replacing its embedded broker and worker (broker_recycle.py): /track still
    # takes events into the journal, the read API waits for the new worker.
    restarting = publisher.holding
    broker = not restarting and await publisher.broker_reachable()
    worker = broker and await request.app[WORKER_PROBE]()
    checks: dict[str, Any] = {
        "broker": "restarting" if restarting else ("ok" if broker else "unreachable"),
        "worker": "restarting"
        if restarting
        else ("ok" if worker else ("unknown" if not broker else "not running")),
    }
    behind = False
    if publisher.progress is not None:
        # Not ready while /track sheds load: a balancer sends the traffic elsewhere.
        behind = publisher.backlog >= publisher.pipeline.max_lag_events
        checks["pipeline"] = "behind" if behind else "ok"
        checks["lag_events"] = publisher.backlog
    if broker and worker and not behind:
        return web.json_response({"status": "ready", "checks": checks})
    return web.json_response(
        {
            "success": False,
            "status": "not ready",
            "error": "Not ready: "
            + ", ".join(f"{k} {v}" for k, v in checks.items() if v != "ok" and isinstance(v, str)),
            "code": str(ErrorCode.NOT_READY),
            "checks": checks,
        },
        status=503,
    )


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document(request.app[SETTINGS]))
