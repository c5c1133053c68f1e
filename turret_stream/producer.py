"""Durable writes of accepted events to the events topic.

The API answers 200 only after the broker acknowledged the write with ``acks=all`` and,
with the embedded broker (whose log is in memory), after the event is fsync'd in the
local journal (``journal.py``), which is replayed into the broker on the next start. The
producer is not idempotent (tansu has no InitProducerId), so a write retried after a
timeout may land twice: consumers deduplicate by ``event_id``, which a client makes stable
across its retries with an ``Idempotency-Key`` header.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from turret_stream.errors import BrokerUnavailable, PipelineBehind
from turret_stream.journal import Journal, JournalError, JournalRecord
from turret_stream.progress import PipelineProgress
from turret_stream.settings import KafkaSettings, PipelineSettings

log = logging.getLogger(__name__)


async def ensure_topic(bootstrap_servers: str, topic: str, partitions: int, replicas: int) -> None:
    """Create ``topic`` unless it exists (so it never gets a broker's auto-create defaults)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        if topic in await admin.list_topics():
            return
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics([NewTopic(topic, partitions, replicas)])
    finally:
        await admin.close()


class EventPublisher:
    """Owns the API process's Kafka producer. Starts lazily, so the API can come up (and
    answer 503) while the broker is still down.

    With a ``journal``, every event is journaled (fsync'd) before it is sent; with a
    ``progress``, the publisher tells it what was accepted, and refuses new events while
    the pipeline is more than ``pipeline.max_lag_events`` behind (back-pressure)."""

    def __init__(
        self,
        bootstrap_servers: str,
        settings: KafkaSettings,
        *,
        journal: Journal | None = None,
        progress: PipelineProgress | None = None,
        pipeline: PipelineSettings | None = None,
    ) -> None:
        self._bootstrap = bootstrap_servers
        self._settings = settings
        self.journal = journal
        self.progress = progress
        self.pipeline = pipeline or PipelineSettings()
        self.refused_behind = 0  # /track requests shed by back-pressure
        # Loop time of the latest /track request (accepted or shed): checkpoints wait
        # for a quiet moment (stack.py).
        self.last_request_at = 0.0
        self._producer: AIOKafkaProducer | None = None
        self._topic_ready = False
        self._lock = asyncio.Lock()
        # While the broker is replaced (``hold``), accepted events are journaled only and
        # kept here, in order, until ``release`` writes them to the new broker.
        self.holding = False
        self._held: list[JournalRecord] = []
        self.held_total = 0  # events accepted while holding (for metrics)
        self.holds = 0  # times the broker was replaced under a hold (for metrics)
        # Writes to the broker in flight, so ``hold`` can wait until none is.
        self._sending = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def _ready_producer(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self._bootstrap,
                    acks="all",
                    enable_idempotence=False,
                    request_timeout_ms=int(self._settings.produce_timeout_s * 1000),
                )
                try:
                    await producer.start()
                except BaseException:
                    await producer.stop()
                    raise
                self._producer = producer
            if not self._topic_ready:
                s = self._settings
                await ensure_topic(
                    self._bootstrap, s.events_topic, s.partitions, s.replication_factor
                )
                self._topic_ready = True
            return self._producer

    async def _publish(self, key: bytes, value: bytes) -> None:
        producer = await self._ready_producer()
        delivered = await producer.send(self._settings.events_topic, value=value, key=key)
        await delivered

    def check_capacity(self) -> None:
        """PipelineBehind when the pipeline lags more than the configured bound."""
        self.last_request_at = asyncio.get_running_loop().time()
        if self.progress is None:
            return
        lag = self.backlog
        if lag >= self.pipeline.max_lag_events:
            self.refused_behind += 1
            raise PipelineBehind(lag, self.pipeline.behind_retry_after_s)

    async def publish(self, key: bytes, value: bytes, event_id: str | None = None) -> None:
        """Journal (if any) and write one message, waiting for ``acks=all``;
        BrokerUnavailable if either fails or the broker does not answer in time.

        The journal's group commit (an fsync) and the Kafka write run at the same time:
        the answer waits for the slower of the two, not their sum. Either may land while
        the other fails (the client gets a 503): a journaled event is replayed on the
        next start, and downstream dedupe by event id makes a retry harmless."""
        if self.holding:  # only with a journal (``hold``)
            await self._publish_held(key, value, event_id)
            return
        seq = None
        on_disk: asyncio.Future[None] | None = None
        if self.journal is not None:
            try:
                seq, on_disk = self.journal.submit(event_id or "", key, value)
            except JournalError as exc:
                log.error("event not journaled: %s", exc)
                raise BrokerUnavailable(str(exc)) from exc
        if self.progress is not None and event_id is not None:
            self.progress.opened(event_id, seq)
        sent = asyncio.ensure_future(
            asyncio.wait_for(self._publish(key, value), self._settings.produce_timeout_s)
        )
        self._sending += 1
        self._idle.clear()
        sent.add_done_callback(self._sent)
        if on_disk is not None:
            try:
                await on_disk
            except JournalError as exc:
                sent.cancel()
                if self.progress is not None and event_id is not None:
                    self.progress.abandoned(event_id)
                log.error("event not journaled: %s", exc)
                raise BrokerUnavailable(str(exc)) from exc
        try:
            await sent
        except (TimeoutError, KafkaError, OSError) as exc:
            if self.progress is not None and event_id is not None:
                self.progress.abandoned(event_id)
            # After an outage the broker may have lost the topic (tansu is in-memory):
            # check it again before the next write.
            self._topic_ready = False
            log.warning("event not written to Kafka: %r", exc)
            raise BrokerUnavailable(str(exc) or type(exc).__name__) from exc

    def _sent(self, _: asyncio.Future[None]) -> None:
        self._sending -= 1
        if not self._sending:
            self._idle.set()

    async def _publish_held(self, key: bytes, value: bytes, event_id: str | None) -> None:
        """Holding: journal the event (durable: the 200 is honoured) and keep it for
        ``release``; or, if the hold ended during the journal's fsync, write it now."""
        assert self.journal is not None
        try:
            seq = await self.journal.append(event_id or "", key, value)
        except JournalError as exc:
            log.error("event not journaled: %s", exc)
            raise BrokerUnavailable(str(exc)) from exc
        record = JournalRecord(seq, event_id or "", key, value)
        self.held_total += 1
        if self.holding:
            self._held.append(record)
            return
        try:
            await asyncio.wait_for(self.replay([record]), self._settings.produce_timeout_s)
        except (TimeoutError, KafkaError, OSError) as exc:
            # Journaled: replayed at the next start; the client's retry is deduplicated.
            raise BrokerUnavailable(str(exc) or type(exc).__name__) from exc

    @property
    def held(self) -> int:
        """Events journaled while holding, not yet written to the broker."""
        return len(self._held)

    @property
    def backlog(self) -> int:
        """Accepted events not yet through the pipeline: open ones and held ones."""
        open_ = self.progress.lag if self.progress is not None else 0
        return open_ + self.held

    async def hold(self) -> None:
        """Stop writing to the broker: from now on /track journals events and keeps them
        (``release`` writes them). Returns once no write to the broker is in flight, and
        with the producer closed, so the broker can be replaced. Needs the journal."""
        if self.journal is None:
            raise RuntimeError("holding events needs the journal")
        self.holding = True
        self.holds += 1
        await self._idle.wait()
        await self.close()

    async def release(
        self, unconfirmed: list[JournalRecord], still_open: set[int], timeout: float = 60.0
    ) -> int:
        """Write ``unconfirmed`` (journal records accepted before the hold and not
        confirmed: counted as accepted already, and as processed unless their sequence
        number is in ``still_open``), then the held events in the order they were
        journaled, to the (new) broker; stop holding once none is left. Returns how many
        events were written."""
        self._topic_ready = False
        await self.replay(unconfirmed, timeout, accepted=False, still_open=still_open)
        written = len(unconfirmed)
        # Events keep arriving while the held ones are written: they join the queue, so
        # a session's events still reach the broker in the order they were accepted.
        while self._held:
            batch, self._held = self._held, []
            try:
                await self.replay(batch, timeout)
            except BaseException:
                self._held[:0] = batch  # still journaled; kept for the next attempt
                raise
            written += len(batch)
        self.holding = False
        return written

    async def replay(
        self,
        records: list[JournalRecord],
        timeout: float = 60.0,
        *,
        accepted: bool = True,
        still_open: set[int] | None = None,
    ) -> None:
        """Write journaled records (not journaled again) to a fresh broker, in order;
        the start of `up` waits for this before it opens the API. ``accepted=False``:
        the records were counted as accepted before (a recycle), and as processed unless
        their sequence number is in ``still_open``."""
        if not records:
            return
        producer = await asyncio.wait_for(self._ready_producer(), timeout)
        topic = self._settings.events_topic
        for start in range(0, len(records), 1000):
            chunk = records[start : start + 1000]
            sent = []
            for r in chunk:
                if self.progress is not None:
                    done = still_open is not None and r.seq not in still_open
                    self.progress.opened(r.event_id, r.seq, accepted=accepted, done=done)
                sent.append(await producer.send(topic, value=r.value, key=r.key))
            await asyncio.wait_for(asyncio.gather(*sent), timeout)

    async def broker_reachable(self, timeout: float = 2.0) -> bool:
        if self.holding:
            return False  # being replaced: no producer may connect to it meanwhile
        try:
            producer = await asyncio.wait_for(self._ready_producer(), timeout)
            await asyncio.wait_for(producer.client.fetch_all_metadata(), timeout)
        except (TimeoutError, KafkaError, OSError):
            return False
        return True

    async def close(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()
