"""A Faust App whose consumers do not sit on empty fetches, and whose table recovery
seeks to the committed offsets before it lets stream records through.

Faust creates its aiokafka consumer with ``fetch_max_wait_ms=1500`` (not configurable).
A Kafka broker answers a fetch as soon as data arrives, but tansu, the embedded broker,
holds every fetch for the whole wait: each hop between agents then cost up to 1.5 s
(measured: 0.5-1.4 s per message at 1500 ms, 2-100 ms at 100 ms). ``TurretApp`` uses a
transport whose consumer waits ``fetch_max_wait_ms`` instead.

Recovery order (``SeekFirstRecovery``): when a worker starts with a table changelog to
replay (the sessions table after a restart), faust-streaming 0.15 starts the fetcher for
the replay, then at the end resumes the stream partitions *before* it seeks them to their
committed offsets. Records fetched in between reach the agents, and the seek then moves
the consumer's read offsets back under them: Faust takes the jump as a gap it may commit
over and drops the re-fetched records below its read offset. Events were acknowledged
without being processed (seen after kill -9 and restart under load: 2-12 of 36 events
never processed, no error logged). With the flow stopped until the seek is done, nothing
fetched in between reaches an agent. And after such a replay, stream partitions with no
committed offset yet (a worker killed before its first commit) were never read again by
the restarted worker; ``perform_seek`` now seeks them to their beginning explicitly.
"""

from __future__ import annotations

import asyncio
from typing import Any

import faust
from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery
from faust.topics import Topic
from faust.transport.drivers import aiokafka as faust_aiokafka


def quiet_cancelled_sends(loop: asyncio.AbstractEventLoop) -> None:
    """faust-streaming 0.15's ``Topic._on_published`` reads its send's result in a done
    callback; a send cancelled because the app stops (a worker stopped while busy: a
    SIGTERM past the drain, a broker recycle) then logs a traceback at ERROR for what is
    an expected cancellation (the batch is not acknowledged, so it is delivered again).
    Those are dropped; every other exception goes to the handler there was."""
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        callback = getattr(context.get("handle"), "_callback", None)
        callback = getattr(callback, "func", callback)  # Faust registers a partial
        if isinstance(context.get("exception"), asyncio.CancelledError) and (
            getattr(callback, "__func__", None) is Topic._on_published
        ):
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


def _transport_class(fetch_max_wait_ms: int) -> type[faust_aiokafka.Transport]:
    class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            # aiokafka hands this to its Fetcher when the consumer starts.
            consumer._fetch_max_wait_ms = fetch_max_wait_ms
            return consumer

    class ShortFetchConsumer(faust_aiokafka.Consumer):
        def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

        async def perform_seek(self) -> None:
            """Seek to the committed offsets, and stream partitions that have none to
            their beginning (what ``auto_offset_reset: earliest`` means), explicitly: after
            a changelog replay the consumer left such partitions unread (module docstring)."""
            await super().perform_seek()
            changelogs = self.app.tables.changelog_topics
            uncommitted = [
                tp
                for tp in self.assignment()
                if tp.topic not in changelogs and self._committed_offset.get(tp) is None
            ]
            if uncommitted:
                await self._thread.seek_to_beginning(
                    *faust_aiokafka.ensure_aiokafka_TPset(uncommitted)
                )

    class Transport(faust_aiokafka.Transport):
        Consumer = ShortFetchConsumer

    return Transport


class SeekFirstRecovery(Recovery):
    async def on_recovery_completed(self, generation_id: int = 0) -> None:
        """Faust's own, with the flow of stream records stopped first: it resumes the
        stream partitions, then seeks them, then resumes the flow, but after a changelog
        replay the flow is already on (see the module's docstring). While it is off, the
        fetcher hands nothing to the agents and seeks back itself."""
        self.app.consumer.stop_flow()
        self.app.flow_control.suspend()
        await super().on_recovery_completed(generation_id)


class SeekFirstTableManager(TableManager):
    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = SeekFirstRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery


class TurretApp(faust.App):
    def __init__(self, *args: Any, fetch_max_wait_ms: int = 100, **kwargs: Any) -> None:
        self._fetch_max_wait_ms = fetch_max_wait_ms
        kwargs.setdefault("TableManager", SeekFirstTableManager)
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> Any:
        transport_class = _transport_class(self._fetch_max_wait_ms)
        return transport_class(self.conf.broker_consumer, self)
