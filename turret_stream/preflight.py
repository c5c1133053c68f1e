"""Start-up checks: the broker and the vector store answer before a process starts serving.

A process that cannot reach what it depends on says so in one line and exits non-zero
(the CLI turns ``Unreachable`` into ``error: ...``, exit 1), instead of printing a library's
traceback or serving requests it cannot honour. Each check retries for
``startup.wait_s`` seconds first, so a service that starts a moment later than its
dependencies (``docker compose up``) still comes up; a restart policy covers longer waits.
Once running, an outage is answered per request (503 with ``retry_after``), not by exiting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from aiokafka.admin import AIOKafkaAdminClient

from turret_stream.errors import TurretError
from turret_stream.settings import Settings
from turret_stream.storage import VectorStore

log = logging.getLogger(__name__)

# Pause between two attempts of a check.
RETRY_EVERY_S = 1.0


class Unreachable(TurretError):
    """A dependency (broker, vector store) did not answer within ``startup.wait_s``."""


def _reason(exc: BaseException) -> str:
    # Library errors wrap the useful part ("Connection refused") in layers of context.
    root: BaseException = exc
    while root.__cause__ is not None or root.__context__ is not None:
        root = root.__cause__ or root.__context__  # type: ignore[assignment]
    text = str(root) or str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]


async def _retry(
    name: str, what: str, attempt: Callable[[], Awaitable[None]], wait_s: float
) -> None:
    deadline = time.monotonic() + wait_s
    # aiokafka logs an ERROR for every refused connection: one line of ours says it all.
    quiet = logging.getLogger("aiokafka")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        while True:
            try:
                await attempt()
                return
            except Exception as exc:
                if time.monotonic() >= deadline:
                    raise Unreachable(f"{what}: {_reason(exc)}") from None
                log.info("waiting for %s: %s", name, _reason(exc))
            await asyncio.sleep(RETRY_EVERY_S)
    finally:
        quiet.setLevel(level)


async def check_broker(settings: Settings) -> None:
    """The Kafka cluster at ``bootstrap_servers`` answers a metadata request."""

    async def attempt() -> None:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=settings.bootstrap_servers, request_timeout_ms=5000
        )
        try:
            await admin.start()
            await admin.list_topics()
        finally:
            await admin.close()

    what = (
        f"cannot reach Kafka at {settings.bootstrap_servers} "
        "(kafka.bootstrap_servers / TURRET_KAFKA__BOOTSTRAP_SERVERS)"
    )
    await _retry("Kafka", what, attempt, settings.startup.wait_s)


async def check_store(store: VectorStore, settings: Settings) -> None:
    """The vector store answers a listing of its collections."""

    async def attempt() -> None:
        await asyncio.to_thread(store.list_collections)

    if settings.storage.backend == "server":
        what = (
            f"cannot reach the Qdrant server at {settings.storage.url} "
            "(storage.url / TURRET_STORAGE__URL)"
        )
    else:
        what = f"cannot open the vector store under {settings.qdrant_path}"
    await _retry("the vector store", what, attempt, settings.startup.wait_s)
