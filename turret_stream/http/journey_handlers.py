"""The journeys API (/v1/journeys/..., a session's journey, a user's sessions), scoped to
the caller's project. Parameters parse like the rest of the read API (read_handlers)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from turret_stream.catalog import dimension_names
from turret_stream.errors import invalid
from turret_stream.http.handlers import authenticate
from turret_stream.http.keys import JOURNEYS, QUERIES
from turret_stream.http.limits import MAX_TOP_PATHS
from turret_stream.http.read_handlers import _int_param, _run, _str_param
from turret_stream.journey_queries import JourneyFilter

# Times a filter can name: the epoch to the end of year 9999 (what ISO 8601 can write).
EARLIEST_TS = 0.0
LATEST_TS = 253402300799.0
# A segment key is quoted in the store's payload path: these characters cannot be.
_UNQUOTABLE = re.compile(r'["\\\x00-\x1f\x7f]')
MAX_FLOW_STEPS = 10
# Keys under which a journey answer names a topic (a string), or a list of them ("path").
_TOPIC_KEYS = frozenset({"topic", "from", "to", "via", "from_topic", "to_topic"})


def _topic_ids(value: Any, found: set[str]) -> set[str]:
    """Every topic id a journey answer names, wherever it sits."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in _TOPIC_KEYS and isinstance(item, str):
                found.add(item)
            elif key == "path" and isinstance(item, list):
                found.update(t for t in item if isinstance(t, str))
            elif key == "follow_ups" and isinstance(item, dict):
                found.update(item)
                _topic_ids(item, found)
            else:
                _topic_ids(item, found)
    elif isinstance(value, list):
        for item in value:
            _topic_ids(item, found)
    return found


async def _labelled(
    request: web.Request, project: str, fn: Callable[..., dict[str, Any]], *args: Any
) -> web.Response:
    """Run a journey query and add ``labels``: topic (or theme) id -> its label (null while
    unnamed) for every one the answer names, so a client needs no request per topic."""
    queries = request.app[QUERIES]

    def answer() -> dict[str, Any]:
        body = fn(project, *args)
        ids = sorted(_topic_ids(body, set()))
        names = dimension_names(project, body["dimension"])
        found = queries.labels_of(names, ids)
        body["labels"] = {t: found[t].name if t in found else None for t in ids}
        return body

    return await _run(answer)


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
    theme = _str_param(request, "theme")
    level = request.query.get("level", "topic")
    if level not in ("topic", "theme"):
        raise invalid("level", f"must be 'topic' or 'theme', got {level[:40]!r}")
    return JourneyFilter(since, until, tuple(segments), theme, level)


async def session_journey(request: web.Request) -> web.Response:
    project = authenticate(request).project
    dimension = _str_param(request, "dimension")
    flt = _journey_filter(request)
    session_id = request.match_info["session_id"]
    journeys = request.app[JOURNEYS]

    def with_messages(project: str) -> dict[str, Any]:
        body = journeys.session(project, session_id, dimension, flt)
        body["messages"] = journeys.session_messages(
            project, session_id, body["dimension"], flt, body["steps"]
        )
        return body

    return await _labelled(request, project, with_messages)


async def user_sessions(request: web.Request) -> web.Response:
    project = authenticate(request).project
    dimension = _str_param(request, "dimension")
    flt = _journey_filter(request)
    user_id = request.match_info["user_id"]
    return await _labelled(
        request, project, request.app[JOURNEYS].user_sessions, user_id, dimension, flt
    )


async def transitions(request: web.Request) -> web.Response:
    project = authenticate(request).project
    dimension = _str_param(request, "dimension")
    flt = _journey_filter(request)
    return await _labelled(request, project, request.app[JOURNEYS].transitions, dimension, flt)


async def paths(request: web.Request) -> web.Response:
    project = authenticate(request).project
    dimension = _str_param(request, "dimension")
    flt = _journey_filter(request)
    top = _int_param(request, "top", 10, 1, MAX_TOP_PATHS)
    return await _labelled(request, project, request.app[JOURNEYS].paths, dimension, flt, top)


async def entries(request: web.Request) -> web.Response:
    project = authenticate(request).project
    dimension = _str_param(request, "dimension")
    flt = _journey_filter(request)
    return await _labelled(request, project, request.app[JOURNEYS].entries, dimension, flt)


async def dropoffs(request: web.Request) -> web.Response:
    project = authenticate(request).project
    dimension = _str_param(request, "dimension")
    flt = _journey_filter(request)
    return await _labelled(request, project, request.app[JOURNEYS].dropoffs, dimension, flt)


async def flows(request: web.Request) -> web.Response:
    """Step-indexed flows for a Sankey: GET /v1/journeys/flows?steps=N."""
    project = authenticate(request).project
    dimension = _str_param(request, "dimension")
    flt = _journey_filter(request)
    steps = _int_param(request, "steps", 4, 1, MAX_FLOW_STEPS)
    return await _labelled(request, project, request.app[JOURNEYS].flows, dimension, flt, steps)
