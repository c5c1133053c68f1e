"""/readyz of an API running apart from its workers tells the truth about them: ready
while a worker process runs, not ready within the liveness timeout after it is killed."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from turret_stream.stack import running_stack

from .conftest import make_settings

TURRET_STREAM = Path(sys.executable).parent / "turret-stream"


@pytest.mark.slow
async def test_readyz_follows_a_worker_process_killed_with_sigkill(tmp_path, broker):
    settings = make_settings(
        tmp_path / "api",
        broker.port,
        **{"worker.liveness_interval_s": 1.0, "worker.liveness_timeout_s": 4.0},
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TURRET_")}
    env.update(
        {
            "TURRET_KAFKA__BOOTSTRAP_SERVERS": settings.bootstrap_servers,
            "TURRET_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
            "TURRET_KAFKA__PARTITIONS": str(settings.kafka.partitions),
            "TURRET_WORKER__APP_ID": settings.worker.app_id,
            "TURRET_WORKER__LIVENESS_INTERVAL_S": "1.0",
            # The worker has its own data dir: the in-process store admits one opener.
            "TURRET_DATA_DIR": str(tmp_path / "worker"),
        }
    )
    async with (
        running_stack(settings, broker=False, worker=False, api=True) as stack,
        httpx.AsyncClient(timeout=15) as http,
    ):

        async def status() -> tuple[int, dict]:
            answer = await http.get(f"{stack.api_url}/readyz")
            return answer.status_code, answer.json()

        code, body = await status()
        assert code == 503 and body["checks"]["worker"] == "not running"

        worker = subprocess.Popen(
            [str(TURRET_STREAM), "worker"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            await _eventually(lambda: _ready(status), timeout=120)
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait()
        # Gone within the liveness timeout (4 s), plus a heartbeat and the probe's cache.
        await _eventually(lambda: _not_ready(status), timeout=15)
        code, body = await status()
        assert body["checks"] == {"broker": "ok", "worker": "not running"}


async def _ready(status) -> bool:
    return (await status())[0] == 200


async def _not_ready(status) -> bool:
    return (await status())[0] == 503


async def _eventually(check, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.2)
