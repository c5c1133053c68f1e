"""Shared fixtures: a real tansu broker for the session, fresh settings per test."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from turret_stream.broker import EmbeddedBroker, free_port
from turret_stream.keys import KeyStore
from turret_stream.settings import Settings


async def wait_until(predicate, timeout: float = 60.0) -> None:
    """Poll ``predicate`` until it holds; TimeoutError after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.1)


@pytest.fixture(scope="session")
def broker_port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def broker(broker_port: int) -> Iterator[EmbeddedBroker]:
    # A plain subprocess, not tied to any event loop: started once for the whole session.
    running = EmbeddedBroker("127.0.0.1", broker_port)
    asyncio.run(running.start())
    yield running
    asyncio.run(running.stop())


def make_settings(data_dir: Path, broker_port: int, **overrides: object) -> Settings:
    """Settings isolated per test: own data dir, topic and consumer group."""
    tag = uuid.uuid4().hex[:8]
    base = Settings(
        data_dir=data_dir,
        kafka={
            "embedded_port": broker_port,
            "topic_prefix": f"test.{tag}",
            "partitions": 4,
            "produce_timeout_s": 3.0,
        },
        # One embedding process: tests do not depend on the machine's core count.
        worker={"app_id": f"turret-test-{tag}", "embed_processes": 1},
        http={"port": 0},
    )
    return base.with_overrides(**overrides) if overrides else base


@pytest.fixture
def settings(tmp_path: Path, broker: EmbeddedBroker) -> Settings:
    return make_settings(tmp_path / "data", broker.port)


@pytest.fixture
def keystore(settings: Settings) -> KeyStore:
    store = KeyStore(settings.keys_db_path)
    yield store
    store.close()


async def consume(
    settings: Settings, count: int, timeout: float = 15.0, topic: str | None = None
) -> list:
    """Read ``count`` messages (fewer if ``timeout`` passes first) back from ``topic``
    (default: the events topic), from the beginning."""
    consumer = AIOKafkaConsumer(
        topic or settings.kafka.events_topic,
        bootstrap_servers=settings.bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    messages: list = []
    try:
        async with asyncio.timeout(timeout):
            while len(messages) < count:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    messages.extend(records)
    except TimeoutError:
        pass
    finally:
        await consumer.stop()
    return messages


def decode(message) -> dict:
    return json.loads(message.value)
