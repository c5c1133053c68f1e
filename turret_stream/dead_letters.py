"""The dead-letter store: events the pipeline could not process, kept with their error.

An agent that fails on a batch retries it item by item; an item that fails again alone
is written to the dead-letters topic (``records.DeadLetter``) and the rest of the batch
goes on. The dead-letters agent (``agents/dead_letters.py``) is the one writer of the
``dead_letters`` collection; ``GET /v1/dead-letters`` and ``turret-stream dead-letters``
read it. Replaying sends the original event through the pipeline again (e.g. after an
upgrade that fixes the failure); a dead letter replayed is marked with ``replayed_at``
and written again, with the new error, if it fails again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from turret_stream.journal import Journal
from turret_stream.producer import EventPublisher
from turret_stream.records import DeadLetter, EmbeddedText, TrackedEvent, event_key
from turret_stream.settings import Settings
from turret_stream.storage import Filter, Point, VectorStore

COLLECTION = "dead_letters"
_UNIT = [1.0]  # dead letters are looked up by payload, never by vector
MAX_ERROR_CHARS = 2000


def safe_text(text: str, limit: int | None = None) -> str:
    """``text`` as valid UTF-8 (lone surrogates escaped), optionally cut."""
    clean = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return clean if limit is None else clean[:limit]


def event_json(fields: Mapping[str, Any]) -> str:
    # ensure_ascii escapes lone surrogates; allow_nan keeps Infinity readable.
    return json.dumps(dict(fields), ensure_ascii=True, allow_nan=True, default=str)


def from_event(event: TrackedEvent, error: BaseException) -> DeadLetter:
    return DeadLetter(
        event_id=safe_text(event.event_id),
        project=safe_text(event.project),
        stage="embed",
        dimension="",
        error=safe_text(f"{type(error).__name__}: {error}", MAX_ERROR_CHARS),
        event=event_json(event.asdict()),
        failed_at=time.time(),
    )


def from_text(item: EmbeddedText, error: BaseException) -> DeadLetter:
    original = {
        "event_id": item.event_id,
        "project": item.project,
        "name": item.name,
        "metadata": item.metadata,
        "session_id": item.session_id,
        "user_id": item.user_id,
        "received_at": item.received_at,
    }
    return DeadLetter(
        event_id=safe_text(item.event_id),
        project=safe_text(item.project),
        stage="cluster",
        dimension=safe_text(item.dimension),
        error=safe_text(f"{type(error).__name__}: {error}", MAX_ERROR_CHARS),
        event=event_json(original),
        failed_at=time.time(),
    )


@dataclass(frozen=True)
class StoredDeadLetter:
    id: str
    event_id: str
    project: str
    stage: str
    dimension: str
    error: str
    event: dict[str, Any]
    failed_at: float
    replayed_at: float | None

    def as_json(self) -> dict[str, Any]:
        """For the API: the event's JSON stays as text when it holds a non-finite number
        (JSON has none), else it is an object."""
        event: Any = self.event
        try:
            json.dumps(event, allow_nan=False)
        except ValueError:
            event = event_json(event)
        return {
            "id": self.id,
            "event_id": self.event_id,
            "stage": self.stage,
            "dimension": self.dimension or None,
            "error": self.error,
            "event": event,
            "failed_at": self.failed_at,
            "replayed_at": self.replayed_at,
        }

    def tracked_event(self) -> TrackedEvent:
        fields = {k: v for k, v in self.event.items() if k in TrackedEvent._options.fields}
        return TrackedEvent(**fields)


def letter_id(letter: DeadLetter) -> str:
    return f"{letter.project}:{letter.event_id}:{letter.stage}:{letter.dimension}"


class DeadLetterStore:
    """The ``dead_letters`` collection: written by the dead-letters agent (and marked
    replayed by the CLI), read by the API and the CLI."""

    def __init__(self, store: VectorStore) -> None:
        self.store = store
        store.create_collection(
            COLLECTION, 1, "dot", indexes={"project": "keyword", "failed_at": "float"}
        )

    def add(self, letter: DeadLetter) -> None:
        payload = {
            "event_id": letter.event_id,
            "project": letter.project,
            "stage": letter.stage,
            "dimension": letter.dimension,
            "error": letter.error,
            "event": letter.event,
            "failed_at": letter.failed_at,
            "replayed_at": None,
        }
        self.store.upsert(COLLECTION, [Point(letter_id(letter), _UNIT, payload)])

    def list(self, project: str, limit: int = 100) -> list[StoredDeadLetter]:
        """The project's dead letters, most recent first (at most ``limit``)."""
        out: list[StoredDeadLetter] = []
        offset = None
        while True:
            records, offset = self.store.scroll(
                COLLECTION, filter=Filter(must={"project": project}), limit=256, offset=offset
            )
            out.extend(_stored(r.id, r.payload) for r in records)
            if offset is None:
                break
        out.sort(key=lambda d: (-d.failed_at, d.id))
        return out[:limit]

    def count(self, project: str) -> int:
        return self.store.count(COLLECTION, Filter(must={"project": project}))

    def mark_replayed(self, ids: list[str]) -> None:
        self.store.set_payload(COLLECTION, ids, {"replayed_at": time.time()})


def _stored(point_id: str, p: Mapping[str, Any]) -> StoredDeadLetter:
    return StoredDeadLetter(
        id=point_id,
        event_id=p["event_id"],
        project=p["project"],
        stage=p["stage"],
        dimension=p["dimension"],
        error=p["error"],
        event=json.loads(p["event"]),
        failed_at=p["failed_at"],
        replayed_at=p.get("replayed_at"),
    )


async def replay_dead_letters(
    settings: Settings, store: VectorStore, project: str, ids: Sequence[str] = ()
) -> int:
    """Send a project's dead letters (those named by ``ids``, else every one not yet
    replayed) through the pipeline again; returns how many.

    With the embedded broker they are appended to the journal, which `up` replays on its
    next start (`up` must be stopped: the store and the journal open in one process);
    with an external Kafka they are written to the events topic at once.
    """
    letters = DeadLetterStore(store)
    chosen = [
        d
        for d in letters.list(project, limit=1_000_000)
        if ((d.id in ids or d.event_id in ids) if ids else d.replayed_at is None)
    ]
    if not chosen:
        return 0
    writes = [(d.tracked_event(), d.id) for d in chosen]
    if settings.journal_enabled:
        journal = Journal(
            settings.journal_path,
            settings.pipeline.journal_segment_bytes,
            fsync=settings.pipeline.journal_fsync,
        )
        journal.open()
        try:
            for event, _ in writes:
                key = event_key(event.project, event.session_id)
                await journal.append(event.event_id, key, event.dumps())
        finally:
            await journal.close()
    else:
        publisher = EventPublisher(settings.bootstrap_servers, settings.kafka)
        try:
            for event, _ in writes:
                key = event_key(event.project, event.session_id)
                await publisher.publish(key, event.dumps(), event.event_id)
        finally:
            await publisher.close()
    letters.mark_replayed([point_id for _, point_id in writes])
    return len(writes)
