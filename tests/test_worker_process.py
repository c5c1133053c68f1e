"""`up`'s worker in a process of its own (worker.separate_process): a worker process
killed with -9 stops `up` with one clear line and no orphan, and every event answered
200 is stored exactly once after the restart (the journal replays what it had not
finished)."""

from __future__ import annotations

import os
import random
import signal

import pytest

from .durability_driver import Rounds, Stream, wait
from .test_up import _gone
from .test_workers import _children


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_a_killed_worker_process_stops_up_clearly_and_loses_nothing(tmp_path):
    rounds = Rounds(tmp_path / "data", random.Random(11))
    up = rounds._up()
    (worker,) = _children(up.proc.pid)
    brokers = up.broker_pids()
    # The worker yields the cores to /track (worker.process_nice: 10).
    base = os.getpriority(os.PRIO_PROCESS, up.proc.pid)
    assert os.getpriority(os.PRIO_PROCESS, worker) == min(base + 10, 19)
    stream = Stream(up.url, rounds.key, "w1")
    try:
        stream.start()
        wait(lambda: len(stream.acked) >= 60, timeout=120, every=0.01)
        os.kill(worker, signal.SIGKILL)
        code = up.proc.wait(timeout=90)
    finally:
        up.proc.kill()
        stream.stop()
    rounds.acked |= stream.acked
    log = up.log_tail(200)
    assert code == 1, log
    assert "error: the worker process was killed by signal 9 (SIGKILL)" in log, log
    assert "Traceback" not in log, log
    assert _gone(brokers), "the embedded broker outlived `up`"

    result = rounds.verify()
    assert result["acked"] >= 60
    assert result["lost"] == 0, result
    assert result["duplicated"] == 0, result
