"""A topic's breakdown by segment and the values it over-represents (segments.py)."""

from __future__ import annotations

from scipy.stats import binom

from turret_stream.segments import breakdown, over_represented


def _project(topic: dict, rest: dict) -> dict:
    out = dict(rest)
    for k, n in topic.items():
        out[k] = out.get(k, 0) + n
    return out


def test_a_value_far_above_the_rest_of_the_project_is_flagged_with_its_p_value():
    topic = {("platform", "mobile"): 80, ("platform", "web"): 20}
    rest = {("platform", "mobile"): 300, ("platform", "web"): 700}
    [section] = breakdown(topic, _project(topic, rest))
    assert section["key"] == "platform" and section["events"] == 100
    mobile, web = section["values"]
    assert mobile["value"] == "mobile" and mobile["share"] == 0.8
    assert mobile["project_share"] == round(380 / 1100, 4)
    assert mobile["topic_share_of_segment"] == round(80 / 380, 4)
    # One-sided binomial tail against the other topics' share (0.3), times the 2 values
    # tested (Bonferroni).
    assert mobile["p_value"] == min(1.0, binom.sf(79, 100, 0.3) * 2)
    assert mobile["over_represented"] and not web["over_represented"]
    [flag] = over_represented([section])
    assert flag["key"] == "platform" and flag["value"] == "mobile"


def test_a_topic_like_the_project_over_represents_nothing():
    topic = {("platform", "mobile"): 31, ("platform", "web"): 69, ("plan", "pro"): 10}
    rest = {("platform", "mobile"): 300, ("platform", "web"): 700, ("plan", "pro"): 95}
    sections = breakdown(topic, _project(topic, rest))
    assert [s["key"] for s in sections] == ["plan", "platform"]
    assert over_represented(sections) == []


def test_a_small_topic_is_not_flagged_on_chance_and_keys_can_be_limited():
    # 3 of 4 on mobile against 30% elsewhere: a big share, but not beyond chance.
    topic = {("platform", "mobile"): 3, ("platform", "web"): 1, ("tier", "gold"): 4}
    rest = {("platform", "mobile"): 300, ("platform", "web"): 700, ("tier", "gold"): 10}
    sections = breakdown(topic, _project(topic, rest), keys=["platform"])
    assert [s["key"] for s in sections] == ["platform"]
    assert over_represented(sections) == []
    # A value no other topic has: no test (p0 = 0), reported without a p-value.
    only = {("tier", "gold"): 5}
    [section] = breakdown(only, _project(only, {("tier", "silver"): 10}))
    gold = next(v for v in section["values"] if v["value"] == "gold")
    assert gold["p_value"] is None and not gold["over_represented"]
