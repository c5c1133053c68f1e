"""ApiRunner: aiohttp's AppRunner whose low-level errors are JSON and never echo input.

aiohttp answers a request it cannot parse (bad request line, a header with control
characters, a broken chunked body) itself, before any middleware, as ``text/plain`` with
the parser's message, and logs that message: both quote the offending bytes, so a
malformed ``X-API-Key`` header ended up, key included, in the answer and the log. Here
those answers are the documented JSON error, and the log names the error class only.

Use ``ApiRunner(app)`` wherever the API is served (``web.AppRunner(app)`` otherwise).
"""

from __future__ import annotations

import json
import logging

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from turret_stream.errors import ApiError, ErrorCode

log = logging.getLogger(__name__)


def _low_level_error(status: int) -> ApiError:
    if status >= 500:
        return ApiError(500, ErrorCode.INTERNAL_ERROR, "Internal server error")
    if status == 413:
        return ApiError(413, ErrorCode.PAYLOAD_TOO_LARGE, "Request too large")
    return ApiError(status, ErrorCode.INVALID_REQUEST, "Malformed HTTP request")


class _JsonErrorsHandler(RequestHandler):
    __slots__ = ()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500:
            # A bug, not bad input: the trace goes to the log (it holds no request bytes).
            log.error("unhandled error serving a request", exc_info=exc)
        else:
            # The exception's text quotes the request's bytes (a header, maybe a key).
            log.info(
                "refused a malformed HTTP request from %s: %s",
                request.remote,
                type(exc).__name__ if exc is not None else status,
            )
        if request.writer.output_size > 0:
            raise ConnectionError("a response was already sent: cannot send the error")
        error = _low_level_error(status)
        response = web.Response(
            status=error.status,
            text=json.dumps(error.body()),
            content_type="application/json",
        )
        response.force_close()
        return response


class _JsonErrorsServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _JsonErrorsHandler(self, loop=self._loop, **self._kwargs)


class ApiRunner(web.AppRunner):
    """An AppRunner for the API app (see the module docstring)."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # The app builds its Server (its handler, request factory, handler_args); only
        # the protocol class it makes per connection differs.
        server.__class__ = _JsonErrorsServer
        return server
