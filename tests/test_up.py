"""`turret-stream up` as a user runs it: a real process with its own broker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from .conftest import free_port


def _post(url: str, key: str, body: dict, timeout: float = 10) -> tuple[int, dict]:
    req = urllib.request.Request(
        f"{url}/track",
        data=json.dumps(body).encode(),
        headers={"X-API-Key": key, "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


class Up:
    """One `turret-stream up` process; reads its banner from stdout."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None) -> None:
        self.port, self.kafka_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # Its warnings (dead letters, stale owners, failed batches) explain a failed test.
        self.log_path = Path(data_dir).parent / f"up-{self.port}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "turret_stream",
                "up",
                "--data-dir",
                str(data_dir),
                "--port",
                str(self.port),
                "--kafka-port",
                str(self.kafka_port),
            ],
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env={
                **os.environ,
                "TURRET_LOG_LEVEL": "warning",
                # The model in this process (tests/test_workers.py covers the pool).
                "TURRET_WORKER__EMBED_PROCESSES": "1",
                **(env or {}),
            },
        )
        self.banner: list[str] = []
        for line in self.proc.stdout:
            self.banner.append(line.rstrip("\n"))
            if line.startswith("  Data:"):
                break

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def read_key(self) -> str:
        for line in self.proc.stdout:
            self.banner.append(line.rstrip("\n"))
            if line.startswith("tsk_"):
                return line.strip()
        raise AssertionError(f"no key printed: {self.banner}")

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, _ = _get(f"{self.url}/readyz")
            if status == 200:
                return
            time.sleep(0.3)
        raise AssertionError("not ready in time")

    def broker_pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-f", f"tansu.*:{self.kafka_port}"], capture_output=True)
        return [int(p) for p in out.stdout.split()]

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=30)
        finally:
            self._log.close()


def exited(pid: int) -> bool:
    """Gone, or a zombie (exited, not yet reaped by its parent)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    # The state follows the command name, which is in parentheses and may hold spaces.
    return stat.rpartition(")")[2].split()[0] == "Z"


def _gone(pids: list[int], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(exited(p) for p in pids):
            return True
        time.sleep(0.1)
    return False


@pytest.mark.timeout(180)
def test_up_prints_a_key_that_works_and_survives_restart(tmp_path):
    first = Up(tmp_path / "data")
    try:
        key = first.read_key()
        assert any(first.url in line for line in first.banner)
        first.wait_ready()
        status, body = _post(first.url, key, {"name": "p", "metadata": {"prompt": "hi"}})
        assert status == 200 and body["success"]
        brokers = first.broker_pids()
        assert len(brokers) == 1
        assert first.stop() == 0
        assert _gone(brokers), "the embedded broker outlived `up`"
    finally:
        first.proc.kill()

    second = Up(tmp_path / "data")
    try:
        second.wait_ready()
        # No new key on a restart; the old one still works.
        assert not any(line.startswith("tsk_") for line in second.banner)
        status, _ = _post(second.url, key, {"name": "p", "metadata": {"prompt": "again"}})
        assert status == 200

        # A key created and revoked by the CLI while `up` runs takes effect at once.
        cli = [sys.executable, "-m", "turret_stream", "keys"]
        made = subprocess.run(
            [*cli, "create", "--project", "beta", "--data-dir", str(tmp_path / "data")],
            capture_output=True,
            text=True,
            check=True,
        )
        beta = made.stdout.strip().splitlines()[-1]
        assert _post(second.url, beta, {"name": "p", "metadata": {}})[0] == 200
        subprocess.run(
            [*cli, "revoke", beta.split("_")[1], "--data-dir", str(tmp_path / "data")],
            check=True,
            capture_output=True,
        )
        assert _post(second.url, beta, {"name": "p", "metadata": {}})[0] == 401
        assert _post(second.url, key, {"name": "p", "metadata": {}})[0] == 200
    finally:
        second.stop()


@pytest.mark.timeout(120)
def test_kill_9_of_up_leaves_no_orphan_broker(tmp_path):
    up = Up(tmp_path / "data")
    try:
        up.read_key()
        brokers = up.broker_pids()
        assert len(brokers) == 1
        up.stop(signal.SIGKILL)
        assert _gone(brokers)
    finally:
        up.proc.kill()


@pytest.mark.timeout(60)
def test_up_reports_a_taken_port_clearly(tmp_path):
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "turret_stream",
                "up",
                "--data-dir",
                str(tmp_path),
                "--port",
                str(free_port()),
                "--kafka-port",
                str(taken),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert f"port {taken}" in result.stderr and "Traceback" not in result.stderr
