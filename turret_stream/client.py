"""A small Python client for /track (works with turret-stream and with Turret itself).

    from turret_stream.client import TurretClient
    client = TurretClient("tsk_...", "http://127.0.0.1:8000")
    result = client.track("user_prompt", {"prompt": "How do I reset my password?"},
                          session_id="s-1")

429 and 503 answers (and connection errors) are retried with exponential backoff and
jitter, waiting at least the server's ``retry_after``. Every retry of one call carries the
same ``Idempotency-Key``, so a retried event is counted once. With ``raise_errors=False``
``track`` never raises: tracking must not break the caller's app; it returns a result with
``success=False`` and logs a warning instead.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({429, 502, 503, 504})


class TrackError(Exception):
    """/track refused the event, or it could not be reached after all retries."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass(frozen=True)
class TrackResult:
    success: bool
    event_id: str | None = None
    session_id: str | None = None
    user_id: str | None = None
    # On failure: the server's code (e.g. INVALID_REQUEST) or CONNECTION_ERROR.
    error_code: str | None = None
    error: str | None = None
    attempts: int = 1


class TurretClient:
    def __init__(
        self,
        api_key: str,
        base_url: str = "http://127.0.0.1:8000",
        *,
        timeout: float = 10.0,
        max_retries: int = 5,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        raise_errors: bool = True,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"X-API-Key": api_key},
            timeout=timeout,
            transport=transport,
        )
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.raise_errors = raise_errors
        self._sleep = sleep

    def __enter__(self) -> TurretClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def backoff(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        exp = min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))
        delay = random.uniform(exp / 2, exp)  # jitter spreads out clients retrying together
        return max(delay, retry_after or 0.0)

    def track(
        self,
        name: str,
        metadata: dict[str, Any],
        *,
        session_id: str | None = None,
        user_id: str | None = None,
    ) -> TrackResult:
        body: dict[str, Any] = {"name": name, "metadata": metadata}
        if session_id is not None:
            body["session_id"] = session_id
        if user_id is not None:
            body["user_id"] = user_id
        headers = {"Idempotency-Key": uuid.uuid4().hex}
        attempt = 0
        while True:
            attempt += 1
            retry_after: float | None = None
            try:
                response = self._http.post("/track", json=body, headers=headers)
            except httpx.HTTPError as exc:
                failure = TrackResult(False, error_code="CONNECTION_ERROR", error=str(exc))
            else:
                data = _json(response)
                if response.status_code == 200 and data.get("success"):
                    return TrackResult(
                        True,
                        event_id=data.get("event_id"),
                        session_id=data.get("session_id"),
                        user_id=data.get("user_id"),
                        attempts=attempt,
                    )
                failure = TrackResult(
                    False,
                    error_code=data.get("code", f"HTTP_{response.status_code}"),
                    error=data.get("error", response.text[:200]),
                )
                if response.status_code not in RETRYABLE_STATUS:
                    return self._fail(failure, attempt, response.status_code)
                retry_after = _retry_after(data, response)
            if attempt > self.max_retries:
                return self._fail(failure, attempt, None)
            self._sleep(self.backoff(attempt, retry_after))

    def _fail(self, failure: TrackResult, attempts: int, status: int | None) -> TrackResult:
        result = TrackResult(
            False, error_code=failure.error_code, error=failure.error, attempts=attempts
        )
        if self.raise_errors:
            raise TrackError(f"{result.error_code}: {result.error}", status, result.error_code)
        log.warning("turret: event not tracked after %d attempt(s): %s", attempts, result.error)
        return result


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _retry_after(data: dict[str, Any], response: httpx.Response) -> float | None:
    value = data.get("retry_after", response.headers.get("Retry-After"))
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
