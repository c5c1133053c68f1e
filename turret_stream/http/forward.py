"""Forwarding to the worker process's read API: every route the ingest process does not
serve itself (``ingest_app.py``) goes to the worker process on a private loopback port.

The request's body is read here first, with the same limits as everywhere
(``guards.read_body``: 413, 408), then sent with the client's headers minus the
hop-by-hop ones; the answer comes back with its status and headers (minus hop-by-hop),
its body as the worker sent it (not decompressed). Redirects are passed on, not
followed; no cookie is kept. A worker that does not answer within
``worker.api_timeout_s``, or is not running, is a 503 ``SERVICE_UNAVAILABLE`` with
``retry_after``. Nothing of the request (a key may be in a header) is logged here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from turret_stream.errors import ApiError, ErrorCode
from turret_stream.http.guards import read_body

# RFC 9110 7.6.1, plus what the client library sets itself (Host, Content-Length).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
# Connections kept open to the worker process.
MAX_CONNECTIONS = 64
RETRY_AFTER_S = 2


@dataclass
class Upstream:
    url: str
    timeout_s: float
    session: aiohttp.ClientSession | None = None


UPSTREAM = web.AppKey("upstream", Upstream)


def _end_to_end(headers: CIMultiDict[str] | web.Request) -> CIMultiDict[str]:
    source = headers.headers if isinstance(headers, web.Request) else headers
    # Headers named in Connection are hop-by-hop too.
    named = {
        token.strip().lower()
        for value in source.getall("Connection", [])
        for token in value.split(",")
    }
    return CIMultiDict(
        (name, value)
        for name, value in source.items()
        if name.lower() not in HOP_BY_HOP and name.lower() not in named
    )


async def forward_context(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the client session to the worker process, for the app's lifetime."""
    upstream = app[UPSTREAM]
    upstream.session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS),
        timeout=aiohttp.ClientTimeout(total=upstream.timeout_s),
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        # Only what the client sent: no Accept-Encoding or User-Agent of our own.
        skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent"),
    )
    yield
    await upstream.session.close()


def _unavailable() -> ApiError:
    return ApiError(
        503,
        ErrorCode.SERVICE_UNAVAILABLE,
        "The worker process is not answering; retry later.",
        retry_after=RETRY_AFTER_S,
    )


async def forward(request: web.Request) -> web.Response:
    upstream = request.app[UPSTREAM]
    if upstream.session is None:
        raise _unavailable()
    body = await read_body(request)
    rel = request.rel_url
    target = URL(
        upstream.url + rel.raw_path + (f"?{rel.raw_query_string}" if rel.raw_query_string else ""),
        encoded=True,
    )
    try:
        async with upstream.session.request(
            request.method,
            target,
            headers=_end_to_end(request),
            data=body if body else None,
            allow_redirects=False,
        ) as answer:
            payload = await answer.read()
            headers = _end_to_end(answer.headers)
            status, reason = answer.status, answer.reason
    except (aiohttp.ClientError, TimeoutError):
        raise _unavailable() from None
    return web.Response(status=status, reason=reason, body=payload, headers=headers)
