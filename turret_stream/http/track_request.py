"""Parsing a /track body into a TrackRequest, with Turret's error codes.

Precedence of errors (first one wins): body not a JSON object, a missing required field
(``name`` before ``metadata``), a field of the wrong type or size, a metadata text over
the limit (TEXT_TOO_LONG). Unknown top-level fields are ignored, as Turret does.

What the pipeline cannot carry (non-finite numbers, integers beyond 64 bits, lone
surrogates, a byte-order mark, deep nesting) is refused by ``json_body`` before this.
``session_id`` and ``user_id`` follow one rule: absent or ``null`` means "generate one";
a present value is a non-blank string of at most ``limits.max_id_chars`` characters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from turret_stream.errors import ApiError, ErrorCode, invalid, missing
from turret_stream.http.json_body import parse_json_body
from turret_stream.settings import TrackLimits

__all__ = ["TrackRequest", "parse_json_body", "parse_track_request"]

MetadataValue = str | int | float | bool | None


@dataclass(frozen=True)
class TrackRequest:
    name: str
    metadata: dict[str, MetadataValue]
    session_id: str | None
    user_id: str | None


def _optional_id(body: dict[str, Any], field: str, limit: int) -> str | None:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid(field, f"must be a string, got {_json_type(value)}")
    if not value.strip():
        raise invalid(field, "must not be empty")
    if len(value) > limit:
        raise invalid(field, f"must be at most {limit} characters, got {len(value)}")
    return value


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {
        bool: "boolean",
        int: "number",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
    }.get(type(value), type(value).__name__)


def parse_track_request(body: Any, limits: TrackLimits) -> TrackRequest:
    if not isinstance(body, dict):
        raise ApiError(
            400,
            ErrorCode.INVALID_REQUEST,
            f"Request body must be a JSON object, got {_json_type(body)}",
        )
    for field in ("name", "metadata"):
        if body.get(field) is None:
            raise missing(field)

    name = body["name"]
    if not isinstance(name, str):
        raise invalid("name", f"must be a string, got {_json_type(name)}")
    if not name.strip():
        raise invalid("name", "must not be empty")
    if len(name) > limits.max_name_chars:
        raise invalid(
            "name", f"must be at most {limits.max_name_chars} characters, got {len(name)}"
        )

    metadata = body["metadata"]
    if not isinstance(metadata, dict):
        raise invalid("metadata", f"must be an object, got {_json_type(metadata)}")
    if len(metadata) > limits.max_metadata_keys:
        raise invalid(
            "metadata", f"must have at most {limits.max_metadata_keys} keys, got {len(metadata)}"
        )
    too_long: tuple[str, int] | None = None
    for key, value in metadata.items():
        if not key or len(key) > limits.max_metadata_key_chars:
            raise invalid(
                "metadata",
                f"keys must be 1-{limits.max_metadata_key_chars} characters, got {len(key)}",
            )
        if isinstance(value, dict | list):
            raise invalid(
                f"metadata.{key}",
                f"must be a string, number, boolean or null, got {_json_type(value)}",
            )
        if isinstance(value, str) and len(value) > limits.max_text_chars and too_long is None:
            too_long = (key, len(value))

    session_id = _optional_id(body, "session_id", limits.max_id_chars)
    user_id = _optional_id(body, "user_id", limits.max_id_chars)

    if too_long is not None:
        key, length = too_long
        raise ApiError(
            400,
            ErrorCode.TEXT_TOO_LONG,
            f"Text in metadata.{key} is {length} characters; the limit is {limits.max_text_chars}",
            field=f"metadata.{key}",
            max_chars=limits.max_text_chars,
        )
    return TrackRequest(name=name, metadata=metadata, session_id=session_id, user_id=user_id)
