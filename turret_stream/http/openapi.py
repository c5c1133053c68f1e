"""The OpenAPI 3.1 document served at /openapi.json; limits come from the settings.

It describes every route the API serves (a test fails when a route is registered without
being here); routes of a browser dashboard (anything outside ``API_PREFIXES``) are not
part of the API and are left out.
"""

from __future__ import annotations

from typing import Any

from turret_stream import __version__
from turret_stream.errors import ErrorCode
from turret_stream.http.limits import (
    MAX_DESCRIPTION_CHARS,
    MAX_LABEL_CHARS,
    MAX_LIMIT,
    MAX_QUERY_CHARS,
    MAX_TOP_PATHS,
)
from turret_stream.http.openapi_alerts import alert_paths, alert_schemas
from turret_stream.settings import Settings

# Paths the document must cover; anything else the app serves is a browser page.
API_PREFIXES = ("/v1/", "/track", "/healthz", "/readyz", "/metrics", "/openapi.json")


def _error(codes: list[ErrorCode], description: str, retry: bool = False) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "allOf": [
            {"$ref": "#/components/schemas/Error"},
            {"properties": {"code": {"enum": [str(c) for c in codes]}}},
        ]
    }
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }
    if retry:
        response["headers"] = {
            "Retry-After": {
                "description": "Seconds to wait before retrying.",
                "schema": {"type": "integer"},
            }
        }
    return response


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _ok(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _query(
    name: str, schema: dict[str, Any], description: str, required: bool = False
) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "schema": schema,
        "description": description,
    }


def _path(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string", "minLength": 1},
        "description": description,
    }


def _int(low: int, high: int, default: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": low, "maximum": high, "default": default}


_BAD_PARAMS = _error(
    [ErrorCode.INVALID_REQUEST, ErrorCode.MISSING_REQUIRED_FIELD],
    "A parameter is missing, out of range or malformed (the message and `field` name it); "
    "an API key in the query string.",
)
_NO_KEY = _error([ErrorCode.INVALID_API_KEY], "Missing, unknown or revoked key; a key in the URL.")
_NOT_FOUND = _error(
    [ErrorCode.NOT_FOUND], "The project has no such dimension, topic, event, session or user."
)


def _read(
    summary: str,
    ok: dict[str, Any],
    parameters: list[dict[str, Any]],
    not_found: bool = True,
) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": ok, "400": _BAD_PARAMS, "401": _NO_KEY}
    if not_found:
        responses["404"] = _NOT_FOUND
    return {
        "summary": summary,
        "security": [{"apiKey": []}],
        "parameters": parameters,
        "responses": responses,
    }


def _schemas(settings: Settings) -> dict[str, Any]:
    limits = settings.limits
    scalar = {"type": ["string", "number", "boolean", "null"], "maxLength": limits.max_text_chars}
    optional_id = {
        "type": ["string", "null"],
        "minLength": 1,
        "maxLength": limits.max_id_chars,
    }
    obj = {"type": "object"}
    timestamp = {"type": ["string", "null"], "format": "date-time"}
    cluster = {
        "type": "object",
        "required": ["id", "status", "size"],
        "properties": {
            "id": {"type": "string"},
            "label": {"type": ["string", "null"]},
            "description": {"type": ["string", "null"]},
            "label_source": {"type": ["string", "null"]},
            "status": {"type": ["string", "null"]},
            "size": {"type": "integer"},
            "share": {"type": "number"},
            "first_seen": timestamp,
            "last_seen": timestamp,
            "counts": obj,
            "micro_clusters": {"type": "integer"},
            "neutral": {"type": "boolean"},
            "trend": {
                "type": ["string", "null"],
                "enum": ["spiking", "new", "rising", "fading", "cooling", "steady", None],
                "description": "From the topic's own hourly counts (README, read API).",
            },
            "growth": {
                "type": ["number", "null"],
                "description": "(current - previous) / previous over two 24 h windows.",
            },
            "window_events": {
                "type": ["object", "null"],
                "properties": {
                    "current": {"type": "integer"},
                    "previous": {"type": "integer"},
                },
            },
            "created_at": timestamp,
            "merged_into": {"type": "string"},
            "current_id": {"type": ["string", "null"]},
            "label_history": {"type": "array"},
            "examples": {"type": "array", "items": obj},
        },
    }
    event = {
        "type": "object",
        "required": ["event_id", "session_id", "user_id"],
        "properties": {
            "event_id": {"type": "string"},
            "name": {"type": "string"},
            "text": {"type": "string"},
            "metadata": obj,
            "session_id": {"type": "string"},
            "user_id": {"type": "string"},
            "timestamp": timestamp,
            "micro_cluster": {"type": ["integer", "null"]},
            "cluster_id": {"type": ["string", "null"]},
            "similarity": {"type": "number"},
            "dimensions": obj,
        },
    }
    journey_envelope = {
        "type": "object",
        "required": ["success", "project", "dimension", "truncated"],
        "properties": {
            "success": {"const": True},
            "project": {"type": "string"},
            "dimension": {"type": "string"},
            "since": timestamp,
            "until": timestamp,
            "segments": {"type": "array", "items": {"type": "string"}},
            "min_switch_events": {"type": "integer"},
            "truncated": {
                "type": "boolean",
                "description": "More events matched than one request reads.",
            },
            "totals": obj,
        },
    }
    return {
        "TrackRequest": {
            "type": "object",
            "required": ["name", "metadata"],
            "properties": {
                "name": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": limits.max_name_chars,
                    "description": "Event name, e.g. user_prompt.",
                },
                "metadata": {
                    "type": "object",
                    "maxProperties": limits.max_metadata_keys,
                    "propertyNames": {"minLength": 1, "maxLength": limits.max_metadata_key_chars},
                    "additionalProperties": scalar,
                    "description": "Each text key is a clustering dimension; other "
                    "values are context. Longer texts: 400 TEXT_TOO_LONG. Numbers are "
                    "finite, integers fit in 64 bits; text is valid Unicode (no lone "
                    "surrogates).",
                },
                "session_id": {
                    **optional_id,
                    "description": "Events of one session are ordered; absent or null: "
                    "generated (UUID4).",
                },
                "user_id": {**optional_id, "description": "Absent or null: generated (UUID4)."},
            },
        },
        "TrackResponse": {
            "type": "object",
            "required": ["success", "message", "event_id", "session_id", "user_id"],
            "properties": {
                "success": {"const": True},
                "message": {"type": "string"},
                "event_id": {"type": "string", "pattern": "^evt_[0-9a-f]{32}$"},
                "session_id": {"type": "string"},
                "user_id": {"type": "string"},
            },
        },
        "Error": {
            "type": "object",
            "required": ["success", "error", "code"],
            "properties": {
                "success": {"const": False},
                "error": {"type": "string"},
                "code": {"type": "string", "enum": [str(c) for c in ErrorCode]},
                "retry_after": {"type": "integer"},
                "field": {"type": "string"},
            },
        },
        "LabelRequest": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": MAX_LABEL_CHARS},
                "description": {"type": "string", "maxLength": MAX_DESCRIPTION_CHARS},
            },
        },
        "Cluster": cluster,
        "Event": event,
        "ClusterList": {
            "type": "object",
            "required": ["success", "project", "dimension", "clusters"],
            "properties": {
                "success": {"const": True},
                "project": {"type": "string"},
                "dimension": {"type": "string"},
                "total_events": {"type": "integer"},
                "unassigned_events": {"type": "integer"},
                "total_clusters": {"type": "integer"},
                "clusters": {"type": "array", "items": _ref("Cluster")},
            },
        },
        "ClusterResponse": {
            "type": "object",
            "required": ["success", "cluster"],
            "properties": {
                "success": {"const": True},
                "project": {"type": "string"},
                "dimension": {"type": "string"},
                "cluster": _ref("Cluster"),
            },
        },
        "LabelResponse": {
            "type": "object",
            "required": ["success", "cluster_id", "label"],
            "properties": {
                "success": {"const": True},
                "cluster_id": {"type": "string"},
                "label": obj,
            },
        },
        "EventPage": {
            "type": "object",
            "required": ["success", "events", "next_cursor"],
            "properties": {
                "success": {"const": True},
                "cluster_id": {"type": "string"},
                "events": {"type": "array", "items": _ref("Event")},
                "next_cursor": {
                    "type": ["string", "null"],
                    "description": "Pass back as `cursor` for the next page; null: last page.",
                },
            },
        },
        "EventResponse": {
            "type": "object",
            "required": ["success", "event"],
            "properties": {"success": {"const": True}, "event": _ref("Event")},
        },
        "SearchResponse": {
            "type": "object",
            "required": ["success", "results"],
            "properties": {
                "success": {"const": True},
                "project": {"type": "string"},
                "dimension": {"type": "string"},
                "results": {"type": "array", "items": _ref("Event")},
            },
        },
        "SessionJourney": {
            "allOf": [
                _ref("JourneyEnvelope"),
                {
                    "required": ["session_id", "path", "steps"],
                    "properties": {
                        "session_id": {"type": "string"},
                        "events": {"type": "integer"},
                        "path": {"type": "array"},
                        "steps": {"type": "array", "items": obj},
                    },
                },
            ]
        },
        "UserSessions": {
            "allOf": [
                _ref("JourneyEnvelope"),
                {
                    "required": ["user_id", "sessions"],
                    "properties": {
                        "user_id": {"type": "string"},
                        "returning": {"type": "boolean"},
                        "total_sessions": {"type": "integer"},
                        "sessions": {"type": "array", "items": obj},
                    },
                },
            ]
        },
        "JourneyEnvelope": journey_envelope,
        "JourneyTable": {
            "allOf": [_ref("JourneyEnvelope"), {"required": ["totals"]}],
            "description": "Totals plus one table: `transitions` (with `follow_ups`, "
            "`back_and_forth`), `paths`, `entries` or `dropoffs`.",
        },
    }


def openapi_document(settings: Settings) -> dict[str, Any]:
    limits = settings.limits
    dimension = _query(
        "dimension",
        {"type": "string", "minLength": 1, "maxLength": limits.max_metadata_key_chars},
        "A text metadata key; default: the project's largest dimension.",
    )
    journey_filters = [
        dimension,
        _query(
            "since",
            {"type": "string"},
            "ISO 8601 (no offset: UTC) or seconds since the epoch, 1970 to 9999.",
        ),
        _query("until", {"type": "string"}, "Same form as `since`; not before it."),
        {
            **_query(
                "segment",
                {"type": "array", "items": {"type": "string", "pattern": "^[^:]+:.+$"}},
                "`key:value` on the events' metadata (repeatable; all must hold). A key "
                "must not contain '\"', '\\' or control characters.",
            ),
            "style": "form",
            "explode": True,
        },
        *_THEME_JOURNEY_FILTERS,
    ]
    cluster_id = _path("cluster_id", "A topic id (`tp_...`).")
    body_errors = {
        "408": _error([ErrorCode.REQUEST_TIMEOUT], "The body did not arrive in time."),
        "413": _error(
            [ErrorCode.PAYLOAD_TOO_LARGE], f"Body over {settings.http.max_body_bytes} bytes."
        ),
    }
    journey_table = _ok("Totals and the table.", _ref("JourneyTable"))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "turret-stream",
            "version": __version__,
            "description": "Turret-compatible event ingestion (POST /track) and the read "
            "API over topics, events, journeys and the live feed. Every error is JSON "
            '`{"success": false, "error": ..., "code": ...}`.',
        },
        "components": {
            "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
            "schemas": {**_schemas(settings), **alert_schemas()},
        },
        "paths": {
            **_dashboard_paths(),
            **_theme_paths(dimension, cluster_id),
            **alert_paths(settings),
            "/track": {
                "post": {
                    "summary": "Track one event",
                    "security": [{"apiKey": []}],
                    "parameters": [
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "required": False,
                            "schema": {
                                "type": "string",
                                "maxLength": limits.max_idempotency_key_chars,
                            },
                            "description": "Same key, same event: retries are counted once. "
                            "Printable ASCII; empty means no key.",
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("TrackRequest")}},
                    },
                    "responses": {
                        "200": _ok("Written to the broker (acks=all).", _ref("TrackResponse")),
                        "400": _error(
                            [
                                ErrorCode.MISSING_REQUIRED_FIELD,
                                ErrorCode.INVALID_REQUEST,
                                ErrorCode.TEXT_TOO_LONG,
                            ],
                            "The body is not a valid event.",
                        ),
                        "401": _NO_KEY,
                        **body_errors,
                        "429": _error(
                            [ErrorCode.RATE_LIMIT_EXCEEDED], "Rate limit exceeded.", retry=True
                        ),
                        "503": _error(
                            [ErrorCode.SERVICE_UNAVAILABLE],
                            "The broker did not acknowledge the write; nothing was tracked.",
                            retry=True,
                        ),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Liveness",
                    "responses": {
                        "200": _ok(
                            "The process is up.",
                            {"type": "object", "properties": {"status": {"const": "ok"}}},
                        )
                    },
                }
            },
            "/readyz": {
                "get": {
                    "summary": "Readiness: broker reachable and worker running",
                    "responses": {
                        "200": _ok(
                            "Ready.",
                            {
                                "type": "object",
                                "properties": {
                                    "status": {"const": "ready"},
                                    "checks": {"type": "object"},
                                },
                            },
                        ),
                        "503": _error(
                            [ErrorCode.NOT_READY],
                            "Not ready; `checks` names what is not: broker `unreachable`, "
                            "worker `not running`, pipeline `behind`, or broker and worker "
                            "`restarting` while `up` replaces its embedded broker (`/track` "
                            "still accepts then).",
                        ),
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {"200": _ok("OpenAPI 3.1.", {"type": "object"})},
                }
            },
            "/v1/clusters": {
                "get": _read(
                    "Topics of a dimension, largest first",
                    _ok("The topics.", _ref("ClusterList")),
                    [
                        dimension,
                        _query("limit", _int(1, MAX_LIMIT, 50), "Topics to return."),
                        _query("examples", _int(0, 20, 3), "Example events per topic."),
                        _query(
                            "sort",
                            {"type": "string", "enum": ["size", "growth"], "default": "size"},
                            "Largest first, or fastest growing first.",
                        ),
                        _query("theme", {"type": "string"}, "Only the topics of this theme."),
                    ],
                )
            },
            "/v1/clusters/{cluster_id}": {
                "get": _read(
                    "One topic (a merged topic says where it went)",
                    _ok("The topic.", _ref("ClusterResponse")),
                    [cluster_id, dimension, _query("examples", _int(0, 50, 5), "Examples.")],
                )
            },
            "/v1/clusters/{cluster_id}/label": {
                "put": {
                    **_read(
                        "Name a topic by hand (automation never overwrites it)",
                        _ok("The label now in force.", _ref("LabelResponse")),
                        [cluster_id, dimension],
                    ),
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("LabelRequest")}},
                    },
                }
            },
            "/v1/clusters/{cluster_id}/events": {
                "get": _read(
                    "A topic's events, page by page",
                    _ok("One page.", _ref("EventPage")),
                    [
                        cluster_id,
                        dimension,
                        _query("limit", _int(1, MAX_LIMIT, 50), "Events per page."),
                        _query(
                            "cursor",
                            {"type": "string", "minLength": 1},
                            "`next_cursor` of the previous page; anything else: 400.",
                        ),
                    ],
                )
            },
            "/v1/events/{event_id}": {
                "get": _read(
                    "One event, with its topic in every dimension",
                    _ok("The event.", _ref("EventResponse")),
                    [_path("event_id", "The `event_id` /track returned.")],
                )
            },
            "/v1/search": {
                "get": _read(
                    "Events most similar to a text",
                    _ok("The nearest events.", _ref("SearchResponse")),
                    [
                        _query(
                            "q",
                            {"type": "string", "minLength": 1, "maxLength": MAX_QUERY_CHARS},
                            "The text to search for.",
                            required=True,
                        ),
                        dimension,
                        _query("limit", _int(1, 100, 10), "Results."),
                    ],
                )
            },
            "/v1/live": {
                "get": {
                    "summary": "WebSocket feed of the project's journey transitions and "
                    "topic events",
                    "description": "Messages: `transition`; topic events `topic_created`, "
                    "`topic_merged`, `topic_split`, `topic_labelled`, `topic_spiking` (id, "
                    "project, dimension, topic, label, size, examples, at, event_time, and "
                    "merged_into / split_from / this_hour, baseline_per_hour, p_value); "
                    "`heartbeat`. Key: `X-API-Key` header, subprotocols "
                    '`["turret.v1", key]`, or a first message `{"type": "auth", '
                    '"api_key": ...}`; never the URL. Close codes: 4001 invalid or revoked '
                    "key, 4008 client too slow, 4029 too many sockets for the key, 1013 "
                    "server full, 1001 shutting down.",
                    "parameters": [
                        _query(
                            "dimension",
                            {
                                "type": "string",
                                "minLength": 1,
                                "maxLength": limits.max_metadata_key_chars,
                            },
                            "Only this dimension's transitions.",
                        ),
                        _query(
                            "session_id",
                            {"type": "string", "minLength": 1, "maxLength": limits.max_id_chars},
                            "Only this session's transitions.",
                        ),
                        _query(
                            "user_id",
                            {"type": "string", "minLength": 1, "maxLength": limits.max_id_chars},
                            "Only this user's transitions.",
                        ),
                        _query(
                            "events",
                            {"enum": ["all", "transitions", "topics"], "default": "all"},
                            "`topics`: topic events alone; `transitions`: transitions alone. "
                            "Sockets filtered by session_id or user_id get transitions only.",
                        ),
                    ],
                    "responses": {
                        "101": {"description": "Switching to the WebSocket protocol."},
                        "400": _BAD_PARAMS,
                        "401": _NO_KEY,
                        "426": _error(
                            [ErrorCode.INVALID_REQUEST], "Not a WebSocket upgrade request."
                        ),
                    },
                }
            },
            "/v1/sessions/{session_id}/journey": {
                "get": _read(
                    "A session's path through topics, step by step",
                    _ok("The journey.", _ref("SessionJourney")),
                    [_path("session_id", "A session id."), *journey_filters],
                )
            },
            "/v1/users/{user_id}/sessions": {
                "get": _read(
                    "A user's sessions, oldest first",
                    _ok("The sessions.", _ref("UserSessions")),
                    [_path("user_id", "A user id."), *journey_filters],
                )
            },
            "/v1/journeys/transitions": {
                "get": _read("Topic-to-topic transition counts", journey_table, journey_filters)
            },
            "/v1/journeys/paths": {
                "get": _read(
                    "The most common paths",
                    journey_table,
                    [*journey_filters, _query("top", _int(1, MAX_TOP_PATHS, 10), "Paths.")],
                )
            },
            "/v1/journeys/entries": {
                "get": _read("Where sessions start", journey_table, journey_filters)
            },
            "/v1/journeys/dropoffs": {
                "get": _read("Where sessions stop", journey_table, journey_filters)
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics: lag, counters, journal, processes by role",
                    "responses": {
                        "200": {
                            "description": "Prometheus text exposition format.",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/v1/dead-letters": {
                "get": {
                    "summary": "Events of the key's project that the pipeline set aside",
                    "security": [{"apiKey": []}],
                    "parameters": [
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "Most recent first: id, event_id, stage, "
                            "dimension, error, event (the original), failed_at, replayed_at.",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        "400": _error([ErrorCode.INVALID_REQUEST], "Bad limit."),
                        "401": _error([ErrorCode.INVALID_API_KEY], "Bad key."),
                    },
                }
            },
        },
    }


_THEME_JOURNEY_FILTERS = [
    _query(
        "theme",
        {"type": "string"},
        "Only the events of this theme's topics (a merged theme's id names its successor).",
    ),
    _query(
        "level",
        {"type": "string", "enum": ["topic", "theme"], "default": "topic"},
        "Journeys between topics, or between themes (an event counts in its topic's theme).",
    ),
]


def _theme_paths(dimension: dict[str, Any], cluster_id: dict[str, Any]) -> dict[str, Any]:
    """Themes (the level above topics) and a topic's breakdown by segment."""
    obj = {"type": "object"}
    sort = _query(
        "sort",
        {"type": "string", "enum": ["size", "growth"], "default": "size"},
        "Largest first, or fastest growing first.",
    )
    return {
        "/v1/themes": {
            "get": _read(
                "Themes of a dimension (groups of related topics), largest first: size, "
                "share, label, trend tag and growth from their topics' summed counts, "
                "their largest topics",
                _ok("The themes.", obj),
                [dimension, _query("limit", _int(1, MAX_LIMIT, 50), "Themes to return."), sort],
            )
        },
        "/v1/themes/{theme_id}": {
            "get": _read(
                "One theme with all its topics (a merged theme's id answers its successor, "
                "with requested_id)",
                _ok("The theme.", obj),
                [_path("theme_id", "A theme id (`th_...`)."), dimension],
            )
        },
        "/v1/themes/{theme_id}/label": {
            "put": {
                **_read(
                    "Name a theme by hand (automation never overwrites it)",
                    _ok("The label now in force.", obj),
                    [_path("theme_id", "A live theme id (`th_...`)."), dimension],
                ),
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("LabelRequest")}},
                },
            }
        },
        "/v1/clusters/{cluster_id}/segments": {
            "get": _read(
                "A topic's events by enum segment value against the project's, and the "
                "values it over-represents (one-sided binomial test, Bonferroni-adjusted "
                "p_value < 0.01, lift >= 1.2)",
                _ok("The breakdown.", obj),
                [cluster_id, dimension],
            )
        },
    }


def _dashboard_paths() -> dict[str, Any]:
    """The endpoints added for the dashboard (journey flows, the project's dimensions)."""
    journey_filters = [
        {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
        for name in ("dimension", "since", "until", "segment", "theme", "level")
    ]
    ok = {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}
    unauthorized = _error([ErrorCode.INVALID_API_KEY], "Missing or unknown key.")
    return {
        "/v1/dimensions": {
            "get": {
                "summary": "The project's metadata keys, their types and whether decided; "
                "text keys over limits.max_text_dimensions are listed in capped",
                "security": [{"apiKey": []}],
                "responses": {
                    "200": ok,
                    "400": _error([ErrorCode.INVALID_REQUEST], "A parameter is invalid."),
                    "401": unauthorized,
                },
            }
        },
        "/v1/journeys/flows": {
            "get": {
                "summary": "Topic flows by step, for a Sankey",
                "description": "nodes (step, topic, sessions, ended), links (step, from, to, "
                "count, probability = P(next | current)), beyond, and labels of the topics.",
                "security": [{"apiKey": []}],
                "parameters": [
                    {
                        "name": "steps",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": 10, "default": 4},
                    },
                    *journey_filters,
                ],
                "responses": {
                    "200": ok,
                    "400": _error([ErrorCode.INVALID_REQUEST], "A parameter is invalid."),
                    "401": unauthorized,
                    "404": _error([ErrorCode.NOT_FOUND], "Unknown dimension."),
                },
            }
        },
    }
