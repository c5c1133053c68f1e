"""Drives `turret-stream up` through crashes: a stream of events, kill -9 or SIGTERM at a
random moment, restart, and a check that every event answered 200 is stored exactly once.
Used by tests/test_durability.py (a few rounds) and benchmarks/kill_rounds.py (many)."""

from __future__ import annotations

import contextlib
import json
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from .test_up import Up, _post

VERBS = ["reset", "change", "cancel", "renew", "update", "close", "open", "verify"]
NOUNS = ["password", "card", "account", "subscription", "address", "order", "email", "plan"]
# Every prompt is free text, also before it has seen 20 values.
ENV = {"TURRET_DIMENSIONS__OVERRIDES": '{"prompt": "text"}'}

# One POST /track, as the other `up` tests send it.
post = _post


def get(url: str, key: str, path: str) -> tuple[int, dict]:
    req = urllib.request.Request(url + path, headers={"X-API-Key": key})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@dataclass
class Stream:
    """Posts events from a few threads until stopped or the server goes away."""

    url: str
    key: str
    tag: str
    threads: int = 4
    acked: set[str] = field(default_factory=set)
    statuses: dict[int, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        for t in range(self.threads):
            worker = threading.Thread(target=self._run, args=(t,), daemon=True)
            worker.start()
            self._workers.append(worker)

    def _run(self, thread: int) -> None:
        rng = random.Random(f"{self.tag}-{thread}")
        n = 0
        while not self._stop.is_set():
            n += 1
            text = f"{self.tag} {thread}.{n}: how do I {rng.choice(VERBS)} my {rng.choice(NOUNS)}"
            body = {"name": "p", "metadata": {"prompt": text}, "session_id": f"{self.tag}-{thread}"}
            try:
                status, answer = post(self.url, self.key, body)
            except (OSError, ValueError):
                return  # the server went away (killed or stopped)
            with self._lock:
                self.statuses[status] = self.statuses.get(status, 0) + 1
                if status == 200:
                    self.acked.add(answer["event_id"])
            if status == 503:
                time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=30)


def wait(predicate, timeout: float = 120, every: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every)
    raise AssertionError("timed out")


@dataclass
class Rounds:
    data_dir: Path
    rng: random.Random
    key: str = ""
    acked: set[str] = field(default_factory=set)
    log: list[str] = field(default_factory=list)

    def _up(self) -> Up:
        up = Up(self.data_dir, ENV)
        if not self.key:
            self.key = up.read_key()
        up.wait_ready(timeout=120)
        return up

    def crash(self, sig: int, tag: str, min_acked: int = 20, max_acked: int = 300) -> None:
        """One round: stream, then ``sig`` after a random number of 200s."""
        up = self._up()
        stream = Stream(up.url, self.key, tag)
        target = self.rng.randint(min_acked, max_acked)
        try:
            stream.start()
            wait(lambda: len(stream.acked) >= target, timeout=120, every=0.01)
            started = time.monotonic()
            up.proc.send_signal(sig)
            code = up.proc.wait(timeout=60)
            took = time.monotonic() - started
        finally:
            up.proc.kill()
            stream.stop()
        self.acked |= stream.acked
        name = signal.Signals(sig).name
        self.log.append(
            f"{tag}: {name} after {target} acks; {len(stream.acked)} answered 200, "
            f"statuses {dict(sorted(stream.statuses.items()))}, exit {code}, stop took {took:.1f}s"
        )
        if sig == signal.SIGTERM:
            assert code == 0, f"SIGTERM exit code {code}"

    def verify(self, patience: float = 120) -> dict:
        """Restart, wait (up to ``patience`` s) for every event answered 200, then list
        the store: how many were lost, how many stored or counted more than once."""
        up = self._up()
        try:
            path = "/v1/clusters?dimension=prompt&examples=0"
            # Without the journal some never arrive: they are counted as lost below.
            with contextlib.suppress(AssertionError):
                wait(
                    lambda: (
                        get(up.url, self.key, path)[1].get("total_events", 0) >= len(self.acked)
                    ),
                    timeout=patience,
                )
            missing = set(self.acked)

            def all_visible() -> bool:
                for event_id in list(missing):
                    if get(up.url, self.key, f"/v1/events/{event_id}")[0] != 200:
                        return False
                    missing.discard(event_id)
                return True

            with contextlib.suppress(AssertionError):
                wait(all_visible, timeout=patience, every=1.0)
            total = counted_events(up.url, self.key)
        finally:
            assert up.stop() == 0
        return tally(self.acked, stored_ids(self.data_dir), total)


def counted_events(url: str, key: str) -> int:
    """The events the prompt dimension's topics count (a running `up`)."""
    return get(url, key, "/v1/clusters?dimension=prompt&examples=0")[1]["total_events"]


def stored_ids(data_dir: Path) -> list[str]:
    """Every stored event's id, as `export` lists them (`up` stopped: the store is locked)."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "turret_stream",
            "export",
            "events",
            "--project",
            "default",
            "--data-dir",
            str(data_dir),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return [json.loads(line)["event_id"] for line in out.stdout.splitlines() if line]


def tally(acked: set[str], ids: list[str], counted: int) -> dict:
    """How many events answered 200 are missing from the store, and how many are stored
    or counted more than once."""
    return {
        "acked": len(acked),
        "stored": len(ids),
        "stored_distinct": len(set(ids)),
        "counted": counted,
        "lost": len(acked - set(ids)),
        "duplicated": len(ids) - len(set(ids)) + max(0, counted - len(set(ids))),
    }
