"""GET /v1/live: a WebSocket feed of journey transitions and topic events.

Three pieces; the feed and the hub exist once per API process:

- ``TransitionsFeed`` reads the transitions topic and the topic events topic with its own
  consumer, without a group (every API process sees every message) and from the end of
  the log (a live feed, not a replay), and hands each message to the hub. Topic events
  (``topic_created``, ``topic_merged``, ``topic_split``, ``topic_labelled``,
  ``topic_spiking``) are published by the actors that make them happen (the cluster
  owner, the labeller); this side only forwards them.
- ``LiveHub`` indexes the subscribed clients by project and their most selective filter,
  so a transition costs O(matching clients). It never waits for a client: each one has a
  bounded queue drained by its own sender task, and a client whose queue is full is closed
  (4008) instead of slowing the feed or the other clients.
- ``live`` is the handler. The API key comes from the ``Sec-WebSocket-Protocol`` header
  (browsers), the ``X-API-Key`` header or a first ``auth`` message; never from the URL,
  because URLs end up in access logs, proxies and browser history.

Keys are re-checked while sockets stay open: every ``live.key_recheck_s`` the hub asks the
key store which of its sockets' keys were revoked (by any process) and closes those (4001).
One key holds at most ``live.max_clients_per_key`` sockets (one more is closed, 4029).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web
from aiokafka import AIOKafkaConsumer, TopicPartition

from turret_stream.errors import ApiError, ErrorCode, invalid
from turret_stream.http.guards import API_KEY_HEADER, key_like
from turret_stream.http.handlers import authenticate
from turret_stream.http.keys import KEYSTORE, LIVE_FEED, LIVE_HUB, SETTINGS
from turret_stream.keys import ApiKeyInfo, KeyStore
from turret_stream.producer import ensure_topic
from turret_stream.records import TopicEvent, Transition, TransitionBatch
from turret_stream.settings import LiveSettings, Settings, TrackLimits
from turret_stream.task_stop import cancel_until_done

log = logging.getLogger(__name__)

PROTOCOL = "turret.v1"
CLOSE_INVALID_KEY = 4001
CLOSE_TOO_SLOW = 4008
AUTH_TIMEOUT_S = 5.0
# A peer that has not taken its close frame by then is dropped (it may never read again).
CLOSE_TIMEOUT_S = 5.0
# Clients only ever send the auth message.
MAX_CLIENT_MESSAGE_BYTES = 16 * 1024
FEED_RETRY_MIN_S = 0.5
FEED_RETRY_MAX_S = 30.0
# stop(): the feed is cancelled again every second, for at most 10 s.
FEED_STOP_TIMEOUT_S = 10.0
FEED_STOP_RETRY_S = 1.0
# Heartbeats are queued to this many clients between yields to the event loop.
HEARTBEAT_CHUNK = 256

FILTERS = ("dimension", "session_id", "user_id", "events")
# events=: what a socket receives. Topic events concern no session: a socket filtered by
# session_id or user_id gets transitions only.
EVENT_CHOICES = ("all", "transitions", "topics")
KEY_IN_URL_MESSAGE = (
    "API keys are not accepted in the URL: URLs end up in access logs, proxies and browser "
    f'history. Send the key as a WebSocket subprotocol (["{PROTOCOL}", key]), in the '
    f'{API_KEY_HEADER} header, or as the first message {{"type": "auth", "api_key": ...}}.'
)
CLOSE_TOO_MANY = 4029


class _NoOfferedProtocolsInLog(logging.Filter):
    """aiohttp logs the subprotocols a client offered when none is ``turret.v1``; a client
    that offers its key alone would have the key written to the log. Drop the list."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and "Client protocols" in record.msg:
            record.msg = "%s: client protocols (redacted) don't overlap server-known ones %r"
            args = record.args if isinstance(record.args, tuple) else ()
            record.args = (args[0], args[-1]) if len(args) >= 2 else ("?", ())
        return True


logging.getLogger("aiohttp.websocket").addFilter(_NoOfferedProtocolsInLog())

# The fields of a Transition, read from the record so the feed follows it as it grows.
_FIELDS = tuple(Transition._options.fields)
_DEFAULTS: dict[str, Any] = dict(Transition._options.defaults)
_REQUIRED = tuple(name for name in _FIELDS if name not in _DEFAULTS)
_MATCHED = ("project", "dimension", "session_id", "user_id")
_TOPIC_FIELDS = tuple(TopicEvent._options.fields)
_TOPIC_DEFAULTS: dict[str, Any] = dict(TopicEvent._options.defaults)
_TOPIC_REQUIRED = tuple(name for name in _TOPIC_FIELDS if name not in _TOPIC_DEFAULTS)
_TOPIC_KINDS = ("topic_created", "topic_merged", "topic_split", "topic_labelled", "topic_spiking")


@dataclass(frozen=True, slots=True)
class Filters:
    dimension: str | None = None
    session_id: str | None = None
    user_id: str | None = None
    events: str = "all"

    @property
    def transitions(self) -> bool:
        return self.events != "topics"

    @property
    def topics(self) -> bool:
        return self.events != "transitions" and self.session_id is None and self.user_id is None

    def matches(self, transition: Mapping[str, Any]) -> bool:
        return (
            (self.dimension is None or self.dimension == transition["dimension"])
            and (self.session_id is None or self.session_id == transition["session_id"])
            and (self.user_id is None or self.user_id == transition["user_id"])
        )

    def bucket(self) -> tuple[str, str]:
        """The hub indexes a client under its most selective filter."""
        if self.session_id is not None:
            return ("session_id", self.session_id)
        if self.user_id is not None:
            return ("user_id", self.user_id)
        if self.dimension is not None:
            return ("dimension", self.dimension)
        return ("all", "")

    def as_dict(self) -> dict[str, str]:
        out = {name: value for name in FILTERS if (value := getattr(self, name)) is not None}
        if out.get("events") == "all":
            del out["events"]
        return out


def decode_topic_event(value: bytes | None) -> dict[str, Any] | None:
    """A topic event as a live message (``type`` is its kind), or None when the message
    is not one."""
    try:
        data = json.loads(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if not isinstance(data, dict) or any(name not in data for name in _TOPIC_REQUIRED):
        return None
    if data["kind"] not in _TOPIC_KINDS or not all(
        isinstance(data[name], str) for name in ("project", "dimension", "topic")
    ):
        return None
    event = {name: data.get(name, _TOPIC_DEFAULTS.get(name)) for name in _TOPIC_FIELDS}
    return {"type": event.pop("kind"), **event}


def decode_transitions(value: bytes | None) -> list[dict[str, Any]] | None:
    """The transitions a message of the transitions topic holds, in order, each as its
    fields (Faust's ``__faust`` key dropped): a ``TransitionBatch``, or a lone transition
    (what a worker before batches sent). None when the message is neither, or holds an
    item that is not a transition."""
    try:
        data = json.loads(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    items = TransitionBatch.items_of(data)
    found = [_transition_fields(item) for item in ([data] if items is None else items)]
    if not found or any(item is None for item in found):
        return None
    return found  # type: ignore[return-value]


def _transition_fields(data: Any) -> dict[str, Any] | None:
    if not isinstance(data, dict) or any(name not in data for name in _REQUIRED):
        return None
    if not all(isinstance(data[name], str) for name in _MATCHED):
        return None
    return {name: data.get(name, _DEFAULTS.get(name)) for name in _FIELDS}


async def _close_socket(
    ws: web.WebSocketResponse, transport: asyncio.BaseTransport | None, code: int, reason: str
) -> None:
    try:
        await asyncio.wait_for(ws.close(code=code, message=reason.encode()), CLOSE_TIMEOUT_S)
    except (TimeoutError, ConnectionError):
        # aiohttp then closes the transport, but a transport's close waits to flush its
        # buffer to a peer that may never read again: abort, so the memory goes now.
        if transport is not None:
            transport.abort()


class LiveClient:
    """One connection: a bounded queue of encoded messages and one sender task.

    Messages are encoded once per transition and shared by every client, so a queued
    message costs a reference, not a copy.
    """

    __slots__ = (
        "_close",
        "_limit",
        "_pending",
        "_sender",
        "_transport",
        "_wake",
        "filters",
        "key_id",
        "project",
        "ws",
    )

    def __init__(
        self, ws: web.WebSocketResponse, transport: asyncio.BaseTransport | None, limit: int
    ) -> None:
        self.ws = ws
        self._transport = transport
        self.project: str | None = None
        self.key_id: str | None = None
        self.filters = Filters()
        self._limit = limit
        self._pending: deque[str] = deque()
        self._wake = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        self._close: tuple[int, str] | None = None

    @property
    def behind(self) -> int:
        return len(self._pending)

    def offer(self, message: str) -> bool:
        """Queue a message; False when the queue is full (the client is too slow)."""
        if self._close is not None:
            return True
        if len(self._pending) >= self._limit:
            return False
        self._pending.append(message)
        self._wake.set()
        return True

    def start(self) -> None:
        if self._sender is None:  # else already closed (shutdown during auth)
            self._sender = asyncio.create_task(self._send_loop())

    def close(self, code: int, reason: str) -> None:
        """Drop what is queued and close with ``code``; never waits (called by the hub)."""
        if self._close is not None:
            return
        self._close = (code, reason)
        self._pending.clear()
        if self._sender is None:
            self._sender = asyncio.create_task(
                _close_socket(self.ws, self._transport, code, reason)
            )
        elif not self._sender.done():
            # The sender may be blocked writing to a peer that does not read: interrupt
            # it (between frames: a frame is written whole before the drain is awaited).
            self._sender.cancel()

    async def wait_closed(self) -> None:
        if self._sender is not None:
            await asyncio.wait({self._sender})

    async def stop(self) -> None:
        """The connection ended: stop the sender unless it is closing the socket."""
        if self._sender is not None and self._close is None:
            self._sender.cancel()
        await self.wait_closed()

    async def _send_loop(self) -> None:
        try:
            while True:
                if not self._pending:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                await self.ws.send_str(self._pending.popleft())
        except asyncio.CancelledError:
            if self._close is None:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
        except ConnectionError:
            return  # the peer went away; the handler's read loop sees it too
        code, reason = self._close
        await _close_socket(self.ws, self._transport, code, reason)


class LiveHub:
    """Subscriptions and fan-out; every method but the closing ones is synchronous, so
    delivering a transition never waits for any client."""

    def __init__(self, settings: LiveSettings) -> None:
        self._settings = settings
        self._connections: set[LiveClient] = set()
        self._subscribed: set[LiveClient] = set()
        self._index: dict[tuple[str, str, str], set[LiveClient]] = {}
        # Clients taking topic events, by (project, dimension filter or None).
        self._topic_index: dict[tuple[str, str | None], set[LiveClient]] = {}
        self._by_key: dict[str, set[LiveClient]] = {}
        self._shutting_down = False
        self.delivered = 0
        self.dropped_slow = 0

    @property
    def clients(self) -> int:
        """Subscribed clients (connections still authenticating are not counted)."""
        return len(self._subscribed)

    @property
    def connections(self) -> int:
        return len(self._connections)

    def admit(
        self, ws: web.WebSocketResponse, transport: asyncio.BaseTransport | None
    ) -> LiveClient | None:
        """A slot for a new connection, or None when ``live.max_clients`` are connected.
        Connections count from the upgrade, before auth, so unauthenticated sockets
        cannot pile up past the limit either."""
        if self._shutting_down or len(self._connections) >= self._settings.max_clients:
            return None
        client = LiveClient(ws, transport, self._settings.queue_size)
        self._connections.add(client)
        return client

    def subscribe(self, client: LiveClient, key: ApiKeyInfo, filters: Filters) -> bool:
        """Start sending to ``client``; False (nothing done) when its key already has
        ``live.max_clients_per_key`` sockets subscribed."""
        same_key = self._by_key.setdefault(key.key_id, set())
        if len(same_key) >= self._settings.max_clients_per_key:
            if not same_key:
                del self._by_key[key.key_id]
            return False
        same_key.add(client)
        project = key.project
        client.key_id = key.key_id
        client.project = project
        client.filters = filters
        # The first message tells the client its subscription is in place.
        client.offer(
            json.dumps({"type": "subscribed", "project": project, "filters": filters.as_dict()})
        )
        client.start()
        self._subscribed.add(client)
        if filters.transitions:
            self._index.setdefault((project, *filters.bucket()), set()).add(client)
        if filters.topics:
            self._topic_index.setdefault((project, filters.dimension), set()).add(client)
        return True

    async def release(self, client: LiveClient) -> None:
        self._unsubscribe(client)
        self._connections.discard(client)
        await client.stop()

    def _unsubscribe(self, client: LiveClient) -> None:
        if client not in self._subscribed:
            return
        self._subscribed.discard(client)
        assert client.project is not None and client.key_id is not None
        same_key = self._by_key.get(client.key_id)
        if same_key is not None:
            same_key.discard(client)
            if not same_key:
                del self._by_key[client.key_id]
        for index, key in (
            (self._index, (client.project, *client.filters.bucket())),
            (self._topic_index, (client.project, client.filters.dimension)),
        ):
            bucket = index.get(key)
            if bucket is not None:
                bucket.discard(client)
                if not bucket:
                    del index[key]

    def _offer(self, client: LiveClient, message: str) -> None:
        if client.offer(message):
            return
        behind = client.behind
        self._unsubscribe(client)
        self.dropped_slow += 1
        log.info("live client of %s closed: %d messages behind", client.project, behind)
        client.close(CLOSE_TOO_SLOW, f"client too slow: {behind} messages behind")

    def publish(self, transition: Mapping[str, Any]) -> int:
        """Queue a transition for every matching client of its project; returns how many."""
        project = transition["project"]
        targets: list[LiveClient] = []
        for kind in ("session_id", "user_id", "dimension"):
            bucket = self._index.get((project, kind, transition[kind]))
            if bucket:
                targets.extend(c for c in bucket if c.filters.matches(transition))
        everything = self._index.get((project, "all", ""))
        if everything:
            targets.extend(everything)
        if not targets:
            return 0
        message = json.dumps({"type": "transition", **transition})
        for client in targets:
            self._offer(client, message)
        self.delivered += len(targets)
        return len(targets)

    def publish_topic_event(self, event: Mapping[str, Any]) -> int:
        """Queue a topic event (decoded by ``decode_topic_event``) for the clients of its
        project that take topic events (of its dimension, or of all); returns how many."""
        project = event["project"]
        targets = [
            *self._topic_index.get((project, None), ()),
            *self._topic_index.get((project, event["dimension"]), ()),
        ]
        if not targets:
            return 0
        message = json.dumps(event)
        for client in targets:
            self._offer(client, message)
        self.delivered += len(targets)
        return len(targets)

    async def heartbeat(self) -> None:
        message = json.dumps({"type": "heartbeat", "ts": round(time.time(), 3)})
        for i, client in enumerate(list(self._subscribed)):
            if client in self._subscribed:
                self._offer(client, message)
            if i % HEARTBEAT_CHUNK == HEARTBEAT_CHUNK - 1:
                # Wake the senders a chunk at a time, so that with thousands of clients a
                # transition arriving now is not queued behind every heartbeat write.
                await asyncio.sleep(0)

    async def run_heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self._settings.heartbeat_s)
            await self.heartbeat()

    def close_revoked(self, keystore: KeyStore) -> int:
        """Close (4001) every socket whose key was revoked since it subscribed; returns
        how many. One query for all the keys with open sockets."""
        if not self._by_key:
            return 0
        closed = 0
        for key_id in keystore.revoked(self._by_key):
            for client in list(self._by_key.get(key_id, ())):
                self._unsubscribe(client)
                client.close(CLOSE_INVALID_KEY, "API key revoked")
                closed += 1
        if closed:
            log.info("live: closed %d sockets of revoked keys", closed)
        return closed

    async def run_key_checks(self, keystore: KeyStore) -> None:
        """Re-check open sockets' keys every ``live.key_recheck_s``: keys are revoked in
        the database, possibly by another process, so polling it is what sees them all."""
        while True:
            await asyncio.sleep(self._settings.key_recheck_s)
            try:
                self.close_revoked(keystore)
            except Exception:
                # A locked or briefly unreadable database: try again next round.
                log.warning("live: could not re-check API keys", exc_info=True)

    async def close_all(self, code: int = WSCloseCode.GOING_AWAY, reason: str = "") -> None:
        """Close every connection (app shutdown) and wait, boundedly, for the closes."""
        self._shutting_down = True
        clients = list(self._connections)
        for client in clients:
            self._unsubscribe(client)
            client.close(code, reason or "server shutting down")
        if clients:
            await asyncio.wait(
                [asyncio.create_task(c.wait_closed()) for c in clients],
                timeout=CLOSE_TIMEOUT_S + 1,
            )


class TransitionsFeed:
    """Reads the transitions topic into the hub. Starting never fails: while the broker
    is unreachable it retries in the background with exponential backoff."""

    def __init__(self, settings: Settings, hub: LiveHub) -> None:
        self._settings = settings
        self._hub = hub
        self._task: asyncio.Task[None] | None = None
        self._delay = FEED_RETRY_MIN_S
        # Set while the consumer is positioned at the end of every partition: anything
        # produced from then on is delivered.
        self.ready = asyncio.Event()
        self.skipped = 0

    @property
    def topic(self) -> str:
        return self._settings.kafka.transitions_topic

    @property
    def topics(self) -> tuple[str, str]:
        k = self._settings.kafka
        return (k.transitions_topic, k.topic_events_topic)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="live-transitions-feed")

    async def stop(self) -> None:
        if self._task is not None:
            # Cancel until it ends: a cancellation that lands while aiokafka is starting
            # can be swallowed (task_stop.py), and the feed would then run on and hold the
            # app's shutdown forever.
            if await cancel_until_done([self._task], FEED_STOP_TIMEOUT_S, FEED_STOP_RETRY_S):
                log.warning("live feed did not stop; leaving it behind")
            self._task = None
        self.ready.clear()

    async def _run(self) -> None:
        while True:
            try:
                await self._consume()
            except Exception as exc:
                log.warning(
                    "live feed: cannot read %s (%r); retrying in %.1f s",
                    self.topic,
                    exc,
                    self._delay,
                )
            self.ready.clear()
            await asyncio.sleep(self._delay)
            self._delay = min(self._delay * 2, FEED_RETRY_MAX_S)

    def _partitions(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        out = []
        for topic in self.topics:
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                raise RuntimeError(f"topic {topic} has no partitions yet")
            out += [TopicPartition(topic, p) for p in sorted(partitions)]
        return out

    async def _consume(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._settings.bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            fetch_max_wait_ms=self._settings.kafka.fetch_max_wait_ms,
        )
        try:
            # Created here if the worker has not yet: a consumer cannot wait for a topic
            # without a group, and its partitions must be known to read from their end.
            k = self._settings.kafka
            for topic in self.topics:
                await ensure_topic(
                    self._settings.bootstrap_servers, topic, k.partitions, k.replication_factor
                )
            await consumer.start()  # its bootstrap metadata now includes the topic
            partitions = self._partitions(consumer)
            # Assigned, not subscribed: no group, and positions are known before `ready`.
            consumer.assign(partitions)
            await consumer.seek_to_end(*partitions)
            for tp in partitions:
                await consumer.position(tp)
            self.ready.set()
            self._delay = FEED_RETRY_MIN_S
            log.info("live feed reading %s (%d partitions)", self.topics, len(partitions))
            while True:
                batch = await consumer.getmany(timeout_ms=1000)
                for records in batch.values():
                    for record in records:
                        for publish, message in self._decode(record):
                            publish(message)
                            # Let the senders write between transitions: one fetch can
                            # hold a burst larger than a client's queue, and a client is
                            # only "too slow" when its socket, not this loop, holds it back.
                            await asyncio.sleep(0)
        finally:
            await consumer.stop()

    def _decode(
        self, record: Any
    ) -> list[tuple[Callable[[dict[str, Any]], object], dict[str, Any]]]:
        """The record's live messages, each with the hub's method that publishes it; none,
        counted and logged, for a record that is not what its topic carries."""
        if record.topic != self.topic:
            event = decode_topic_event(record.value)
            if event is not None:
                return [(self._hub.publish_topic_event, event)]
            what = "a topic event"
        else:
            transitions = decode_transitions(record.value)
            if transitions is not None:
                return [(self._hub.publish, t) for t in transitions]
            what = "a transition"
        self.skipped += 1
        log.warning(
            "live feed: skipped a message that is not %s (%s[%d] offset %d)",
            what,
            record.topic,
            record.partition,
            record.offset,
        )
        return []


async def run_live_feed(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the feed and the heartbeats run for the app's lifetime."""
    feed = app[LIVE_FEED]
    await feed.start()
    heartbeats = asyncio.create_task(app[LIVE_HUB].run_heartbeats())
    key_checks = asyncio.create_task(app[LIVE_HUB].run_key_checks(app[KEYSTORE]))
    yield
    heartbeats.cancel()
    key_checks.cancel()
    await asyncio.wait({heartbeats, key_checks})
    await feed.stop()


async def close_live_clients(app: web.Application) -> None:
    """on_shutdown: close every socket (1001) before aiohttp waits for open handlers."""
    await app[LIVE_HUB].close_all()


# --- the handler ------------------------------------------------------------------


def _keep_keys_out_of_access_log(request: web.Request) -> None:
    """aiohttp's access log prints ``request.path_qs``, a cached property. When the query
    holds anything but filters, cache a copy with those values replaced, so a key sent in
    the URL by mistake is refused *and* never written to the log."""
    query = request.rel_url.query
    if all(name in FILTERS and not key_like(name, value) for name, value in query.items()):
        return
    safe = [
        (name, value if name in FILTERS and not key_like(name, value) else "REDACTED")
        for name, value in query.items()
    ]
    request._cache["path_qs"] = str(request.rel_url.with_query(safe))


def parse_filters(query: Mapping[str, str], limits: TrackLimits) -> Filters:
    """Filters from the query; a key in it is refused (401), anything unknown is 400."""
    if any(key_like(name, value) for name, value in query.items()):
        raise ApiError(401, ErrorCode.INVALID_API_KEY, KEY_IN_URL_MESSAGE)
    values: dict[str, str] = {}
    for name, value in query.items():
        if name not in FILTERS:
            raise invalid(name, f"unknown parameter; the filters are {', '.join(FILTERS)}")
        if name in values:
            raise invalid(name, "given more than once")
        if name == "events":
            if value not in EVENT_CHOICES:
                raise invalid(name, f"must be one of {', '.join(EVENT_CHOICES)}")
            values[name] = value
            continue
        limit = limits.max_metadata_key_chars if name == "dimension" else limits.max_id_chars
        if not 0 < len(value) <= limit:
            raise invalid(name, f"must be 1-{limit} characters")
        values[name] = value
    return Filters(**values)


def _offered_key(request: web.Request) -> str | None:
    """The key a browser offers as a subprotocol beside ``turret.v1`` (the handshake
    answers with ``turret.v1`` only, so the key is never echoed)."""
    offered = ",".join(request.headers.getall("Sec-WebSocket-Protocol", []))
    for proto in (p.strip() for p in offered.split(",")):
        if proto and proto != PROTOCOL:
            return proto
    return None


async def _key_from_first_message(
    ws: web.WebSocketResponse, keystore: KeyStore
) -> ApiKeyInfo | None:
    try:
        msg = await ws.receive(timeout=AUTH_TIMEOUT_S)
    except TimeoutError:
        return None
    if msg.type is not WSMsgType.TEXT:
        return None
    try:
        data = json.loads(msg.data)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("type") != "auth":
        return None
    key = data.get("api_key")
    return keystore.authenticate(key) if isinstance(key, str) else None


async def live(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    keystore = request.app[KEYSTORE]
    hub = request.app[LIVE_HUB]
    _keep_keys_out_of_access_log(request)
    filters = parse_filters(request.query, settings.limits)
    # A key in the header is checked before the upgrade: a plain 401 for plain clients.
    info = authenticate(request) if API_KEY_HEADER in request.headers else None
    ws = web.WebSocketResponse(
        protocols=(PROTOCOL,),
        heartbeat=settings.live.heartbeat_s,
        # permessage-deflate keeps a zlib context per connection: too much per client.
        compress=False,
        max_msg_size=MAX_CLIENT_MESSAGE_BYTES,
        timeout=CLOSE_TIMEOUT_S,
    )
    if not ws.can_prepare(request).ok:
        raise ApiError(
            426,
            ErrorCode.INVALID_REQUEST,
            "GET /v1/live is a WebSocket endpoint: connect with a WebSocket client",
        )
    offered = None if info is not None else _offered_key(request)
    await ws.prepare(request)
    client = hub.admit(ws, request.transport)
    if client is None:
        await _close_socket(ws, request.transport, WSCloseCode.TRY_AGAIN_LATER, "try again later")
        return ws
    try:
        # A bad subprotocol key is answered after the upgrade: a browser cannot read the
        # status of a failed handshake, but it can read a close code and reason.
        if info is None and offered is not None:
            info = keystore.authenticate(offered)
        elif info is None:
            info = await _key_from_first_message(ws, keystore)
        if info is None:
            await _close_socket(ws, request.transport, CLOSE_INVALID_KEY, "Invalid API key")
            return ws
        if not hub.subscribe(client, info, filters):
            limit = settings.live.max_clients_per_key
            await _close_socket(
                ws,
                request.transport,
                CLOSE_TOO_MANY,
                f"too many live connections for this API key (limit {limit})",
            )
            return ws
        async for _ in ws:
            pass  # nothing to read after auth; iterating answers pings and sees the close
    finally:
        await hub.release(client)
    return ws
