"""`turret-stream up --workers 2`: a second process embeds, sharing the events partitions;
every event is placed once, a killed child is replaced, and children die with `up`."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from .test_up import Up, _gone, _post


def _children(parent: int) -> list[int]:
    out = subprocess.run(
        ["pgrep", "-P", str(parent), "-f", "turret_stream embed-worker"], capture_output=True
    )
    return [int(p) for p in out.stdout.split()]


def _group_members(kafka_port: int) -> int:
    async def describe() -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=f"127.0.0.1:{kafka_port}")
        await admin.start()
        try:
            [described] = await admin.describe_consumer_groups(["turret-stream"])
            [group] = described.groups
            return len(group[5]) if group[2] == "Stable" else 0
        finally:
            await admin.close()

    return asyncio.run(describe())


def _stored(url: str, key: str, event_id: str) -> bool:
    req = urllib.request.Request(f"{url}/v1/events/{event_id}", headers={"X-API-Key": key})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return bool(json.loads(resp.read())["event"]["dimensions"])
    except urllib.error.HTTPError:
        return False


def _wait_stored(url: str, key: str, ids: list[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    pending = list(ids)
    while pending and time.monotonic() < deadline:
        pending = [i for i in pending if not _stored(url, key, i)]
        if pending:
            time.sleep(0.5)
    assert not pending, f"{len(pending)} of {len(ids)} events never stored"


def _send(url: str, key: str, prefix: str, n: int) -> list[str]:
    ids = []
    for i in range(n):
        status, body = _post(
            url,
            key,
            {
                "name": "p",
                "metadata": {"prompt": f"how do I {prefix} my card number {i}"},
                "session_id": f"{prefix}-{i}",  # many sessions: every partition gets some
            },
        )
        assert status == 200, body
        ids.append(body["event_id"])
    return ids


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_embedding_processes_share_the_work(tmp_path):
    up = Up(tmp_path / "data", env={"TURRET_WORKER__EMBED_PROCESSES": "2"})
    try:
        key = up.read_key()
        up.wait_ready(timeout=120)
        [child] = _children(up.proc.pid)
        # The child has joined the consumer group and the partitions are shared.
        deadline = time.monotonic() + 120
        while _group_members(up.kafka_port) < 2:
            assert time.monotonic() < deadline, "the embedding process never joined"
            time.sleep(0.5)

        _wait_stored(up.url, key, _send(up.url, key, "activate", 40))

        # A child killed with -9 is replaced; what it held is redelivered, nothing lost.
        subprocess.run(["kill", "-9", str(child)], check=True)
        assert _gone([child])
        ids = _send(up.url, key, "freeze", 40)
        _wait_stored(up.url, key, ids)
        deadline = time.monotonic() + 30
        while not _children(up.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        [replacement] = _children(up.proc.pid)
        assert replacement != child
    finally:
        children = _children(up.proc.pid)
        up.proc.send_signal(signal.SIGKILL)
        up.proc.wait(timeout=30)
    # Children do not outlive a killed `up`.
    assert _gone(children, timeout=20)
