"""A topic's breakdown by enum segment (``platform=mobile``), and the values it over-represents.

The counts are kept by the dimension's owner as events arrive (per micro-cluster, summed per
topic: ``clustering/owner.py``); this module only compares them (the read side).

For each segment key, the events of the topic that carry the key are split by value:
``share`` is a value's part of them, ``project_share`` its part of the dimension's events in
topics that carry the key, ``lift`` the ratio of the two, and ``topic_share_of_segment`` the
part of that value's events that fall in this topic (e.g. 30% of mobile traffic).

A value is **over-represented** when the topic holds more of it than the rest of the project
would predict, beyond chance: a one-sided binomial test of the topic's count ``k`` out of
``n`` against the share of the value in the *other* topics (``p0``), ``P(X >= k)`` for
``X ~ Binomial(n, p0)``. The p-value is Bonferroni-adjusted for the number of values tested in
the topic (``p_value``, capped at 1), and a value is flagged when ``p_value < ALPHA`` (0.01) and
``lift >= MIN_LIFT`` (1.2: a significant but negligible difference on a huge topic is no
finding). No test is made when the other topics carry the key on no event, or ``p0`` is 0
or 1 (a value only this topic has is reported with ``p_value`` null).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

from scipy.stats import binom

ALPHA = 0.01
MIN_LIFT = 1.2

# (key, value) -> events
Counts = Mapping[tuple[str, str], int]


def breakdown(topic: Counts, project: Counts, keys: Iterable[str] | None = None) -> list[dict]:
    """Per segment key: the topic's events by value, compared with the project's.
    ``project`` includes the topic's own counts; ``keys`` limits the keys shown."""
    wanted = None if keys is None else set(keys)
    by_key: dict[str, dict[str, int]] = defaultdict(dict)
    for (key, value), n in project.items():
        if wanted is None or key in wanted:
            by_key[key][value] = n
    tests = sum(1 for (key, _), n in topic.items() if n and key in by_key)
    out = []
    for key in sorted(by_key):
        values = by_key[key]
        n_topic = sum(topic.get((key, v), 0) for v in values)
        if not n_topic:
            continue
        n_project = sum(values.values())
        n_rest = n_project - n_topic
        rows = []
        for value, total in values.items():
            k = topic.get((key, value), 0)
            share = k / n_topic
            project_share = total / n_project
            lift = share / project_share if project_share else None
            p_value = None
            if n_rest > 0:
                p0 = (total - k) / n_rest
                if 0 < p0 < 1 and k:
                    p_value = min(1.0, float(binom.sf(k - 1, n_topic, p0)) * tests)
            rows.append(
                {
                    "value": value,
                    "events": k,
                    "share": round(share, 4),
                    "project_events": total,
                    "project_share": round(project_share, 4),
                    "topic_share_of_segment": round(k / total, 4) if total else 0.0,
                    "lift": round(lift, 3) if lift is not None else None,
                    "p_value": p_value,
                    "over_represented": p_value is not None
                    and p_value < ALPHA
                    and lift is not None
                    and lift >= MIN_LIFT,
                }
            )
        rows.sort(key=lambda r: (-r["events"], r["value"]))
        out.append({"key": key, "events": n_topic, "values": rows})
    return out


def over_represented(sections: list[dict]) -> list[dict]:
    """The flagged values of a breakdown, strongest evidence first."""
    fields = ("value", "share", "project_share", "lift", "p_value")
    found = [
        {"key": s["key"], **{k: r[k] for k in fields}}
        for s in sections
        for r in s["values"]
        if r["over_represented"]
    ]
    return sorted(found, key=lambda r: (r["p_value"], -(r["lift"] or 0)))
