"""Messages that travel on turret-stream's Kafka topics."""

from __future__ import annotations

from typing import Any

import faust


class TrackedEvent(faust.Record, serializer="json", namespace="turret.TrackedEvent"):
    """One accepted /track call, as written to the events topic.

    Keyed on Kafka by :func:`event_key` so that every event of a session lands on one
    partition, in the order the API accepted them.
    """

    event_id: str
    project: str
    name: str
    metadata: dict[str, Any]
    session_id: str
    user_id: str
    # Seconds since the epoch at which the API accepted the event.
    received_at: float
    # True when the caller sent no id and the API generated one.
    session_generated: bool = False
    user_generated: bool = False


def event_key(project: str, session_id: str) -> bytes:
    """The Kafka message key: project names cannot contain ':', so it is unambiguous."""
    return f"{project}:{session_id}".encode()
