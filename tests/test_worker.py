"""The Faust worker consumes the events topic through a real broker."""

from __future__ import annotations

import asyncio

from turret_stream.client import TurretClient
from turret_stream.keys import KeyStore
from turret_stream.stack import running_stack

from .conftest import make_settings, wait_until


async def test_worker_consumes_events_once_per_event_id(tmp_path, broker):
    settings = make_settings(tmp_path, broker.port)
    store = KeyStore(settings.keys_db_path)
    acme, other = store.create("acme").secret, store.create("other").secret
    async with running_stack(settings, broker=False, worker=True, api=True) as stack:
        stats = stack.topology.ingest_stats

        def send() -> None:
            a = TurretClient(acme, stack.api_url)
            for i in range(6):
                a.track("prompt", {"prompt": f"question {i}"}, session_id=f"s{i % 2}")
            TurretClient(other, stack.api_url).track("prompt", {"prompt": "hello"})
            # The same idempotency key twice: a client retry that reached the broker twice.
            a._http.post(
                "/track",
                json={"name": "prompt", "metadata": {}},
                headers={"Idempotency-Key": "dup"},
            )
            a._http.post(
                "/track",
                json={"name": "prompt", "metadata": {}},
                headers={"Idempotency-Key": "dup"},
            )

        await asyncio.to_thread(send)
        await wait_until(lambda: stats.processed + stats.duplicates >= 9, timeout=20.0)
        assert stats.per_project == {"acme": 7, "other": 1}
        assert stats.duplicates == 1
