"""The /v1/alerts part of the OpenAPI document (kept apart: openapi.py merges it)."""

from __future__ import annotations

from typing import Any

from turret_stream.alerts.rules import KINDS, MAX_FIELD_CHARS, MAX_NAME_CHARS
from turret_stream.alerts.urls import MAX_URL_CHARS
from turret_stream.errors import ErrorCode
from turret_stream.settings import Settings


def _error(codes: list[ErrorCode], description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            "application/json": {
                "schema": {
                    "allOf": [
                        {"$ref": "#/components/schemas/Error"},
                        {"properties": {"code": {"enum": [str(c) for c in codes]}}},
                    ]
                }
            }
        },
    }


def _ok(description: str, schema: dict[str, Any], status: str = "200") -> dict[str, Any]:
    return {
        status: {"description": description, "content": {"application/json": {"schema": schema}}}
    }


_RULE_ERRORS = _error(
    [
        ErrorCode.INVALID_REQUEST,
        ErrorCode.INVALID_ALERT_RULE,
        ErrorCode.WEBHOOK_URL_NOT_ALLOWED,
        ErrorCode.TOO_MANY_ALERT_RULES,
    ],
    "A bad rule (`field` names the part at fault), a URL the operator does not allow "
    "(scheme, host, or an address that is loopback, private, link-local or metadata), or "
    "one rule too many.",
)
_NO_KEY = _error([ErrorCode.INVALID_API_KEY], "Missing, unknown or revoked key.")
_NOT_FOUND = _error([ErrorCode.NOT_FOUND], "No such rule in this project.")
_BAD = _error([ErrorCode.INVALID_REQUEST], "A parameter is invalid.")
_BODY = {
    "408": _error([ErrorCode.REQUEST_TIMEOUT], "The body did not arrive in time."),
    "413": _error([ErrorCode.PAYLOAD_TOO_LARGE], "Body too large."),
}


def alert_schemas() -> dict[str, Any]:
    text = {"type": "string", "minLength": 1, "maxLength": MAX_FIELD_CHARS}
    rule_fields = {
        "name": {"type": "string", "minLength": 1, "maxLength": MAX_NAME_CHARS},
        "kind": {"enum": list(KINDS)},
        "url": {"type": "string", "format": "uri", "maxLength": MAX_URL_CHARS},
        "enabled": {"type": "boolean"},
        "dimension": text,
        "min_events_per_hour": {"type": "integer", "minimum": 1},
        "segment": text,
        "value": {"type": ["string", "number", "boolean"]},
        "min_share": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "min_events": {"type": "integer", "minimum": 1},
    }
    rule = {
        "type": "object",
        "required": ["id", "name", "kind", "url", "enabled"],
        "properties": {
            "id": {"type": "string"},
            **rule_fields,
            "secret": {"type": "string", "description": "Shown once, on creation."},
            "secret_hint": {"type": "string"},
            "created_at": {"type": "number"},
            "updated_at": {"type": "number"},
        },
    }
    delivery = {
        "type": "object",
        "required": ["id", "rule_id", "status", "attempts"],
        "properties": {
            "id": {"type": "string"},
            "rule_id": {"type": "string"},
            "kind": {"type": "string"},
            "topic": {"type": ["string", "null"]},
            "test": {"type": "boolean"},
            "status": {"enum": ["pending", "delivered", "failed", "dropped"]},
            "attempts": {"type": "integer"},
            "status_code": {"type": ["integer", "null"]},
            "error": {"type": ["string", "null"]},
            "created_at": {"type": "number"},
            "updated_at": {"type": "number"},
        },
    }
    return {
        "AlertRuleRequest": {
            "type": "object",
            "description": "topic_spiking: no more fields; new_topic: min_events_per_hour; "
            "segment_share: segment, value, min_share, min_events (default 20). On PATCH "
            "every field is optional (kind cannot change).",
            "properties": rule_fields,
        },
        "AlertRule": rule,
        "AlertRuleResponse": {
            "type": "object",
            "required": ["success", "rule"],
            "properties": {"success": {"type": "boolean"}, "rule": rule},
        },
        "AlertRuleList": {
            "type": "object",
            "required": ["success", "rules"],
            "properties": {
                "success": {"type": "boolean"},
                "rules": {"type": "array", "items": rule},
            },
        },
        "AlertDelivery": delivery,
        "AlertDeliveryList": {
            "type": "object",
            "required": ["success", "deliveries"],
            "properties": {
                "success": {"type": "boolean"},
                "deliveries": {"type": "array", "items": delivery},
            },
        },
        "AlertTestResult": {
            "type": "object",
            "required": ["success", "delivery"],
            "properties": {"success": {"type": "boolean"}, "delivery": delivery},
        },
    }


def _op(summary: str, responses: dict[str, Any], params: list, body: bool = False) -> dict:
    op: dict[str, Any] = {
        "summary": summary,
        "security": [{"apiKey": []}],
        "parameters": params,
        "responses": {"401": _NO_KEY, **responses},
    }
    if body:
        op["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/AlertRuleRequest"}}
            },
        }
        op["responses"].update(_BODY)
    return op


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def alert_paths(settings: Settings) -> dict[str, Any]:
    rule_id = {
        "name": "rule_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "minLength": 1},
        "description": "An alert rule id (`al_...`).",
    }
    limit = {
        "name": "limit",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50},
        "description": "Entries, newest first.",
    }
    return {
        "/v1/alerts": {
            "get": _op(
                "The project's alert rules",
                {**_ok("Rules.", _ref("AlertRuleList")), "400": _BAD},
                [],
            ),
            "post": _op(
                "Create an alert rule (its secret is in this answer only)",
                {**_ok("The rule.", _ref("AlertRuleResponse"), "201"), "400": _RULE_ERRORS},
                [],
                body=True,
            ),
        },
        "/v1/alerts/deliveries": {
            "get": _op(
                "The project's webhook delivery log",
                {**_ok("Deliveries.", _ref("AlertDeliveryList")), "400": _BAD},
                [limit],
            )
        },
        "/v1/alerts/{rule_id}": {
            "get": _op(
                "One alert rule",
                {**_ok("The rule.", _ref("AlertRuleResponse")), "400": _BAD, "404": _NOT_FOUND},
                [rule_id],
            ),
            "patch": _op(
                "Change an alert rule",
                {
                    **_ok("The rule.", _ref("AlertRuleResponse")),
                    "400": _RULE_ERRORS,
                    "404": _NOT_FOUND,
                },
                [rule_id],
                body=True,
            ),
            "delete": _op(
                "Delete an alert rule",
                {**_ok("Deleted.", {"type": "object"}), "400": _BAD, "404": _NOT_FOUND},
                [rule_id],
            ),
        },
        "/v1/alerts/{rule_id}/test": {
            "post": _op(
                "Send a signed sample delivery now (one attempt) and tell what the receiver said",
                {
                    **_ok("The delivery's outcome.", _ref("AlertTestResult")),
                    "400": _BAD,
                    "404": _NOT_FOUND,
                    "503": _error([ErrorCode.SERVICE_UNAVAILABLE], "Delivery queue full."),
                },
                [rule_id],
            )
        },
        "/v1/alerts/{rule_id}/deliveries": {
            "get": _op(
                "A rule's webhook delivery log",
                {**_ok("Deliveries.", _ref("AlertDeliveryList")), "400": _BAD, "404": _NOT_FOUND},
                [rule_id, limit],
            )
        },
    }
