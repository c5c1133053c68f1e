"""The embedding agent: events -> one embedded text per metadata string.

It is the one reader of the events topic: it counts what arrives (``IngestStats``), reads
accepted events in batches, embeds every string metadata value that could be text (each
distinct string once per batch: repeated values such as "mobile" cost one embedding), and
sends them to the owner of their (project, metadata key) on the texts topic, a batch's
texts of one key as one message (``TextBatch``). Whether a key is a text dimension or a
segment is decided by that owner, which sees all of the key's values; keys configured as
enum, number or ignore are not embedded. Once an owner has decided that its key is a
segment (``min_observations`` values seen; read from the catalog every
``dimensions.segment_recheck_s``), the key's values still go to it, which keeps counting
them and would see them stop repeating, but without a vector: the model's time and the
broker's bytes go to text.

Batches overlap (``worker.embed_batches_in_flight``, 2): the next batch is embedded while
the one before is still embedded or sent, so the model processes do not idle while the
broker takes a batch's texts (measured: README, *Pipeline*). Each batch sends its texts
after the batch before has sent its own, and its events are acknowledged only once the
broker has its texts: texts leave in arrival order, and a crash redelivers what was not
sent.

A batch that fails is retried event by event; an event that fails twice alone (e.g. a
string the tokenizer cannot take) goes to the dead-letters topic and the others go on.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from collections.abc import Callable, Sequence

import faust
from faust.types import EventT

from turret_stream import dead_letters
from turret_stream.agents.ingest import IngestStats
from turret_stream.embedding import Embedder
from turret_stream.poison import PoisonEvent, carry_problem
from turret_stream.progress import ProgressReports
from turret_stream.records import (
    EmbeddedText,
    TextBatch,
    TrackedEvent,
    dimension_key,
    encode_vector,
)
from turret_stream.settings import Settings

log = logging.getLogger(__name__)


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def texts_of(event: TrackedEvent, settings: Settings) -> list[tuple[str, str]]:
    """(key, text) pairs of an event that go to their dimension's owner."""
    overrides = settings.dimensions.overrides
    out = []
    for key, value in event.metadata.items():
        if not isinstance(value, str) or not value.strip() or _looks_numeric(value):
            continue
        typed = overrides.get(f"{event.project}:{key}", overrides.get(key))
        if typed in ("enum", "number", "ignore"):
            continue
        out.append((key, value[: settings.embedding.max_chars]))
    return out


# project -> its metadata keys decided to be segments (``EnumKeys.decided``).
SegmentKeys = Callable[[str], frozenset[str]]


def _no_segments(project: str) -> frozenset[str]:
    return frozenset()


def embed_batch(
    events: Sequence[TrackedEvent],
    embedder: Embedder,
    settings: Settings,
    segment_keys: SegmentKeys = _no_segments,
) -> list[EmbeddedText]:
    """Each text of ``events`` with its vector; a value of a key its owner decided is a
    segment (``segment_keys``) goes without one: the owner only counts it, so embedding
    it (and carrying 384 floats per value through the broker) would be wasted."""
    pairs = [(event, key, text) for event in events for key, text in texts_of(event, settings)]
    segments = {project: segment_keys(project) for project in {e.project for e, _, _ in pairs}}
    wanted = [key not in segments[event.project] for event, key, _ in pairs]
    unique = list(dict.fromkeys(t for (_, _, t), w in zip(pairs, wanted, strict=True) if w))
    vectors = embedder.embed(unique) if unique else []
    encoded = {text: encode_vector(v) for text, v in zip(unique, vectors, strict=True)}
    return [
        EmbeddedText(
            event_id=event.event_id,
            project=event.project,
            dimension=key,
            text=text,
            vector=encoded[text] if w else "",
            model_id=embedder.model_id,
            name=event.name,
            # The owner of a segment only counts its values: no copy of the event's other
            # values (the prompt among them) for it.
            metadata=event.metadata if w else {},
            session_id=event.session_id,
            user_id=event.user_id,
            received_at=event.received_at,
        )
        for (event, key, text), w in zip(pairs, wanted, strict=True)
    ]


def register_embed_agent(
    app: faust.App,
    events: faust.TopicT,
    texts: faust.TopicT,
    embedder: Embedder,
    settings: Settings,
    dead: faust.TopicT,
    progress: ProgressReports | None = None,
    segment_keys: SegmentKeys = _no_segments,
) -> IngestStats:
    """The embed agent on ``events``; returns the counts of what it takes. Values of the
    keys ``segment_keys`` names are sent without a vector (``embed_batch``)."""
    stats = IngestStats()

    async def send(batch: Sequence[TrackedEvent], embedded: list[EmbeddedText]) -> None:
        by_dimension: dict[tuple[str, str], list[EmbeddedText]] = {}
        for item in embedded:  # in event order within each dimension
            by_dimension.setdefault((item.project, item.dimension), []).append(item)
        sent = [
            await texts.send(key=dimension_key(*dimension), value=message)
            for dimension, items in by_dimension.items()
            for message in TextBatch.split(items, settings.kafka.batch_message_bytes)
        ]
        # Wait for the broker to take them before the batch's events are acknowledged: a
        # crash in between redelivers the events instead of losing their texts.
        await asyncio.gather(*sent)
        if progress is not None:
            per_event = Counter(item.event_id for item in embedded)
            for event in batch:
                progress.embedded(event.event_id, per_event[event.event_id])

    async def embed_and_send(batch: Sequence[TrackedEvent]) -> None:
        # The model runs outside the event loop, which keeps serving the API and
        # Kafka heartbeats meanwhile.
        embedded = await asyncio.to_thread(embed_batch, batch, embedder, settings, segment_keys)
        await send(batch, embedded)

    async def set_aside(event: TrackedEvent, exc: Exception) -> None:
        log.warning("event %s dead-lettered: %r", event.event_id, exc)
        letter = dead_letters.from_event(event, exc)
        await (await dead.send(key=letter.project.encode(), value=letter))

    async def isolate(batch: Sequence[TrackedEvent]) -> None:
        for event in batch:
            for attempt in (1, 2):
                try:
                    await embed_and_send([event])
                    break
                except Exception as exc:
                    if attempt == 2:
                        await set_aside(event, exc)

    async def run_batch(
        stream: faust.StreamT,
        taken: Sequence[EventT],
        carried: list[TrackedEvent],
        previous: asyncio.Task | None,
    ) -> None:
        """Embed ``carried`` (at once with the batch before, if that one is still being
        embedded or sent), then send its texts and acknowledge ``taken`` once the batch
        before has: texts leave, and offsets are committed, in arrival order."""
        try:
            embedded: list[EmbeddedText] | None = await asyncio.to_thread(
                embed_batch, carried, embedder, settings, segment_keys
            )
        except Exception as exc:
            log.warning("embedding a batch of %d failed (%r): one by one", len(carried), exc)
            embedded = None
        if previous is not None:
            await asyncio.wait([previous])
            if previous.cancelled() or previous.exception() is not None:
                return  # the agent raises the batch before's error; these are redelivered
        if embedded is not None:
            try:
                await send(carried, embedded)
            except Exception as exc:
                log.warning("sending a batch of %d failed (%r): one by one", len(carried), exc)
                embedded = None
        if embedded is None:
            await isolate(carried)
        for event in taken:
            await stream.ack(event)

    @app.agent(events, name="turret.embed")
    async def embed(stream: faust.StreamT[TrackedEvent]) -> None:
        # Batches being embedded or sent, oldest first; each waits for the one before it
        # to send (worker.embed_batches_in_flight).
        in_flight: deque[asyncio.Task] = deque()
        limit = settings.worker.embed_batches_in_flight
        try:
            async for taken in stream.noack_take(settings.embedding.batch_size, within=0.05):
                carried = []
                for event in taken:
                    value = event.value
                    stats.record(value)
                    problem = carry_problem(value.asdict())
                    if problem is None:
                        carried.append(value)
                    else:  # deterministic: no point in a retry
                        await set_aside(value, PoisonEvent(problem))
                previous = in_flight[-1] if in_flight else None
                in_flight.append(asyncio.create_task(run_batch(stream, taken, carried, previous)))
                # Wait for the oldest at the limit; collect finished ones (their errors
                # stop the agent, as a batch's error did when batches ran one at a time).
                while in_flight and (len(in_flight) >= limit or in_flight[0].done()):
                    await in_flight.popleft()
        finally:
            for task in in_flight:  # unacknowledged: redelivered to whoever reads next
                task.cancel()

    return stats
