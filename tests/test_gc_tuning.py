"""The worker's garbage collector setting reaches Python's collector."""

from __future__ import annotations

import gc

import pytest

from turret_stream.gc_tuning import tune_gc
from turret_stream.settings import Settings


@pytest.fixture
def thresholds():
    saved = gc.get_threshold()
    yield saved
    gc.set_threshold(*saved)


def test_young_threshold_is_set_and_zero_keeps_pythons(thresholds, monkeypatch):
    gc.set_threshold(700, 10, 10)
    tune_gc(0)
    assert gc.get_threshold() == (700, 10, 10)
    monkeypatch.setenv("TURRET_WORKER__GC_YOUNG_THRESHOLD", "12345")
    tune_gc(Settings().worker.gc_young_threshold)
    assert gc.get_threshold() == (12345, 10, 10)
