"""A topic point's series (events by hour, day and segment value) read back from a real
store as written, and from points written in the earlier layout (payload lists)."""

from __future__ import annotations

from turret_stream.clustering.topic_series import TopicSeries
from turret_stream.storage import Point
from turret_stream.storage.edge import EdgeStore


def test_series_read_back_from_the_store_in_both_layouts(tmp_path):
    series = TopicSeries(
        hours={472_300 + h: 10 + h for h in range(168)},  # a week of hours
        days={19_600 + d: 100 + d for d in range(90)},
        segments={("platform", "web"): 7, ("platform", "ios"): 3, ("beta", "True"): 2},
    )
    earlier = {  # as points were written before the series became one text
        "hours": sorted(series.hours.items()),
        "days": sorted(series.days.items()),
        "segments": [["beta", True, 2], ["platform", "ios", 3], ["platform", "web", 7]],
    }
    store = EdgeStore(tmp_path / "qdrant")
    try:
        store.create_collection("topics", 4)
        store.upsert(
            "topics",
            [
                Point("new", [1.0, 0, 0, 0], {"size": 1, **series.to_payload()}),
                Point("old", [0, 1.0, 0, 0], {"size": 1, **earlier}),
            ],
        )
        read = {
            r.id: TopicSeries.from_payload(r.payload)
            for r in store.retrieve("topics", ["new", "old"])
        }
    finally:
        store.close()
    assert read["new"] == series
    assert read["old"] == series
    # An empty series (a topic without counts yet) reads back empty.
    assert TopicSeries.from_payload(TopicSeries().to_payload()) == TopicSeries()
    assert TopicSeries.from_payload({}) == TopicSeries()
