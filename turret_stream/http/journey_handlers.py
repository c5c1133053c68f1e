"""The journeys API (/v1/journeys/..., a session's journey, a user's sessions), scoped to
the caller's project. Parameters parse like the rest of the read API (read_handlers)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from aiohttp import web

from turret_stream.errors import invalid
from turret_stream.http.handlers import authenticate
from turret_stream.http.keys import JOURNEYS
from turret_stream.http.read_handlers import _int_param, _run, _str_param
from turret_stream.journey_queries import JourneyFilter

MAX_TOP_PATHS = 100


def _time_param(request: web.Request, name: str) -> float | None:
    """ISO 8601 (a time without offset is UTC) or seconds since the epoch."""
    raw = _str_param(request, name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(raw.strip())
        except ValueError:
            raise invalid(
                name, f"must be ISO 8601 or seconds since the epoch, got {raw!r}"
            ) from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    if not math.isfinite(value):
        raise invalid(name, f"must be a finite number of seconds, got {raw!r}")
    return value


def _journey_filter(request: web.Request) -> JourneyFilter:
    since, until = _time_param(request, "since"), _time_param(request, "until")
    if since is not None and until is not None and since > until:
        raise invalid("since", "must not be after 'until'")
    segments = []
    for raw in request.query.getall("segment", []):
        key, sep, value = raw.partition(":")
        if not sep or not key.strip() or not value:
            raise invalid("segment", f"must be key:value (e.g. platform:mobile), got {raw!r}")
        segments.append((key, value))
    return JourneyFilter(since, until, tuple(segments))


async def session_journey(request: web.Request) -> web.Response:
    project = authenticate(request).project
    dimension = _str_param(request, "dimension")
    flt = _journey_filter(request)
    session_id = request.match_info["session_id"]
    return await _run(request.app[JOURNEYS].session, project, session_id, dimension, flt)


async def user_sessions(request: web.Request) -> web.Response:
    project = authenticate(request).project
    dimension = _str_param(request, "dimension")
    flt = _journey_filter(request)
    user_id = request.match_info["user_id"]
    return await _run(request.app[JOURNEYS].user_sessions, project, user_id, dimension, flt)


async def transitions(request: web.Request) -> web.Response:
    project = authenticate(request).project
    dimension = _str_param(request, "dimension")
    flt = _journey_filter(request)
    return await _run(request.app[JOURNEYS].transitions, project, dimension, flt)


async def paths(request: web.Request) -> web.Response:
    project = authenticate(request).project
    dimension = _str_param(request, "dimension")
    flt = _journey_filter(request)
    top = _int_param(request, "top", 10, 1, MAX_TOP_PATHS)
    return await _run(request.app[JOURNEYS].paths, project, dimension, flt, top)


async def entries(request: web.Request) -> web.Response:
    project = authenticate(request).project
    dimension = _str_param(request, "dimension")
    flt = _journey_filter(request)
    return await _run(request.app[JOURNEYS].entries, project, dimension, flt)


async def dropoffs(request: web.Request) -> web.Response:
    project = authenticate(request).project
    dimension = _str_param(request, "dimension")
    flt = _journey_filter(request)
    return await _run(request.app[JOURNEYS].dropoffs, project, dimension, flt)
