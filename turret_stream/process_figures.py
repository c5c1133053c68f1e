"""Threads and resident memory of the stack's processes, read from /proc, for /metrics.

`up` runs several processes: the main one (the API, the journal; in the one-process layout
the worker too), the embedded broker, the worker process and the model processes. A scrape
of the main process alone showed about a fifth of the stack's memory, and none of the
broker's, whose in-memory log grows with every event: ``StackProcesses`` names every
process by role, so /metrics can report each role and the whole.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# Role ("main", "broker", "worker", "model") -> the pids of the stack's processes in it.
StackProcesses = Callable[[], dict[str, list[int]]]


@dataclass(frozen=True)
class ProcessFigures:
    threads: int
    resident_bytes: int


def read_figures(pid: int | None = None) -> ProcessFigures | None:
    """Of process ``pid`` (None: this one), from /proc/<pid>/status; None when it is gone.
    Without /proc (not Linux): this process's Python threads, no memory figure."""
    status = Path(f"/proc/{'self' if pid is None else pid}/status")
    try:
        text = status.read_text()
    except OSError:
        if pid is None and not Path("/proc").is_dir():
            return ProcessFigures(threading.active_count(), 0)
        return None
    threads = resident = 0
    for line in text.splitlines():
        if line.startswith("State:") and "Z" in line.split()[1:2]:
            return None  # a zombie: exited, not yet reaped by its parent
        if line.startswith("Threads:"):
            threads = int(line.split()[1])
        elif line.startswith("VmRSS:"):
            resident = int(line.split()[1]) * 1024
    return ProcessFigures(threads, resident)


def role_figures(processes: StackProcesses) -> dict[str, tuple[int, ProcessFigures]]:
    """Each role's live processes: how many, and their threads and memory summed."""
    out: dict[str, tuple[int, ProcessFigures]] = {}
    for role, pids in processes().items():
        found = [f for f in map(read_figures, pids) if f is not None]
        out[role] = (
            len(found),
            ProcessFigures(sum(f.threads for f in found), sum(f.resident_bytes for f in found)),
        )
    return out
