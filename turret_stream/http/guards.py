"""Middlewares every request passes, and the bounded body reader.

- ``json_errors`` (outermost): every error leaves as ``{"success": false, "error", "code"}``
  JSON: ApiError, aiohttp's own HTTP errors (404, 405 with ``Allow``, 413, ...), and, as a
  safety net, any unexpected exception as a 500 ``INTERNAL_ERROR`` whose stack trace goes
  to the server log only.
- ``request_guard``: an API key in the query string is refused on every route (401) and
  redacted from the access log line; path and query parameters that are not valid Unicode
  (lone surrogates, e.g. ``%ED%A0%80``) are refused with 400 before any handler sees them.
- ``read_body``: the body, at most ``http.max_body_bytes`` (exactly: one byte more is 413)
  and within ``http.read_timeout_s`` (else 408).
"""

from __future__ import annotations

import asyncio
import logging
import re

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from turret_stream.errors import ApiError, ErrorCode, invalid
from turret_stream.http.json_body import has_surrogate
from turret_stream.http.keys import RATE_LIMITER, SETTINGS
from turret_stream.ratelimit import RateLimiter
from turret_stream.settings import Settings

log = logging.getLogger(__name__)

API_KEY_HEADER = "X-API-Key"
# Query parameters that can only be a misplaced key, and the shape of a turret key.
KEY_PARAMS = frozenset(
    {"api_key", "apikey", "api-key", "x-api-key", "key", "token", "access_token", "auth"}
)
_KEY_IN_VALUE = re.compile(r"tsk_[0-9a-f]{12}_")
KEY_IN_URL_MESSAGE = (
    "API keys are not accepted in the URL: URLs end up in access logs, proxies and browser "
    f"history. Send the key in the {API_KEY_HEADER} header (on /v1/live also as a "
    'WebSocket subprotocol or a first {"type": "auth", "api_key": ...} message).'
)
REDACTED = "REDACTED"


def key_like(name: str, value: str) -> bool:
    """A query parameter that is, or carries, an API key."""
    return name.lower() in KEY_PARAMS or bool(_KEY_IN_VALUE.search(value))


def error_response(error: ApiError) -> web.Response:
    return web.json_response(error.body(), status=error.status, headers=error.headers())


_HTTP_CODES = {
    400: ErrorCode.INVALID_REQUEST,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    408: ErrorCode.REQUEST_TIMEOUT,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
}


def _from_http_exception(request: web.Request, exc: web.HTTPException) -> ApiError:
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        limit = request.app[SETTINGS].http.max_body_bytes
        return too_large(limit)
    if isinstance(exc, web.HTTPNotFound):
        return ApiError(404, ErrorCode.NOT_FOUND, "No such route")
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        return ApiError(
            405,
            ErrorCode.METHOD_NOT_ALLOWED,
            f"{request.method} is not allowed here; use {allowed}",
        )
    code = _HTTP_CODES.get(
        exc.status, ErrorCode.INTERNAL_ERROR if exc.status >= 500 else ErrorCode.INVALID_REQUEST
    )
    return ApiError(exc.status, code, exc.reason)


@web.middleware
async def json_errors(request: web.Request, handler: web.Handler) -> web.StreamResponse:
    """Every error leaves as JSON with a machine-readable code; never a stack trace."""
    try:
        return await handler(request)
    except ApiError as exc:
        response = error_response(exc)
        if exc.status in (408, 413):
            # The rest of the body may still be on its way: do not wait to drain it.
            response.force_close()
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects and the like are answers, not errors
        response = error_response(_from_http_exception(request, exc))
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except asyncio.CancelledError:
        raise
    except Exception:
        # The path only: a query string may carry what must not be logged.
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(ApiError(500, ErrorCode.INTERNAL_ERROR, "Internal server error"))


def too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        ErrorCode.PAYLOAD_TOO_LARGE,
        f"Request body is larger than the limit of {limit} bytes",
        max_bytes=limit,
    )


def _redact_keys_in_access_log(request: web.Request) -> None:
    """aiohttp's access log prints ``request.path_qs``, a cached property: when the query
    carries a key, cache a copy with those values replaced, so the key is never logged."""
    query = request.rel_url.query
    if not any(key_like(name, value) for name, value in query.items()):
        return
    safe = [(name, REDACTED if key_like(name, value) else value) for name, value in query.items()]
    request._cache["path_qs"] = str(request.rel_url.with_query(safe))


@web.middleware
async def request_guard(request: web.Request, handler: web.Handler) -> web.StreamResponse:
    _redact_keys_in_access_log(request)
    query = request.query
    if any(key_like(name, value) for name, value in query.items()):
        raise ApiError(401, ErrorCode.INVALID_API_KEY, KEY_IN_URL_MESSAGE)
    for name, value in request.match_info.items():
        if has_surrogate(value):
            raise invalid(name, "is not valid Unicode (a lone surrogate)")
    for name, value in query.items():
        if has_surrogate(name):
            raise invalid("query", "a parameter name is not valid Unicode (a lone surrogate)")
        if has_surrogate(value):
            raise invalid(name, "is not valid Unicode (a lone surrogate)")
    return await handler(request)


async def read_body(request: web.Request) -> bytes:
    """The whole body: 413 past ``http.max_body_bytes`` (a declared Content-Length over it
    is refused before reading anything), 408 when it does not arrive within
    ``http.read_timeout_s``."""
    http = request.app[SETTINGS].http
    limit = http.max_body_bytes
    declared = request.content_length
    if declared is not None and declared > limit:
        raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(http.read_timeout_s):
            while True:
                chunk = await request.content.read(64 * 1024)
                if not chunk:
                    break
                size += len(chunk)
                if size > limit:
                    raise too_large(limit)
                chunks.append(chunk)
    except HttpProcessingError:
        # A broken chunked encoding, a body shorter than its Content-Length.
        raise ApiError(400, ErrorCode.INVALID_REQUEST, "Malformed request body") from None
    except ConnectionError:
        # The client went away mid-body: nothing to log as a server error.
        raise ApiError(
            400, ErrorCode.INVALID_REQUEST, "The connection closed before the body arrived"
        ) from None
    except TimeoutError:
        raise ApiError(
            408,
            ErrorCode.REQUEST_TIMEOUT,
            f"The request body did not arrive within {http.read_timeout_s:g} s",
        ) from None
    return b"".join(chunks)


def guarded_application(settings: Settings) -> web.Application:
    """An application with the guards of every public app (``create_app``, and
    ``create_ingest_app`` in `up`'s two-process layout): JSON errors, the request guard,
    the body limit, read timeouts, its settings and the per-key rate limiter."""
    app = web.Application(
        middlewares=[json_errors, request_guard],
        # Handlers read bodies with read_body (exact limit, read timeout); this is
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
    return app
