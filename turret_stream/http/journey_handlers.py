"""The journeys API (/v1/journeys/..., a session's journey, a user's sessions), scoped to
the caller's project. Parameters parse like the rest of the read API (read_handlers)."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

from aiohttp import web

from turret_stream.errors import invalid
from turret_stream.http.handlers import authenticate
from turret_stream.http.keys import JOURNEYS
from turret_stream.http.limits import MAX_TOP_PATHS
from turret_stream.http.read_handlers import _int_param, _run, _str_param
from turret_stream.journey_queries import JourneyFilter

# Times a filter can name: the epoch to the end of year 9999 (what ISO 8601 can write).
EARLIEST_TS = 0.0
LATEST_TS = 253402300799.0
# A segment key is quoted in the store's payload path: these characters cannot be.
_UNQUOTABLE = re.compile(r'["\\\x00-\x1f\x7f]')


def _time_param(request: web.Request, name: str) -> float | None:
    """ISO 8601 (a time without offset is UTC) or seconds since the epoch, between
    1970-01-01 and 9999-12-31 UTC."""
    raw = _str_param(request, name)
    if raw is None:
        return None
    problem = f"must be ISO 8601 or seconds since the epoch, got {raw[:64]!r}"
    try:
        value = float(raw)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(raw.strip())
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            value = parsed.timestamp()
        except (ValueError, OverflowError, OSError):
            # 0001-01-01T00:00:00+14:00 parses, but is before year 1 in UTC.
            raise invalid(name, problem) from None
    if not math.isfinite(value) or not EARLIEST_TS <= value <= LATEST_TS:
        raise invalid(
            name,
            "must be between 1970-01-01 and 9999-12-31 UTC "
            f"(0 to {LATEST_TS:.0f} seconds since the epoch), got {raw[:64]!r}",
        )
    return value


def _journey_filter(request: web.Request) -> JourneyFilter:
    since, until = _time_param(request, "since"), _time_param(request, "until")
    if since is not None and until is not None and since > until:
        raise invalid("since", "must not be after 'until'")
    segments = []
    for raw in request.query.getall("segment", []):
        key, sep, value = raw.partition(":")
        if not sep or not key.strip() or not value:
            raise invalid("segment", f"must be key:value (e.g. platform:mobile), got {raw[:64]!r}")
        if _UNQUOTABLE.search(key):
            raise invalid("segment", "a key must not contain '\"', '\\' or control characters")
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
