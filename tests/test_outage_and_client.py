"""Broker outages and the Python client: 503 while the broker is down, nothing lost once
it is back, retries with backoff, and the never-raise mode."""

from __future__ import annotations

import asyncio
import time

import pytest

from turret_stream.broker import EmbeddedBroker
from turret_stream.client import TrackError, TurretClient
from turret_stream.keys import KeyStore
from turret_stream.stack import running_stack

from .conftest import consume, decode, free_port, make_settings


@pytest.fixture
async def own_broker():
    """A broker this test may stop and start again (on the same port)."""
    broker = EmbeddedBroker("127.0.0.1", free_port())
    await broker.start()
    yield broker
    await broker.stop()


async def test_broker_down_gives_503_and_client_retries_lose_nothing(tmp_path, own_broker):
    settings = make_settings(
        tmp_path, own_broker.port, **{"kafka.produce_timeout_s": 1.0, "rate_limit.enabled": False}
    )
    key = KeyStore(settings.keys_db_path).create("acme").secret
    async with running_stack(settings, broker=False, worker=False, api=True) as stack:
        raw = TurretClient(key, stack.api_url, raise_errors=False, max_retries=0)
        assert (await asyncio.to_thread(raw.track, "e", {"prompt": "before"})).success

        await own_broker.stop()
        started = time.monotonic()
        down = await asyncio.to_thread(raw.track, "e", {"prompt": "while down"})
        assert not down.success
        assert down.error_code == "SERVICE_UNAVAILABLE"
        # Answered within the configured timeout (plus slack), not hanging.
        assert time.monotonic() - started < 5

        # Clients keep retrying while the broker is away; it comes back after 2 s.
        retrying = TurretClient(key, stack.api_url, max_retries=20, backoff_max=1.0)

        def send_all() -> list:
            return [
                retrying.track("e", {"prompt": f"retried {i}"}, session_id="s-1") for i in range(5)
            ]

        sending = asyncio.create_task(asyncio.to_thread(send_all))
        await asyncio.sleep(2)
        await own_broker.start()
        results = await sending
        assert all(r.success for r in results)
        assert results[0].attempts > 1

        messages = await consume(settings, 5)
        on_topic = [decode(m) for m in messages]
        assert {r.event_id for r in results} <= {v["event_id"] for v in on_topic}
        prompts = [v["metadata"]["prompt"] for v in on_topic if v["session_id"] == "s-1"]
        # In order, and each retried event counted once after deduplication by event id.
        assert list(dict.fromkeys(prompts)) == [f"retried {i}" for i in range(5)]


async def test_client_waits_retry_after_on_429(tmp_path, broker):
    settings = make_settings(
        tmp_path,
        broker.port,
        **{"rate_limit.events": 1, "rate_limit.window_s": 1.0, "rate_limit.burst": 1},
    )
    key = KeyStore(settings.keys_db_path).create("acme").secret
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    async with running_stack(settings, broker=False, worker=False, api=True) as stack:
        client = TurretClient(key, stack.api_url, sleep=sleep, backoff_base=0.01)
        first = await asyncio.to_thread(client.track, "e", {"prompt": "one"})
        second = await asyncio.to_thread(client.track, "e", {"prompt": "two"})
    assert first.success and first.attempts == 1
    assert second.success and second.attempts == 2
    # The server said retry_after=1: the client waited at least that, not its 10 ms backoff.
    assert waits and waits[0] >= 1.0


def test_backoff_grows_exponentially_with_jitter_and_cap():
    client = TurretClient("k", backoff_base=0.5, backoff_max=4.0)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (9, 4.0)]:
        for _ in range(20):
            delay = client.backoff(attempt, None)
            assert ceiling / 2 <= delay <= ceiling
    assert client.backoff(1, retry_after=7) == 7


def test_never_raise_mode_swallows_connection_errors():
    port = free_port()  # nothing listens here
    slept: list[float] = []
    quiet = TurretClient(
        "k", f"http://127.0.0.1:{port}", raise_errors=False, max_retries=2, sleep=slept.append
    )
    result = quiet.track("e", {"prompt": "x"})
    assert not result.success
    assert result.error_code == "CONNECTION_ERROR"
    assert result.attempts == 3 and len(slept) == 2

    loud = TurretClient("k", f"http://127.0.0.1:{port}", max_retries=0)
    with pytest.raises(TrackError):
        loud.track("e", {"prompt": "x"})


async def test_client_does_not_retry_client_errors(tmp_path, broker):
    settings = make_settings(tmp_path, broker.port)
    key = KeyStore(settings.keys_db_path).create("acme").secret
    async with running_stack(settings, broker=False, worker=False, api=True) as stack:
        client = TurretClient(key, stack.api_url, raise_errors=False)
        result = await asyncio.to_thread(client.track, "e", {"prompt": "x" * 10_001})
        bad_key = TurretClient("tsk_nope", stack.api_url)
        with pytest.raises(TrackError) as info:
            await asyncio.to_thread(bad_key.track, "e", {"prompt": "x"})
    assert result.error_code == "TEXT_TOO_LONG" and result.attempts == 1
    assert info.value.status == 401 and info.value.code == "INVALID_API_KEY"
