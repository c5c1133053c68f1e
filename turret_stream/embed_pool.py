"""More cores for the stateless stage: extra embedding processes beside a worker.

``turret-stream up --workers N`` (``worker.embed_processes``) runs the worker as usual and
N - 1 ``turret-stream embed-worker`` children. Every one of them is a member of the same
Faust app and consumer group and runs the embed agent, so the events topic's partitions
are shared among N processes; the stateful agents (dimension owners, session actors) stay
in the worker, beside the store (``topology.build_embed_topology``). The model's threads
are divided among the processes so they do not fight over cores.

A child dies with its parent (PR_SET_PDEATHSIG on Linux) and is restarted if it exits on
its own; what it held is redelivered to the other members by a rebalance, and the owners
drop repeated event ids, so nothing is lost or counted twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import yaml

from turret_stream.settings import Settings

log = logging.getLogger(__name__)

# Longest wait for a child to stop on SIGTERM before it is killed.
STOP_TIMEOUT_S = 10.0
# A child that keeps dying is restarted at most this often.
RESTART_BACKOFF_S = 5.0


def cores() -> int:
    """Cores this process may run on (its affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def embed_processes(settings: Settings) -> int:
    """How many processes embed: the setting, or by default one per two cores (measured:
    see README, *Performance*)."""
    wanted = settings.worker.embed_processes
    return wanted if wanted > 0 else max(1, cores() // 2)


def model_threads(settings: Settings, processes: int) -> int:
    """ONNX Runtime threads per embedding process: the setting, or an equal share."""
    if settings.embedding.threads > 0:
        return settings.embedding.threads
    return max(1, cores() // processes)


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: a kill -9 of `up` takes its children along.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class EmbedPool:
    """The extra embedding processes of one worker (``processes - 1`` children)."""

    def __init__(self, settings: Settings, processes: int) -> None:
        self.settings = settings
        self.processes = processes
        self._children: list[subprocess.Popen[bytes]] = []
        self._watch: asyncio.Task[None] | None = None
        self._config = settings.data_dir / "embed-worker.yaml"

    def _child_config(self) -> Path:
        """The parent's effective settings, so a child sees exactly what the parent does
        (CLI options included), with the broker named explicitly."""
        data = self.settings.model_dump(mode="json")
        data["kafka"]["bootstrap_servers"] = self.settings.bootstrap_servers
        data["embedding"]["threads"] = model_threads(self.settings, self.processes)
        self._config.parent.mkdir(parents=True, exist_ok=True)
        self._config.write_text(yaml.safe_dump(data))
        return self._config

    def _spawn(self, config: Path) -> subprocess.Popen[bytes]:
        # Only the file speaks: TURRET_* variables were already applied by the parent.
        env = {k: v for k, v in os.environ.items() if not k.startswith("TURRET_")}
        env["TURRET_CONFIG"] = str(config)
        return subprocess.Popen(
            [sys.executable, "-m", "turret_stream", "embed-worker"],
            env=env,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )

    async def __aenter__(self) -> EmbedPool:
        if self.processes > 1:
            config = self._child_config()
            self._children = [self._spawn(config) for _ in range(self.processes - 1)]
            self._watch = asyncio.create_task(self._keep_alive(config))
            log.info("%d embedding processes besides this worker", len(self._children))
        return self

    async def _keep_alive(self, config: Path) -> None:
        while True:
            await asyncio.sleep(RESTART_BACKOFF_S)
            for i, child in enumerate(self._children):
                if child.poll() is not None:
                    log.warning(
                        "embedding process %d exited with %s; restarting it",
                        child.pid,
                        child.returncode,
                    )
                    self._children[i] = self._spawn(config)

    @property
    def pids(self) -> list[int]:
        return [c.pid for c in self._children if c.poll() is None]

    async def __aexit__(self, *exc: object) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        for child in self._children:
            if child.poll() is None:
                child.terminate()
        for child in self._children:
            try:
                await asyncio.to_thread(child.wait, STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                child.kill()
                await asyncio.to_thread(child.wait)
        self._children = []
