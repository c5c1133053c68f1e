"""/metrics counts every process of the stack by role (main, broker, model), not only the
one that serves it: an operator sizing memory sees the broker's in-memory log and the
model processes too, and a model process that died stops being counted until the pool
has replaced it. (`up`'s split layout, with the worker role, is covered in
tests/test_workers.py.)"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import aiohttp
import pytest

from turret_stream.broker import free_port
from turret_stream.records import TrackedEvent, event_key
from turret_stream.stack import running_stack

from .conftest import make_settings, wait_until
from .test_up import exited


def per_role(text: str, name: str) -> dict[str, float]:
    """``name{role="..."} value`` lines of a Prometheus text page."""
    return {m[1]: float(m[2]) for m in re.finditer(rf'^{name}{{role="(\w+)"}} (\S+)$', text, re.M)}


def resident(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


async def scrape(url: str) -> str:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as resp:
        assert resp.status == 200
        return await resp.text()


@pytest.mark.timeout(180)
@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads /proc (Linux)")
async def test_metrics_count_the_broker_and_the_model_processes(tmp_path):
    settings = make_settings(
        tmp_path / "data",
        free_port(),
        **{"dimensions.overrides": {"prompt": "text"}, "worker.embed_processes": 2},
    )
    async with running_stack(settings, broker=True, worker=True, api=True) as stack:
        models = stack.embedder.pids
        assert len(models) == 2
        page = await scrape(stack.api_url)
        assert per_role(page, "turret_stack_processes") == {"main": 1, "broker": 1, "model": 2}
        memory = per_role(page, "turret_stack_resident_memory_bytes")
        # Each role's figure is its processes' resident memory as /proc reads it (a
        # moment later: within a few MB).
        expected = {
            "main": resident(os.getpid()),
            "broker": resident(stack.broker.pid),
            "model": sum(resident(p) for p in models),
        }
        for role, value in expected.items():
            assert abs(memory[role] - value) < 32 * 2**20, (role, memory[role], value)
        # The model processes each hold the model: far more than nothing.
        assert memory["model"] > 2 * 50 * 2**20
        assert per_role(page, "turret_stack_threads")["main"] >= 2

        # A model process killed with -9 is not counted, dead or waiting to be reaped...
        os.kill(models[0], signal.SIGKILL)
        await wait_until(lambda: exited(models[0]), 30)
        counted = per_role(await scrape(stack.api_url), "turret_stack_processes")
        assert counted["model"] <= 1

        # ... and the next batch rebuilds the pool, whose new processes are.
        assigned: list[str] = []
        stack.topology.owners.listeners.append(lambda a: assigned.append(a.event_id))
        event = TrackedEvent(
            event_id="evt_after_kill",
            project="acme",
            name="p",
            metadata={"prompt": "how do I freeze my card"},
            session_id="s",
            user_id="u",
            received_at=time.time(),
        )
        await stack.publisher.publish(
            event_key(event.project, event.session_id), event.dumps(), event.event_id
        )
        await wait_until(lambda: "evt_after_kill" in assigned, 120)
        assert per_role(await scrape(stack.api_url), "turret_stack_processes")["model"] == 2
        assert models[0] not in stack.embedder.pids
