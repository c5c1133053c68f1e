"""Which rules fire: on a topic event as it arrives, and on counts every check interval.

- ``topic_spiking`` rules fire on the owner's ``topic_spiking`` events (already once per
  spike episode).
- ``new_topic`` rules fire on a ``topic_created``/``topic_split`` event whose hour already
  holds ``min_events_per_hour`` events, else at a later count check once a topic born
  within the last 24 hours (event time) holds it in one of its hours (the newest such
  hour is reported); once per rule and topic.
- ``segment_share`` rules are checked on the counts of the dimension's current hour
  (event time): they fire once when the share reaches ``min_share`` and fire again only
  after it fell below.

Fired state is kept in memory by the evaluator: a restart may repeat an alert once.
"""

from __future__ import annotations

import time
from typing import Any

from turret_stream.alerts.rules import Rule, RuleBook
from turret_stream.catalog import dimension_names
from turret_stream.clustering.topic_series import TopicSeries
from turret_stream.queries import Queries
from turret_stream.storage import Filter
from turret_stream.trends import HOUR, WINDOW_HOURS

RULES_TTL_S = 2.0
# A rule that fired, the kind of alert and what it is about: the caller delivers it.
Firing = tuple[Rule, str, dict[str, Any]]


class AlertEvaluator:
    def __init__(self, book: RuleBook, queries: Queries) -> None:
        self.book = book
        self.queries = queries
        self._rules: list[Rule] = []
        self._read_at = float("-inf")
        self._fired: set[tuple[str, str]] = set()  # (rule id, topic)

    def rules(self) -> list[Rule]:
        """Every enabled rule, re-read at most every RULES_TTL_S (the API writes them)."""
        now = time.monotonic()
        if now - self._read_at >= RULES_TTL_S:
            self._rules = [r for r in self.book.list() if r.enabled]
            self._read_at = now
        return self._rules

    def _matching(self, project: str, dimension: str, kind: str) -> list[Rule]:
        return [
            r
            for r in self.rules()
            if r.project == project
            and r.kind == kind
            and (r.dimension is None or r.dimension == dimension)
        ]

    def on_event(self, event: dict[str, Any]) -> list[Firing]:
        """The rules a topic event fires."""
        kind, project, dimension = event["kind"], event["project"], event["dimension"]
        fired: list[Firing] = []
        if kind == "topic_spiking":
            fired += [(r, kind, event) for r in self._matching(project, dimension, kind)]
        elif kind in ("topic_created", "topic_split"):
            for rule in self._matching(project, dimension, "new_topic"):
                count = event.get("this_hour") or 0
                if count >= (rule.min_events_per_hour or 0):
                    fired += self._once(rule, event["topic"], "new_topic", event)
        return fired

    def _once(self, rule: Rule, topic: str, kind: str, event: dict[str, Any]) -> list[Firing]:
        if (rule.id, topic) in self._fired:
            return []
        self._fired.add((rule.id, topic))
        return [(rule, kind, event)]

    def check_counts(self) -> list[Firing]:
        """The count rules (new_topic, segment_share) that fire now, in every project."""
        by_dimension: dict[tuple[str, str], list[Rule]] = {}
        for rule in self.rules():
            if rule.kind == "topic_spiking":
                continue
            dims = [d.key for d in self.queries.text_dimensions(rule.project)]
            for key in dims if rule.dimension is None else [rule.dimension]:
                if key in dims:
                    by_dimension.setdefault((rule.project, key), []).append(rule)
        fired: list[Firing] = []
        for (project, key), rules in by_dimension.items():
            fired += self._check_dimension(project, key, rules)
        return fired

    def _check_dimension(self, project: str, key: str, rules: list[Rule]) -> list[Firing]:
        names = dimension_names(project, key)
        topics = self.queries._topic_records(names)
        hours = {r.id: TopicSeries.from_payload(r.payload).hours for r in topics}
        now_hour = max((max(h) for h in hours.values() if h), default=None)
        if now_hour is None:
            return []
        labels = self.queries.labels.labels(names, [r.id for r in topics])
        fired: list[Firing] = []
        for record in topics:
            this_hour = hours[record.id].get(now_hour, 0)
            label = labels.get(record.id)
            base = {
                "project": project,
                "dimension": key,
                "topic": record.id,
                "label": label.name if label else None,
                "size": record.payload.get("size", 0),
                "this_hour": this_hour,
                "hour_start": now_hour * HOUR,
            }
            first_seen = record.payload.get("first_seen")
            young = first_seen is not None and first_seen // HOUR > now_hour - WINDOW_HOURS
            for rule in rules:
                if rule.kind == "new_topic" and young:
                    # In any hour of its life (the newest such hour), not only the current
                    # one: events that arrive faster than this check (a backlog, a replay)
                    # must not move the current hour past the one the topic reached it in.
                    need = rule.min_events_per_hour or 0
                    counts = hours[record.id]
                    reached = max((h for h, c in counts.items() if c >= need), default=None)
                    if reached is not None:
                        event = {
                            **base,
                            "kind": "new_topic",
                            "first_seen": first_seen,
                            "this_hour": counts[reached],
                            "hour_start": reached * HOUR,
                        }
                        fired += self._once(rule, record.id, "new_topic", event)
                elif rule.kind == "segment_share" and this_hour >= (rule.min_events or 0):
                    fired += self._check_share(names, rule, record.id, now_hour, base)
        return fired

    def _check_share(
        self, names: Any, rule: Rule, topic: str, now_hour: int, base: dict[str, Any]
    ) -> list[Firing]:
        members = self.queries.topic_map(names).members(topic)
        if not members:
            return []
        ranges = {"ts": (now_hour * HOUR, None)}
        total = self.queries.store.count(names.events, Filter(must={"mc": members}, ranges=ranges))
        if not total:
            return []
        value = _segment_value(rule.value)
        matching = self.queries.store.count(
            names.events,
            Filter(must={"mc": members, f"metadata.{rule.segment}": value}, ranges=ranges),
        )
        share = matching / total
        key = (rule.id, topic)
        if share < (rule.min_share or 1.0):
            self._fired.discard(key)  # re-armed
            return []
        event = {
            **base,
            "kind": "segment_share",
            "segment": rule.segment,
            "value": rule.value,
            "share": round(share, 4),
            "segment_events": matching,
            "events_this_hour": total,
        }
        return self._once(rule, topic, "segment_share", event)


def _segment_value(value: str | None) -> str | list[str | int | bool]:
    """Metadata keeps JSON types: "true" also matches true, "3" also matches 3."""
    text = value or ""
    if text in ("true", "false"):
        return [text, text == "true"]
    if text.lstrip("-").isdigit():
        return [text, int(text)]
    return text
