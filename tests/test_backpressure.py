"""Back-pressure: a burst far over the pipeline's capacity gets 503 SERVICE_UNAVAILABLE
with retry_after once the lag passes pipeline.max_lag_events; every event answered 200
is processed; the backlog (and so memory) stays bounded by the setting."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from turret_stream.keys import KeyStore
from turret_stream.stack import running_stack

from .conftest import make_settings, wait_until
from .test_pipeline import GROUPS

TEXTS = [t for texts in GROUPS.values() for t in texts]
MAX_LAG = 40
CONCURRENCY = 32


@pytest.mark.timeout(240)
async def test_a_burst_is_shed_with_503_and_nothing_accepted_is_lost(tmp_path, broker):
    settings = make_settings(
        tmp_path / "data",
        broker.port,
        **{
            "pipeline.max_lag_events": MAX_LAG,
            "rate_limit.enabled": False,
            "dimensions.overrides": {"prompt": "text"},
        },
    )
    keys = KeyStore(settings.keys_db_path)
    key = keys.create("acme").secret
    keys.close()
    async with running_stack(settings, broker=False, worker=True, api=True) as stack:
        stored: set[str] = set()
        stack.topology.owners.listeners.append(lambda a: stored.add(a.event_id))
        accepted: set[str] = set()
        shed: list[dict] = []
        peak = 0

        async def client(http: aiohttp.ClientSession, n: int) -> None:
            nonlocal peak
            for i in range(12):
                body = {"name": "p", "metadata": {"prompt": f"{TEXTS[(n + i) % len(TEXTS)]} {i}"}}
                async with http.post("/track", json=body) as resp:
                    answer = await resp.json()
                    if resp.status == 200:
                        accepted.add(answer["event_id"])
                    else:
                        assert resp.status == 503, answer
                        shed.append(answer)
                peak = max(peak, stack.progress.lag)

        async with aiohttp.ClientSession(stack.api_url, headers={"X-API-Key": key}) as http:
            await asyncio.gather(*(client(http, n) for n in range(CONCURRENCY)))
            async with http.get("/metrics") as resp:
                metrics = await resp.text()
            async with http.get("/readyz") as resp:
                ready = await resp.json()

        assert shed, "a burst of 384 events at once was not shed"
        assert all(s["code"] == "SERVICE_UNAVAILABLE" and s["retry_after"] >= 1 for s in shed)
        assert f"turret_track_shed_total {len(shed)}" in metrics
        assert "turret_pipeline_lag_events" in metrics
        assert "lag_events" in ready["checks"]
        # Bounded backlog: the lag never passes the bound by more than the requests
        # that were already past the check when it was reached.
        assert peak <= MAX_LAG + CONCURRENCY
        await wait_until(lambda: accepted <= stored, 120)
        await wait_until(lambda: stack.progress.lag == 0, 30)
