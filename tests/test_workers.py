"""`turret-stream up --workers 2`: the model runs in two processes; every event is placed
once, a killed model process is replaced without losing its batch, and the processes die
with `up`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from .test_stack_metrics import per_role, resident
from .test_up import Up, _gone, _post


def _children(parent: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(parent), "-f", "spawn_main"], capture_output=True)
    return [int(p) for p in out.stdout.split()]


def _metrics(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
        return resp.read().decode()


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
        assert "  Model:  2 embedding processes" in up.banner
        # The model processes are children of `up`'s worker process.
        (worker,) = _children(up.proc.pid)
        children = _children(worker)
        assert len(children) == 2
        # The model yields the cores to the API and the broker (worker.model_nice: 10,
        # on top of the worker process's niceness).
        base = os.getpriority(os.PRIO_PROCESS, worker)
        assert [os.getpriority(os.PRIO_PROCESS, c) for c in children] == [min(base + 10, 19)] * 2

        # /metrics counts each role's processes (the model's as the worker reports them).
        page = _metrics(up.url)
        assert per_role(page, "turret_stack_processes") == {
            "main": 1,
            "broker": 1,
            "worker": 1,
            "model": 2,
        }
        memory = per_role(page, "turret_stack_resident_memory_bytes")
        assert abs(memory["worker"] - resident(worker)) < 32 * 2**20
        assert abs(memory["model"] - sum(map(resident, children))) < 32 * 2**20

        _wait_stored(up.url, key, _send(up.url, key, "activate", 40))

        # A model process killed with -9: the pool is rebuilt, the batch embedded again.
        subprocess.run(["kill", "-9", str(children[0])], check=True)
        assert _gone(children[:1])
        _wait_stored(up.url, key, _send(up.url, key, "freeze", 40))
        # The broken pool's other process is terminated by the pool, at niceness 19 on
        # a busy machine maybe a moment later.
        assert _gone(children[1:2], timeout=30)
        replaced = _children(worker)
        assert len(replaced) == 2 and children[0] not in replaced
        # The old pids are gone: only the worker's next report brings the count back.
        deadline = time.monotonic() + 30
        while per_role(_metrics(up.url), "turret_stack_processes")["model"] != 2:
            assert time.monotonic() < deadline, "the replaced model processes are not counted"
            time.sleep(0.2)
    finally:
        children = [c for w in _children(up.proc.pid) for c in [w, *_children(w)]]
        up.proc.send_signal(signal.SIGKILL)
        up.proc.wait(timeout=30)
    # Children do not outlive a killed `up`.
    assert _gone(children, timeout=20)
