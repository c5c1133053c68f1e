"""Themes: topics grouped by their centres, with ids that follow like topic ids."""

from __future__ import annotations

import numpy as np

from turret_stream.clustering.themes import ThemeRegistry, group_topics


def _unit(*xs: float) -> np.ndarray:
    v = np.asarray(xs, dtype=float)
    return v / np.linalg.norm(v)


def test_close_topics_share_a_theme_and_far_ones_do_not():
    centres = {
        "password": _unit(1, 0.1, 0),
        "two_factor": _unit(1, 0.3, 0),
        "weather": _unit(0, 0, 1),
    }
    groups = sorted(sorted(g) for g in group_topics(centres, 0.5))
    assert groups == [["password", "two_factor"], ["weather"]]
    # A tighter cut leaves every topic alone; a single topic is a theme of its own.
    assert len(group_topics(centres, 0.01)) == 3
    assert group_topics({"only": _unit(1, 0)}, 0.5) == [{"only"}]


def _ids():
    n = iter(range(1000))
    return lambda: f"th_{next(n)}"


def test_a_theme_keeps_its_id_as_its_topics_change():
    reg = ThemeRegistry(make_id=_ids())
    members = {"a": {1, 2}, "b": {3}, "c": {4}}
    size = {1: 10, 2: 10, 3: 5, 4: 8}
    changes = reg.update([{"a", "b"}, {"c"}], members, {}, size, now=1.0)
    assert sorted(c.kind for c in changes) == ["born", "born"]
    ab, c = reg.of_topic["a"], reg.of_topic["c"]
    assert reg.of_topic["b"] == ab != c

    # Topic "a" splits into "a" and a new "d" (a new micro-cluster 5); "d" stays in a's
    # theme: no theme changes, same ids.
    before = reg.by_micro_cluster({1: "a", 2: "a", 3: "b", 4: "c"})
    members = {"a": {1}, "d": {2, 5}, "b": {3}, "c": {4}}
    size[5] = 3
    changes = reg.update([{"a", "b", "d"}, {"c"}], members, before, size, now=2.0)
    assert changes == []
    assert reg.of_topic == {"a": ab, "b": ab, "d": ab, "c": c}

    # The two themes merge: the larger keeps its id, the other is recorded as merged.
    before = reg.by_micro_cluster({1: "a", 2: "d", 5: "d", 3: "b", 4: "c"})
    changes = reg.update([{"a", "b", "c", "d"}], members, before, size, now=3.0)
    assert [(ch.kind, ch.topic, ch.other) for ch in changes] == [("merged", c, ab)]
    assert set(reg.of_topic.values()) == {ab} and reg.successor[c] == ab

    # ... and split again: the larger part keeps the id, the other is a new theme split
    # from it.
    before = reg.by_micro_cluster({1: "a", 2: "d", 5: "d", 3: "b", 4: "c"})
    changes = reg.update([{"a", "d"}, {"b", "c"}], members, before, size, now=4.0)
    assert [(ch.kind, ch.other) for ch in changes] == [("split", ab)]
    assert reg.of_topic["a"] == ab and reg.of_topic["b"] == changes[0].topic != ab

    # The record round-trips (it is what the topic map base stores).
    again = ThemeRegistry.from_record(reg.to_record())
    assert again.of_topic == reg.of_topic
    assert again.successor == reg.successor
    assert [(h.kind, h.topic, h.other) for h in again.history] == [
        (h.kind, h.topic, h.other) for h in reg.history
    ]


def _at_distance(d: float) -> dict[str, np.ndarray]:
    """Two topics whose centres are ``d`` apart in cosine distance."""
    angle = np.arccos(1 - d)
    return {"a": _unit(1, 0), "b": _unit(np.cos(angle), np.sin(angle))}


def test_groupings_near_the_cut_hold_until_topics_move_beyond_the_hysteresis():
    # Drifted just past the cut (0.6): two topics of one theme stay together ...
    assert len(group_topics(_at_distance(0.62), 0.6)) == 2
    sticky = {"stickiness": 0.05}
    assert len(group_topics(_at_distance(0.62), 0.6, {"a": "t1", "b": "t1"}, **sticky)) == 1
    # ... and two of different themes stay apart just inside it.
    assert len(group_topics(_at_distance(0.58), 0.6)) == 1
    assert len(group_topics(_at_distance(0.58), 0.6, {"a": "t1", "b": "t2"}, **sticky)) == 2
    # Beyond the hysteresis they follow the distance; a new topic has no say.
    assert len(group_topics(_at_distance(0.7), 0.6, {"a": "t1", "b": "t1"}, **sticky)) == 2
    assert len(group_topics(_at_distance(0.58), 0.6, {"a": "t1"}, **sticky)) == 1
    # None: regrouped from scratch.
    assert len(group_topics(_at_distance(0.62), 0.6, {"a": "t1", "b": "t1"}, 0.0)) == 2
