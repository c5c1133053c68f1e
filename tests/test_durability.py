"""A 200 from `up` survives kill -9 of the whole process and a SIGTERM under load: the
journal replays what the in-memory broker lost, and the worker stores each event once."""

from __future__ import annotations

import random
import signal

import pytest

from .durability_driver import Rounds


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_kill_9_and_sigterm_under_load_lose_and_duplicate_nothing(tmp_path):
    rounds = Rounds(tmp_path / "data", random.Random(9))
    rounds.crash(signal.SIGKILL, "k1")
    rounds.crash(signal.SIGKILL, "k2")
    rounds.crash(signal.SIGTERM, "t1")
    result = rounds.verify()
    print("\n".join(rounds.log), result)
    assert result["acked"] > 60
    assert result["lost"] == 0, result
    assert result["duplicated"] == 0, result
