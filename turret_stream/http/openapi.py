"""The OpenAPI 3.1 document served at /openapi.json; limits come from the settings."""

from __future__ import annotations

from typing import Any

from turret_stream import __version__
from turret_stream.errors import ErrorCode
from turret_stream.settings import Settings


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


def openapi_document(settings: Settings) -> dict[str, Any]:
    limits = settings.limits
    scalar = {"type": ["string", "number", "boolean", "null"], "maxLength": limits.max_text_chars}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "turret-stream",
            "version": __version__,
            "description": "Turret-compatible event ingestion: POST what users type to /track.",
        },
        "components": {
            "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
            "schemas": {
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
                            "additionalProperties": scalar,
                            "description": "Each text key is a clustering dimension; other "
                            "values are context. Longer texts: 400 TEXT_TOO_LONG.",
                        },
                        "session_id": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": limits.max_id_chars,
                            "description": "Events of one session are ordered; generated "
                            "(UUID4) when absent.",
                        },
                        "user_id": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": limits.max_id_chars,
                            "description": "Generated (UUID4) when absent.",
                        },
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
                        "code": {"type": "string"},
                        "retry_after": {"type": "integer"},
                        "field": {"type": "string"},
                    },
                },
            },
        },
        "paths": {
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
                            "description": "Same key, same event: retries are counted once.",
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/TrackRequest"}
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "Written to the broker (acks=all).",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/TrackResponse"}
                                }
                            },
                        },
                        "400": _error(
                            [
                                ErrorCode.MISSING_REQUIRED_FIELD,
                                ErrorCode.INVALID_REQUEST,
                                ErrorCode.TEXT_TOO_LONG,
                            ],
                            "The body is not a valid event.",
                        ),
                        "401": _error([ErrorCode.INVALID_API_KEY], "Missing or unknown key."),
                        "413": _error(
                            [ErrorCode.PAYLOAD_TOO_LARGE],
                            f"Body over {settings.http.max_body_bytes} bytes.",
                        ),
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
                    "responses": {"200": {"description": "The process is up."}},
                }
            },
            "/readyz": {
                "get": {
                    "summary": "Readiness: broker reachable and worker running",
                    "responses": {
                        "200": {"description": "Ready."},
                        "503": _error([ErrorCode.NOT_READY], "Not ready."),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics: pipeline lag, counters, journal, process",
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
            "/v1/dimensions": {
                "get": {
                    "summary": "The project's metadata keys and types; text keys over "
                    "limits.max_text_dimensions are listed in capped (context only)",
                    "security": [{"apiKey": []}],
                    "responses": {
                        "200": {
                            "description": "dimensions (key, type, events), capped, "
                            "max_text_dimensions.",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        "401": _error([ErrorCode.INVALID_API_KEY], "Bad key."),
                    },
                }
            },
        },
    }
