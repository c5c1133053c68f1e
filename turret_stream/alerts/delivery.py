"""Webhook deliveries: signed, retried with backoff, logged, never in the pipeline's way.

Every delivery is a POST of a JSON body with these headers:

- ``X-Turret-Signature: t=<unix seconds>,v1=<hex>`` where ``<hex>`` is
  HMAC-SHA256(rule secret, ``"<t>." + body``): the receiver recomputes it over the raw
  body and compares in constant time, and refuses a ``t`` too far from its clock (replays);
- ``X-Turret-Delivery`` (the delivery id, the same on every attempt: deduplicate on it),
  ``X-Turret-Event`` (the event kind, ``test`` for a test delivery).

``submit`` never waits: a delivery is admitted while fewer than ``alerts.queue_size`` are
outstanding (queued, in flight or waiting to retry), else it is dropped and logged as
``dropped``. ``alerts.concurrency`` senders work the queue; each attempt has
``alerts.timeout_s``; a failed attempt (network error, timeout, 408, 429 or 5xx) is retried
after ``backoff_s`` x 2^(attempt-1) (at most ``backoff_max_s``), up to ``max_attempts``; a
waiting retry holds no sender, so a receiver that hangs or answers 500 delays only its own
deliveries. Other 4xx answers and refused URLs fail at once.

The log (``turret.alert_deliveries``, ``alerts.log_keep`` entries per project) has one
entry per delivery, updated after each attempt: status ``pending``, ``delivered``,
``failed`` or ``dropped``, attempts, the last HTTP status and error.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from turret_stream.alerts.rules import Rule
from turret_stream.alerts.urls import GuardedResolver, UrlNotAllowed, check_url, resolve_allowed
from turret_stream.settings import AlertSettings
from turret_stream.storage import Filter, Point, VectorStore
from turret_stream.task_stop import cancel_until_done

log = logging.getLogger(__name__)

LOG_COLLECTION = "turret.alert_deliveries"
SIGNATURE_HEADER = "X-Turret-Signature"
DELIVERY_HEADER = "X-Turret-Delivery"
EVENT_HEADER = "X-Turret-Event"
RETRY_STATUSES = frozenset({408, 425, 429})
MAX_ERROR_CHARS = 300
# stop(): how long to keep cancelling the senders, and how often.
STOP_TIMEOUT_S = 10.0
STOP_RETRY_S = 0.5
_UNIT = [1.0]


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Turret-Signature`` value of ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify(secret: str, header: str, body: bytes, tolerance_s: float = 300.0) -> bool:
    """What a receiver does (documented in README; used by the tests)."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs(time.time() - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


@dataclass
class Delivery:
    id: str
    rule: Rule
    kind: str
    body: bytes
    topic: str | None
    test: bool = False
    max_attempts: int = 1
    attempts: int = 0
    created_at: float = field(default_factory=time.time)
    done: asyncio.Future | None = None

    def entry(self, status: str, code: int | None, error: str | None) -> dict[str, Any]:
        return {
            "id": self.id,
            "project": self.rule.project,
            "rule_id": self.rule.id,
            "url": self.rule.url,
            "kind": self.kind,
            "topic": self.topic,
            "test": self.test,
            "status": status,
            "attempts": self.attempts,
            "status_code": code,
            "error": error[:MAX_ERROR_CHARS] if error else None,
            "created_at": self.created_at,
            "updated_at": time.time(),
        }


class DeliveryLog:
    """One entry per delivery, newest kept (``log_keep`` per project)."""

    def __init__(self, store: VectorStore, keep: int) -> None:
        self.store = store
        self.keep = keep
        self._written: dict[str, int] = defaultdict(int)

    def write(self, entry: dict[str, Any]) -> None:
        if not self.store.has_collection(LOG_COLLECTION):
            self.store.create_collection(
                LOG_COLLECTION, 1, "dot", indexes={"project": "keyword", "rule_id": "keyword"}
            )
        self.store.upsert(LOG_COLLECTION, [Point(entry["id"], _UNIT, entry)])
        project = entry["project"]
        self._written[project] += 1
        if self._written[project] >= max(10, self.keep // 10):
            self._written[project] = 0
            self._prune(project)

    def _prune(self, project: str) -> None:
        entries = self.list(project, None, limit=None)
        if len(entries) > self.keep:
            self.store.delete(LOG_COLLECTION, [e["id"] for e in entries[self.keep :]])

    def list(self, project: str, rule_id: str | None, limit: int | None = 50) -> list[dict]:
        """Entries of a project (of one rule), newest first."""
        if not self.store.has_collection(LOG_COLLECTION):
            return []
        must: dict[str, Any] = {"project": project}
        if rule_id is not None:
            must["rule_id"] = rule_id
        out: list[dict] = []
        offset = None
        while True:
            records, offset = self.store.scroll(
                LOG_COLLECTION, filter=Filter(must=must), limit=512, offset=offset
            )
            out += [r.payload for r in records]
            if offset is None:
                break
        out.sort(key=lambda e: -e["created_at"])
        return out if limit is None else out[:limit]


def payload(rule: Rule, kind: str, event: dict[str, Any], *, test: bool = False) -> bytes:
    """The body of a delivery: what fired, for which rule."""
    return json.dumps(
        {
            "rule": {"id": rule.id, "name": rule.name, "kind": rule.kind},
            "project": rule.project,
            "kind": kind,
            "test": test,
            "event": event,
        },
        separators=(",", ":"),
    ).encode()


class Deliverer:
    """The delivery queue of one process (the worker's alert agent, or the API's tests)."""

    def __init__(self, settings: AlertSettings, delivery_log: DeliveryLog) -> None:
        self.settings = settings
        self.log = delivery_log
        self._queue: asyncio.Queue[Delivery] = asyncio.Queue()
        self._log_queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._outstanding = 0
        self._tasks: list[asyncio.Task] = []
        self._timers: set[asyncio.TimerHandle] = set()
        self._session: aiohttp.ClientSession | None = None
        self.dropped = 0
        self.delivered = 0
        self.failed = 0

    async def start(self) -> None:
        if self._session is not None:
            return
        connector = aiohttp.TCPConnector(
            resolver=GuardedResolver(self.settings), limit=self.settings.concurrency * 2
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.settings.timeout_s),
            headers={"User-Agent": "turret-stream-webhooks/1"},
        )
        self._tasks = [
            asyncio.create_task(self._sender(), name=f"webhook-sender-{i}")
            for i in range(self.settings.concurrency)
        ]
        self._tasks.append(asyncio.create_task(self._log_writer(), name="webhook-log"))

    async def stop(self) -> None:
        if self._tasks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.flush_log(), 5.0)
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        # Cancelled until they end: a sender that missed a cancellation would wait on the
        # queue for ever. Bounded: shutdown never hangs on a webhook.
        pending = await cancel_until_done(self._tasks, STOP_TIMEOUT_S, STOP_RETRY_S)
        if pending:
            log.warning("%d webhook tasks did not stop within %ss", len(pending), STOP_TIMEOUT_S)
        self._tasks = []
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def outstanding(self) -> int:
        return self._outstanding

    def submit(
        self,
        rule: Rule,
        kind: str,
        event: dict[str, Any],
        *,
        test: bool = False,
        max_attempts: int | None = None,
    ) -> Delivery | None:
        """Queue a delivery; never waits. None (and a ``dropped`` log entry) when
        ``alerts.queue_size`` deliveries are already outstanding."""
        delivery = Delivery(
            f"dl_{uuid.uuid4().hex}",
            rule,
            kind,
            payload(rule, kind, event, test=test),
            event.get("topic"),
            test,
            max_attempts or self.settings.max_attempts,
        )
        if self._outstanding >= self.settings.queue_size:
            self.dropped += 1
            log.warning("webhook queue full: delivery to rule %s dropped", rule.id)
            self._write_soon(delivery.entry("dropped", None, "delivery queue full"))
            return None
        self._outstanding += 1
        delivery.done = asyncio.get_running_loop().create_future()
        self._write_soon(delivery.entry("pending", None, None))
        self._queue.put_nowait(delivery)
        return delivery

    def _write_soon(self, entry: dict[str, Any]) -> None:
        """Log entries are written in order by one task (a delivery's last word wins)."""
        if self._log_queue.qsize() >= 4 * self.settings.queue_size and entry["status"] in (
            "dropped",
            "pending",
        ):
            return  # the log cannot keep up with a flood: keep the final words only
        self._log_queue.put_nowait(entry)

    async def _log_writer(self) -> None:
        while True:
            entry = await self._log_queue.get()
            try:
                await asyncio.to_thread(self.log.write, entry)
            except Exception:
                log.warning("could not write delivery log entry %s", entry["id"], exc_info=True)
            finally:
                self._log_queue.task_done()

    async def flush_log(self) -> None:
        """Wait until every log entry so far is written (tests, shutdown)."""
        await self._log_queue.join()

    async def _sender(self) -> None:
        while True:
            delivery = await self._queue.get()
            try:
                await self._attempt(delivery)
            except Exception:  # a sender never dies on one delivery
                log.exception("webhook delivery %s failed unexpectedly", delivery.id)
                self._finish(delivery, "failed", None, "internal error")

    async def _attempt(self, d: Delivery) -> None:
        assert self._session is not None
        d.attempts += 1
        code: int | None = None
        try:
            host, port = check_url(d.rule.url, self.settings)
            # Literal addresses skip the resolver: checked here, names checked in both.
            await resolve_allowed(host, port, self.settings)
            timestamp = int(time.time())
            headers = {
                "Content-Type": "application/json",
                SIGNATURE_HEADER: sign(d.rule.secret, timestamp, d.body),
                DELIVERY_HEADER: d.id,
                EVENT_HEADER: "test" if d.test else d.kind,
            }
            async with self._session.post(
                d.rule.url, data=d.body, headers=headers, allow_redirects=False
            ) as response:
                code = response.status
                await response.read()
            if 200 <= code < 300:
                self.delivered += 1
                self._finish(d, "delivered", code, None)
                return
            error = f"HTTP {code}"
            retry = code >= 500 or code in RETRY_STATUSES
        except UrlNotAllowed as exc:
            error, retry = f"URL not allowed: {exc}", False
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            error, retry = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, True
        if retry and d.attempts < d.max_attempts:
            delay = min(
                self.settings.backoff_s * 2 ** (d.attempts - 1), self.settings.backoff_max_s
            )
            self._write_soon(d.entry("pending", code, f"{error}; retry in {delay:g} s"))
            self._retry_later(d, delay)
            return
        self.failed += 1
        self._finish(d, "failed", code, error)

    def _retry_later(self, d: Delivery, delay: float) -> None:
        loop = asyncio.get_running_loop()

        def requeue() -> None:
            self._timers.discard(handle)
            self._queue.put_nowait(d)

        handle = loop.call_later(delay, requeue)
        self._timers.add(handle)

    def _finish(self, d: Delivery, status: str, code: int | None, error: str | None) -> None:
        self._outstanding -= 1
        entry = d.entry(status, code, error)
        self._write_soon(entry)
        if d.done is not None and not d.done.done():
            d.done.set_result(entry)
