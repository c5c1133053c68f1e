"""The count check of ``new_topic`` rules (``AlertEvaluator.check_counts``) on topic points a
real owner wrote into a real edge store: a young topic fires once it holds the rule's
events in one of its hours, even when later events moved the current hour past it."""

from __future__ import annotations

import numpy as np

from tests.crash_child import event
from turret_stream.alerts.evaluate import AlertEvaluator
from turret_stream.alerts.rules import Rule, RuleBook
from turret_stream.catalog import Catalog
from turret_stream.clustering.owner import DimensionOwner
from turret_stream.clustering.topic_series import TopicSeries
from turret_stream.queries import Queries
from turret_stream.settings import Settings
from turret_stream.storage.edge import EdgeStore

DIM = 16
HOUR = 3600
START = 1_700_000_000 // HOUR * HOUR  # an hour's start (event time)


def _events(counts: dict[tuple[int, int], int]) -> list:
    """``counts[(hour, topic)]`` events of each of three well-separated topics per hour."""
    rng = np.random.default_rng(5)
    centres = np.eye(DIM)[:3]
    out, i = [], 0
    for (hour, topic), n in sorted(counts.items()):
        for k in range(n):
            v = centres[topic] + rng.normal(scale=0.03, size=DIM)
            out.append(event(i, v, START + hour * HOUR + k * 10.0, f"t{topic} message {i}"))
            i += 1
    return out


def test_new_topic_fires_for_the_hour_it_reached_the_rule_in_once(tmp_path):
    config = Settings(
        data_dir=tmp_path,
        clustering={
            "clustering_threshold": 0.35,
            "recluster_every_events": 10,
            "recluster_interval_s": 1e9,
            "recluster_max_share": 1.0,
        },
    )
    store = EdgeStore(tmp_path / "qdrant")
    try:
        owner = DimensionOwner(store, Catalog(store), "acme", "prompt", config, DIM)
        # Hour 0: topic 0 busy (12 events), topics 1 and 2 quiet. Hour 1: topic 1 busy;
        # topic 0 quiet, so in the current hour (1) it is below the rule's 10.
        stream = _events({(0, 0): 12, (0, 1): 4, (0, 2): 4, (1, 0): 3, (1, 1): 12, (1, 2): 4})
        for i in range(0, len(stream), 13):
            owner.process(stream[i : i + 13])
        owner.write_figures()

        book = RuleBook(store)
        rule = Rule(
            id="r1",
            project="acme",
            name="new",
            kind="new_topic",
            url="http://127.0.0.1:1/hook",
            secret="s",
            min_events_per_hour=10,
        )
        book.save(rule)
        evaluator = AlertEvaluator(book, Queries(store))
        fired = evaluator.check_counts()

        points = {
            r.id: TopicSeries.from_payload(r.payload).hours
            for r in Queries(store)._topic_records(owner.names)
        }
        busy = {t: [h for h, c in hours.items() if c >= 10] for t, hours in points.items()}
        assert sorted(len(h) for h in busy.values()) == [0, 1, 1]  # topics 0 and 1, once

        assert all(r.id == "r1" and kind == "new_topic" for r, kind, _ in fired)
        got = {e["topic"]: (e["hour_start"], e["this_hour"]) for _, _, e in fired}
        assert got == {t: (h[0] * HOUR, points[t][h[0]]) for t, h in busy.items() if h}
        # Topic 0 is reported for hour 0 (12 events), not the current hour (3).
        assert sorted(h for h, _ in got.values()) == [START, START + HOUR]
        assert sorted(n for _, n in got.values()) == [12, 12]
        # Once per rule and topic.
        assert evaluator.check_counts() == []
    finally:
        store.close()
