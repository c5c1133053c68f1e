"""Errors turret-stream reports to clients and operators.

Exception tree::

    TurretError
    ├── ApiError            an HTTP answer: status, machine-readable code, message
    │                       (raised by request parsing and auth; rendered as JSON)
    ├── BrokerUnavailable   Kafka did not acknowledge a write in time
    ├── PipelineBehind      too many accepted events wait for the worker (back-pressure)
    ├── KeyStoreError       bad project name, unknown key id, ...
    └── BrokerStartError    the embedded broker could not be started
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    INVALID_API_KEY = "INVALID_API_KEY"
    MISSING_REQUIRED_FIELD = "MISSING_REQUIRED_FIELD"
    INVALID_REQUEST = "INVALID_REQUEST"
    TEXT_TOO_LONG = "TEXT_TOO_LONG"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    REQUEST_TIMEOUT = "REQUEST_TIMEOUT"
    RATE_LIMIT_EXCEEDED = "RATE_LIMIT_EXCEEDED"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
    NOT_READY = "NOT_READY"
    NOT_FOUND = "NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    INVALID_ALERT_RULE = "INVALID_ALERT_RULE"
    WEBHOOK_URL_NOT_ALLOWED = "WEBHOOK_URL_NOT_ALLOWED"
    TOO_MANY_ALERT_RULES = "TOO_MANY_ALERT_RULES"


class TurretError(Exception):
    """Base of every error turret-stream raises on purpose."""


class PipelineBehind(TurretError):
    """The worker is more than ``pipeline.max_lag_events`` behind: /track sheds load."""

    def __init__(self, lag: int, retry_after: int) -> None:
        super().__init__(f"pipeline lag {lag} events")
        self.lag = lag
        self.retry_after = retry_after


class ApiError(TurretError):
    """An error answer: ``{"success": false, "error": message, "code": code, **extra}``."""

    def __init__(
        self,
        status: int,
        code: ErrorCode,
        message: str,
        *,
        retry_after: int | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.extra = extra

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"success": False, "error": self.message, "code": str(self.code)}
        if self.retry_after is not None:
            body["retry_after"] = self.retry_after
        body.update(self.extra)
        return body

    def headers(self) -> dict[str, str]:
        return {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}


def invalid(field: str, problem: str) -> ApiError:
    """400 INVALID_REQUEST naming the field at fault."""
    return ApiError(
        400, ErrorCode.INVALID_REQUEST, f"Invalid field '{field}': {problem}", field=field
    )


def missing(field: str) -> ApiError:
    return ApiError(
        400, ErrorCode.MISSING_REQUIRED_FIELD, f"Missing required field: {field}", field=field
    )


def invalid_api_key() -> ApiError:
    return ApiError(401, ErrorCode.INVALID_API_KEY, "Invalid API key")


class BrokerUnavailable(TurretError):
    """The broker did not acknowledge a write within the configured timeout."""


class KeyStoreError(TurretError):
    """A key or project operation was refused (bad name, unknown key id)."""


class BrokerStartError(TurretError):
    """The embedded broker could not be started (port taken, binary missing, ...)."""
