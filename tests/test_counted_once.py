"""Counted once: a worker killed with -9 mid-stream and restarted neither loses nor
double-counts events or transitions (journey aggregates come from the event store, where
an event is one point under its id, and redelivered events are recognised)."""

from __future__ import annotations

import json
import signal
import time
import urllib.request
import uuid
from collections.abc import Callable

import pytest

from .kafka_offsets import positions
from .test_pipeline import GROUPS
from .test_up import Up, _post

A, B = GROUPS["password"], GROUPS["card"]


def get(url: str, key: str, path: str) -> dict:
    req = urllib.request.Request(url + path, headers={"X-API-Key": key})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def stored_events(url: str, key: str) -> int:
    try:
        return get(url, key, "/v1/clusters?dimension=prompt&examples=0")["total_events"]
    except Exception:
        return 0


def explain(up: Up, key: str, offsets: Callable[[], str]) -> str:
    """What a failed wait saw: the count, the dead letters, where the worker's consumer
    group stands on its input topics (``offsets``), and the process's warnings."""
    try:
        letters = get(up.url, key, "/v1/dead-letters")
    except Exception as exc:
        letters = repr(exc)
    return (
        f"stored events: {stored_events(up.url, key)}; dead letters: {letters}\n"
        f"offsets (partition, committed, end): {offsets()}\n"
        f"up's log:\n{up.log_tail()}"
    )


def wait(predicate, why: Callable[[], str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out; {why()}")


@pytest.mark.timeout(300)
def test_kill_9_mid_stream_counts_every_event_and_transition_once(tmp_path, broker):
    # An external Kafka (the test broker) survives the kill, so unacknowledged events are
    # redelivered to the restarted worker: the case where double counting could happen.
    tag = uuid.uuid4().hex[:8]
    env = {
        "TURRET_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{broker.port}",
        "TURRET_KAFKA__TOPIC_PREFIX": f"once.{tag}",
        "TURRET_WORKER__APP_ID": f"once-{tag}",
        # Six short texts repeated by every session would be typed a segment (enum).
        "TURRET_DIMENSIONS__OVERRIDES": '{"prompt": "text"}',
    }

    def offsets() -> str:
        return positions(
            f"127.0.0.1:{broker.port}", f"once-{tag}", [f"once.{tag}.events", f"once.{tag}.texts"]
        )

    sessions = [f"s{i}" for i in range(6)]
    # Each session: A, A, B, B, A, A  ->  path A -> B -> A, two transitions.
    journey = [A[0], A[1], B[0], B[1], A[2], A[3]]
    total = len(sessions) * len(journey)

    first = Up(tmp_path / "data", env)
    try:
        key = first.read_key()
        first.wait_ready()
        for step, text in enumerate(journey):
            for s in sessions:
                status, _ = _post(
                    first.url,
                    key,
                    {
                        "name": "p",
                        "metadata": {"prompt": text},
                        "session_id": s,
                        "user_id": f"user-{s}",
                    },
                )
                assert status == 200
            if step == 2:
                wait(
                    lambda: stored_events(first.url, key) >= 6,
                    lambda: explain(first, key, offsets),
                )
        # Kill it while it is still working through the stream.
        wait(
            lambda: stored_events(first.url, key) >= total // 3,
            lambda: explain(first, key, offsets),
        )
        first.stop(signal.SIGKILL)
    finally:
        first.proc.kill()

    again = Up(tmp_path / "data", env)
    try:
        again.wait_ready()
        wait(
            lambda: stored_events(again.url, key) >= total,
            lambda: explain(again, key, offsets),
        )
        time.sleep(3)  # anything redelivered twice would land by now
        assert stored_events(again.url, key) == total, explain(again, key, offsets)
        wait(
            lambda: (
                get(again.url, key, "/v1/journeys/transitions?dimension=prompt")["totals"][
                    "transitions"
                ]
                == 2 * len(sessions)
            ),
            lambda: explain(again, key, offsets),
            timeout=30,
        )
        stats = get(again.url, key, "/v1/journeys/transitions?dimension=prompt")
        assert stats["totals"]["transitions"] == 2 * len(sessions)
        assert stats["totals"]["events"] == total and stats["totals"]["users"] == len(sessions)
        for s in sessions:
            steps = get(again.url, key, f"/v1/sessions/{s}/journey?dimension=prompt")["steps"]
            assert len(steps) == 3 and steps[0]["topic"] == steps[2]["topic"] != steps[1]["topic"]
            assert sum(st["events"] for st in steps) == len(journey)
    finally:
        again.stop()
