"""When a dimension's topics are recomputed (``TopicModel.recluster_due``): by event count
under load, after a pause, or after a longest wait; never above the time share."""

from __future__ import annotations

import numpy as np

from turret_stream.clustering.index import ExactIndex
from turret_stream.clustering.model import TopicModel
from turret_stream.settings import ClusteringSettings

DIM = 16


def model(**settings: float) -> TopicModel:
    m = TopicModel(ClusteringSettings(clustering_threshold=0.3, **settings), ExactIndex(DIM))
    m.recluster_cost = 0.0  # the time share is tested on its own below
    return m


def learn(m: TopicModel, n: int, rng: np.random.Generator) -> None:
    for _ in range(n):
        v = rng.normal(size=DIM)
        m.learn(v / np.linalg.norm(v), 0.0)


def batches(
    m: TopicModel, rng: np.random.Generator, now: float, n: int, size: int, every_s: float
) -> tuple[float, list[bool]]:
    """``n`` batches of ``size`` events, one every ``every_s`` seconds, each asking right
    after it whether reclustering is due (and reclustering if so): the time after them,
    and which were due."""
    due = []
    for _ in range(n):
        learn(m, size, rng)
        now += every_s
        due.append(m.recluster_due(now, last_batch=now))
        if due[-1]:
            m.recluster(now)
    return now, due


def test_a_busy_owner_reclusters_by_event_count_however_slow_its_batches() -> None:
    rng = np.random.default_rng(0)
    m = model(recluster_every_events=500, recluster_interval_s=2.0, recluster_max_wait_s=5.0)
    learn(m, 10, rng)
    assert m.recluster_due(0.0, last_batch=0.0)  # the first reclustering: at once
    m.recluster(0.0)
    # Batches of 256 back to back, each taking 2.4 s (longer than the interval): the
    # interval never passes without a batch, so only the count decides: every 2nd batch.
    now, due = batches(m, rng, 0.0, 6, 256, 2.4)
    assert due == [False, True, False, True, False, True]
    # Without the time of the last batch, the interval counts from the last
    # reclustering (callers that learn in one go): the slow batches would all recluster.
    learn(m, 256, rng)
    assert m.recluster_due(now + 2.4)


def test_a_pause_reclusters_after_the_interval_and_a_trickle_after_the_longest_wait() -> None:
    rng = np.random.default_rng(1)
    m = model(recluster_every_events=500, recluster_interval_s=2.0, recluster_max_wait_s=5.0)
    learn(m, 10, rng)
    m.recluster(0.0)
    learn(m, 20, rng)  # a batch at t=1, then nothing (the recluster timer asks)
    assert not m.recluster_due(1.5, last_batch=1.0)
    assert not m.recluster_due(2.9, last_batch=1.0)
    assert m.recluster_due(3.0, last_batch=1.0)
    m.recluster(3.0)
    # A trickle: a few events every second, never a 2 s pause, never 500 events.
    _, due = batches(m, rng, 3.0, 8, 3, 1.0)
    assert due.index(True) == 4  # at t=8: recluster_max_wait_s after the last one
    assert not model().recluster_due(0.0)  # nothing learned: nothing to do


def test_a_longer_interval_makes_the_longest_wait_longer_too() -> None:
    rng = np.random.default_rng(3)
    m = model(recluster_every_events=10**6, recluster_interval_s=60.0, recluster_max_wait_s=5.0)
    learn(m, 10, rng)
    m.recluster(0.0)
    learn(m, 100, rng)
    assert not m.recluster_due(30.0, last_batch=30.0)  # 5 s would have fired
    assert m.recluster_due(60.0, last_batch=59.0)


def test_the_time_share_caps_every_rule() -> None:
    rng = np.random.default_rng(2)
    m = model(recluster_every_events=10, recluster_max_share=0.25)
    learn(m, 10, rng)
    m.recluster(0.0)
    m.recluster_cost = 1.0  # the last one took 1 s: the next waits 3 s
    learn(m, 600, rng)
    assert not m.recluster_due(2.9, last_batch=0.0)
    assert m.recluster_due(3.0, last_batch=0.0)
