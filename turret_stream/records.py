"""Messages that travel on turret-stream's Kafka topics."""

from __future__ import annotations

import base64
from typing import Any

import faust
import numpy as np


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


def encode_vector(vector: np.ndarray) -> str:
    """A float32 vector as base64 (a quarter of its JSON size)."""
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()


def decode_vector(data: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(data), dtype="<f4").astype(np.float32)


class EmbeddedText(faust.Record, serializer="json", namespace="turret.EmbeddedText"):
    """One metadata string of one event, embedded, on its way to the owner of its
    (project, dimension). Keyed by :func:`dimension_key`."""

    event_id: str
    project: str
    dimension: str
    text: str
    # base64 float32 (see encode_vector); empty for values that were not embedded.
    vector: str
    model_id: str
    name: str
    metadata: dict[str, Any]
    session_id: str
    user_id: str
    received_at: float


class TextBatch(faust.Record, serializer="json", namespace="turret.TextBatch"):
    """Texts of one (project, dimension), in event order, as one message on the texts topic.

    Why one message for many: a Kafka hop through Faust and aiokafka costs about 0.48 ms of
    CPU per message on both sides together, against 0.08 per text inside one message
    (``benchmarks/kafka_hop.py``, embedded broker); the model's batch is already together.
    Keyed by :func:`dimension_key` like the texts it holds. Built and read by this class
    only (``split``, ``texts``): the items are :class:`EmbeddedText` fields.
    """

    project: str
    dimension: str
    items: list[dict[str, Any]]

    @classmethod
    def split(cls, texts: list[EmbeddedText], max_bytes: int) -> list[TextBatch]:
        """``texts`` of one (project, dimension) in messages of at most about ``max_bytes``
        of JSON each (a text larger than that goes alone)."""
        project, dimension = texts[0].project, texts[0].dimension
        return [cls(project, dimension, items) for items in _chunks(texts, max_bytes)]

    def texts(self) -> list[EmbeddedText]:
        return [EmbeddedText(**item) for item in self.items]


def _chunks(records: list[faust.Record], max_bytes: int) -> list[list[dict[str, Any]]]:
    """``records`` as dicts, in order, in runs of at most about ``max_bytes`` of JSON."""
    out: list[list[dict[str, Any]]] = []
    items: list[dict[str, Any]] = []
    size = 0
    for record in records:
        item = record.asdict()
        cost = _json_bound(item)
        if items and size + cost > max_bytes:
            out.append(items)
            items, size = [], 0
        items.append(item)
        size += cost
    if items:
        out.append(items)
    return out


# Fields known to hold ASCII that JSON does not escape (base64).
_ASCII_FIELDS = frozenset({"vector"})


def _json_bound(item: dict[str, Any]) -> int:
    # An upper bound without serialising: JSON escapes a character to at most 6 bytes
    # (a \uXXXX escape; a surrogate pair is two characters), a number or a literal is no
    # longer than its str(), a nested value (metadata, segments) is no longer than its
    # str() escaped, and 512 covers field names and punctuation.
    ascii_chars = chars = 0
    for key, value in item.items():
        if key in _ASCII_FIELDS:
            ascii_chars += len(value)
        elif isinstance(value, dict):
            chars += sum(len(str(k)) + len(str(v)) + 4 for k, v in value.items())
        elif value is not None:
            chars += len(str(value))
    return 512 + ascii_chars + 6 * chars


class TopicAssignment(faust.Record, serializer="json", namespace="turret.TopicAssignment"):
    """Where one event's text landed; keyed by project:session_id for the session actors."""

    event_id: str
    project: str
    dimension: str
    session_id: str
    user_id: str
    mc: int
    topic: str | None
    received_at: float
    segments: dict[str, Any] | None = None
    # The topic keeps company with every kind of topic (clustering/context.py): journeys
    # do not switch on it.
    neutral: bool = False


class AssignmentBatch(faust.Record, serializer="json", namespace="turret.AssignmentBatch"):
    """Where a cluster batch's events landed, for the sessions of one assignments partition.

    One message for many, as :class:`TextBatch` and for the same reason. It is sent to the
    partition its sessions' keys (:func:`event_key`) hash to, so each session's
    assignments still reach one session actor in order, and the sessions table writes a
    row to the changelog partition of the message that changed it. Built and read by this
    class only (``split``, ``assignments``): the items are :class:`TopicAssignment` fields.
    """

    items: list[dict[str, Any]]

    @classmethod
    def split(cls, assignments: list[TopicAssignment], max_bytes: int) -> list[AssignmentBatch]:
        """``assignments`` (of one partition) in messages of at most about ``max_bytes``."""
        return [cls(items) for items in _chunks(assignments, max_bytes)]

    def assignments(self) -> list[TopicAssignment]:
        return [TopicAssignment(**item) for item in self.items]


def dimension_key(project: str, dimension: str) -> bytes:
    return f"{project}:{dimension}".encode()


class Transition(faust.Record, serializer="json", namespace="turret.Transition"):
    """A session moved to another topic (or entered its first one: ``from_topic`` None).

    Published on <prefix>.transitions keyed by project:session_id, so a session's
    transitions stay in event order.
    """

    project: str
    dimension: str
    session_id: str
    user_id: str
    from_topic: str | None
    to_topic: str
    from_label: str | None
    to_label: str | None
    # 1 for the session's first topic, then +1 per topic change.
    step: int
    event_id: str
    # received_at of the event that made the move, and of the session's previous step.
    at: float
    previous_at: float | None
    segments: dict[str, Any] | None = None


class TransitionBatch(faust.Record, serializer="json", namespace="turret.TransitionBatch"):
    """The transitions one assignments message caused, for the sessions of one partition,
    in order, as one message on the transitions topic.

    One message for many, as :class:`AssignmentBatch` and for the same reason: about half
    of all events move a session, and each move was a message of its own. Sent to the
    partition its sessions' keys (:func:`event_key`) hash to, so a session's transitions
    stay in order. Built and read by this class only (``split``, ``transitions``,
    ``items_of``): the items are :class:`Transition` fields.
    """

    items: list[dict[str, Any]]

    @classmethod
    def split(cls, transitions: list[Transition], max_bytes: int) -> list[TransitionBatch]:
        """``transitions`` (of one partition) in messages of at most about ``max_bytes``."""
        return [cls(items) for items in _chunks(transitions, max_bytes)]

    def transitions(self) -> list[Transition]:
        return [Transition(**item) for item in self.items]

    @classmethod
    def items_of(cls, data: Any) -> list[Any] | None:
        """The items of a message's decoded JSON when it is a ``TransitionBatch`` (each to
        be checked as a :class:`Transition`'s fields), else None: for readers that take
        the JSON without Faust, such as the live feed."""
        if not isinstance(data, dict):
            return None
        meta = data.get("__faust")
        if not isinstance(meta, dict) or meta.get("ns") != cls._options.namespace:
            return None
        items = data.get("items")
        return items if isinstance(items, list) else None


class WorkerHeartbeat(faust.Record, serializer="json", namespace="turret.WorkerHeartbeat"):
    """A worker says it is alive, every ``worker.liveness_interval_s``, on <prefix>.workers.

    The consumer group cannot tell: a killed worker stays a member until the broker
    expires it, which tansu does not do promptly."""

    worker_id: str
    host: str
    pid: int
    # Seconds since the epoch at which the worker sent this.
    at: float


class DeadLetter(faust.Record, serializer="json", namespace="turret.DeadLetter"):
    """An event (or one of its texts) that failed in an agent twice, alone: set aside on
    <prefix>.dead_letters (keyed by project) so the rest of its batch goes on.

    ``event`` is the original event as JSON text (``TrackedEvent`` fields, with
    non-ASCII escaped), so a poison value cannot break the dead letter itself; ``error``
    is the exception's text, escaped the same way.
    """

    event_id: str
    project: str
    stage: str  # "embed" | "cluster"
    dimension: str  # the text's metadata key (cluster stage), "" for the embed stage
    error: str
    event: str
    failed_at: float


class TopicEvent(faust.Record, serializer="json", namespace="turret.TopicEvent"):
    """Something happened to a topic, told by the actor that made it happen: the cluster
    owner (``topic_created``, ``topic_merged``, ``topic_split``, ``topic_spiking``) or the
    labeller (``topic_labelled``). Published on <prefix>.topic_events keyed by
    project:dimension, so one dimension's events stay in order; read by the live feed
    and the alert agent."""

    # Unique per event (deliveries and clients can recognise a repeat).
    id: str
    kind: str
    project: str
    dimension: str
    topic: str
    label: str | None
    size: int
    examples: list[str]
    # Wall-clock seconds when it happened, and the newest event time it is about.
    at: float
    event_time: float | None = None
    # topic_merged: the topic that absorbed this one; topic_split: the one it left.
    merged_into: str | None = None
    split_from: str | None = None
    # topic_spiking: events this hour, the mean hourly baseline, the Poisson tail.
    this_hour: int | None = None
    baseline_per_hour: float | None = None
    p_value: float | None = None
    # topic_created: when the topic's first event was seen (event time).
    first_seen: float | None = None
