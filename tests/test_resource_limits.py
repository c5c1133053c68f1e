"""One request cannot exhaust the process: text keys beyond limits.max_text_dimensions
are kept as context (listed as capped), and a dimension costs a few threads and little
memory (one search thread per store shard, payloads left to the page cache)."""

from __future__ import annotations

import aiohttp
import pytest
from click.testing import CliRunner

from turret_stream.cli import main
from turret_stream.keys import KeyStore
from turret_stream.stack import running_stack

from .conftest import make_settings, wait_until

# Three dimensions' worth of shards per text key: 3 collections x 1 search thread, plus
# slack for the engine's housekeeping. The process grew by ~2,400 threads and 7.8 GB
# before (each shard had a thread per CPU and 34 MB of payload cache).
MAX_NEW_THREADS = 60
MAX_NEW_RSS_BYTES = 600 * 1024 * 1024


def _figure(metrics: str, name: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


@pytest.mark.timeout(180)
async def test_a_request_with_100_text_keys_is_capped_and_threads_stay_bounded(tmp_path, broker):
    settings = make_settings(tmp_path / "data", broker.port)
    keys = KeyStore(settings.keys_db_path)
    key = keys.create("acme").secret
    keys.close()
    metadata = {f"field_{i}": f"free text number {i} about something else" for i in range(100)}
    async with running_stack(settings, broker=False, worker=True, api=True) as stack:
        auth = {"X-API-Key": key}
        async with aiohttp.ClientSession(stack.api_url, headers=auth) as http:
            # Warm up once with one text key, so the baseline includes a dimension.
            async with http.post("/track", json={"name": "p", "metadata": {"q": "a b c"}}):
                pass
            await wait_until(lambda: stack.progress.lag == 0, 60)
            async with http.get("/metrics") as resp:
                before = await resp.text()
            async with http.post("/track", json={"name": "p", "metadata": metadata}) as resp:
                assert resp.status == 200
            await wait_until(lambda: stack.progress.lag == 0, 120)
            async with http.get("/v1/dimensions") as resp:
                dims = await resp.json()
            async with http.get("/metrics") as resp:
                after = await resp.text()
    text = [d["key"] for d in dims["dimensions"] if d["type"] == "text"]
    assert len(text) == settings.limits.max_text_dimensions == 10
    assert "q" in text
    assert len(dims["capped"]) == 101 - 10 and not set(dims["capped"]) & set(text)
    grew = _figure(after, "turret_process_threads") - _figure(before, "turret_process_threads")
    assert grew < MAX_NEW_THREADS, f"{grew} new threads"
    rss = _figure(after, "turret_process_resident_memory_bytes") - _figure(
        before, "turret_process_resident_memory_bytes"
    )
    assert rss < MAX_NEW_RSS_BYTES, f"{rss / 2**20:.0f} MiB more"
    print(f"\n100-key request: +{grew:.0f} threads, +{rss / 2**20:.0f} MiB RSS")


def test_projects_per_instance_are_capped(tmp_path, monkeypatch):
    monkeypatch.setenv("TURRET_LIMITS__MAX_PROJECTS", "2")
    runner = CliRunner()
    data = ["--data-dir", str(tmp_path)]
    for project in ("acme", "beta", "acme"):  # a second key of a known project is fine
        made = runner.invoke(main, ["keys", "create", "--project", project, *data])
        assert made.exit_code == 0, made.output
    refused = runner.invoke(main, ["keys", "create", "--project", "gamma", *data])
    assert refused.exit_code == 1 and "limits.max_projects" in refused.output
