"""The read API (/v1/...): topics, events and search, scoped to the caller's project."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp import web

from turret_stream.errors import ApiError, ErrorCode, invalid, missing
from turret_stream.http.guards import read_body
from turret_stream.http.handlers import authenticate
from turret_stream.http.json_body import parse_json_body
from turret_stream.http.keys import EMBEDDER, QUERIES
from turret_stream.http.limits import (
    MAX_DESCRIPTION_CHARS,
    MAX_LABEL_CHARS,
    MAX_LIMIT,
    MAX_QUERY_CHARS,
)
from turret_stream.queries import NotFound
from turret_stream.storage import InvalidOffset


def _int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise invalid(name, f"must be an integer, got {raw[:64]!r}") from None
    if not low <= value <= high:
        raise invalid(name, f"must be between {low} and {high}, got {value}")
    return value


def _str_param(request: web.Request, name: str) -> str | None:
    value = request.query.get(name)
    if value is not None and not value.strip():
        raise invalid(name, "must not be empty")
    return value


async def _run(fn: Callable[..., dict[str, Any]], *args: Any) -> web.Response:
    # Store reads are blocking calls into Qdrant: keep them off the event loop.
    try:
        return web.json_response(await asyncio.to_thread(fn, *args))
    except NotFound as exc:
        raise ApiError(404, ErrorCode.NOT_FOUND, str(exc)) from exc
    except InvalidOffset:
        raise invalid(
            "cursor", "is not a cursor this API returned (pass back next_cursor)"
        ) from None


async def list_clusters(request: web.Request) -> web.Response:
    project = authenticate(request).project
    dimension = _str_param(request, "dimension")
    limit = _int_param(request, "limit", 50, 1, MAX_LIMIT)
    examples = _int_param(request, "examples", 3, 0, 20)
    sort = _sort_param(request)
    theme = _str_param(request, "theme")
    return await _run(
        request.app[QUERIES].clusters, project, dimension, limit, examples, sort, theme
    )


def _sort_param(request: web.Request) -> str:
    sort = request.query.get("sort", "size")
    if sort not in ("size", "growth"):
        raise invalid("sort", f"must be 'size' or 'growth', got {sort[:40]!r}")
    return sort


async def list_themes(request: web.Request) -> web.Response:
    """The level above topics: GET /v1/themes (largest first, or ``sort=growth``)."""
    project = authenticate(request).project
    dimension = _str_param(request, "dimension")
    limit = _int_param(request, "limit", 50, 1, MAX_LIMIT)
    sort = _sort_param(request)
    return await _run(request.app[QUERIES].themes, project, dimension, limit, sort)


async def get_theme(request: web.Request) -> web.Response:
    project = authenticate(request).project
    dimension = _str_param(request, "dimension")
    theme = request.match_info["theme_id"]
    return await _run(request.app[QUERIES].themes, project, dimension, 1, "size", theme)


async def cluster_segments(request: web.Request) -> web.Response:
    """A topic's share per enum segment value, and the values it over-represents."""
    project = authenticate(request).project
    dimension = _str_param(request, "dimension")
    topic = request.match_info["cluster_id"]
    return await _run(request.app[QUERIES].cluster_segments, project, topic, dimension)


async def get_cluster(request: web.Request) -> web.Response:
    project = authenticate(request).project
    dimension = _str_param(request, "dimension")
    examples = _int_param(request, "examples", 5, 0, 50)
    topic = request.match_info["cluster_id"]
    return await _run(request.app[QUERIES].cluster, project, topic, dimension, examples)


async def cluster_events(request: web.Request) -> web.Response:
    project = authenticate(request).project
    dimension = _str_param(request, "dimension")
    limit = _int_param(request, "limit", 50, 1, MAX_LIMIT)
    cursor = _str_param(request, "cursor")
    topic = request.match_info["cluster_id"]
    return await _run(request.app[QUERIES].cluster_events, project, topic, dimension, limit, cursor)


async def get_event(request: web.Request) -> web.Response:
    project = authenticate(request).project
    return await _run(request.app[QUERIES].event, project, request.match_info["event_id"])


async def search(request: web.Request) -> web.Response:
    project = authenticate(request).project
    query = request.query.get("q")
    if query is None:
        raise ApiError(
            400, ErrorCode.MISSING_REQUIRED_FIELD, "Missing required field: q", field="q"
        )
    if not query.strip() or len(query) > MAX_QUERY_CHARS:
        raise invalid("q", f"must be 1-{MAX_QUERY_CHARS} characters")
    dimension = _str_param(request, "dimension")
    limit = _int_param(request, "limit", 10, 1, 100)
    embedder = request.app[EMBEDDER]()
    [vector] = await asyncio.to_thread(embedder.embed, [query])
    return await _run(request.app[QUERIES].search, project, vector, dimension, limit)


async def set_label(request: web.Request) -> web.Response:
    """A person names a topic; automation never overwrites it."""
    project = authenticate(request).project
    dimension = _str_param(request, "dimension")
    name, description = await _label_body(request)
    topic = request.match_info["cluster_id"]
    return await _run(request.app[QUERIES].set_label, project, topic, dimension, name, description)


async def set_theme_label(request: web.Request) -> web.Response:
    """A person names a theme, as a topic (PUT /v1/themes/{id}/label)."""
    project = authenticate(request).project
    dimension = _str_param(request, "dimension")
    name, description = await _label_body(request)
    theme = request.match_info["theme_id"]
    return await _run(
        request.app[QUERIES].set_theme_label, project, theme, dimension, name, description
    )


async def _label_body(request: web.Request) -> tuple[str, str]:
    """``name`` and ``description`` of a label request, checked."""
    body = parse_json_body(await read_body(request))
    if not isinstance(body, dict):
        raise ApiError(400, ErrorCode.INVALID_REQUEST, "Request body must be a JSON object")
    name = body.get("name")
    if name is None:
        raise missing("name")
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_LABEL_CHARS:
        raise invalid("name", f"must be a string of 1-{MAX_LABEL_CHARS} characters")
    description = body.get("description", "")
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION_CHARS:
        raise invalid(
            "description", f"must be a string of at most {MAX_DESCRIPTION_CHARS} characters"
        )
    return name.strip(), description.strip()
