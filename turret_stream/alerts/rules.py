"""Alert rules: what they say, how a request's rule is checked, and where they are kept.

Three kinds, each with its own fields (all rules have ``name``, ``url``, ``enabled`` and an
optional ``dimension`` that restricts them to one text dimension):

- ``topic_spiking``: a topic's hour is far above its baseline (the owner's
  ``topic_spiking`` event, the Poisson test of ``trends.py``).
- ``new_topic``: a topic born within the last 24 hours reaches ``min_events_per_hour``
  events in one hour (event time).
- ``segment_share``: within one hour, the events of a topic whose ``segment`` (a metadata
  key) equals ``value`` make ``min_share`` (0-1) of the topic's events or more, once the
  topic has ``min_events`` events in that hour.

Rules live in the store collection ``turret.alert_rules`` (one point per rule, payload
only), written by the API alone; the alert agent reads them. Each rule has a secret that
signs its deliveries (HMAC-SHA256), shown once, when the rule is created.
"""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from turret_stream.storage import Filter, Point, VectorStore

COLLECTION = "turret.alert_rules"
KINDS = ("topic_spiking", "new_topic", "segment_share")
MAX_NAME_CHARS = 200
MAX_FIELD_CHARS = 256
_UNIT = [1.0]


class RuleError(ValueError):
    """A rule that cannot be saved: ``field`` names the part at fault."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"Invalid field '{field}': {problem}")
        self.field = field


@dataclass
class Rule:
    id: str
    project: str
    name: str
    kind: str
    url: str
    secret: str
    enabled: bool = True
    dimension: str | None = None
    min_events_per_hour: int | None = None
    segment: str | None = None
    value: str | None = None
    min_share: float | None = None
    min_events: int | None = None
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)

    def view(self, *, with_secret: bool = False) -> dict[str, Any]:
        """The rule as the API shows it (the secret only when it was just created)."""
        out = {k: v for k, v in asdict(self).items() if k not in ("secret", "project")}
        if with_secret:
            out["secret"] = self.secret
        else:
            out["secret_hint"] = f"...{self.secret[-4:]}"
        return {k: v for k, v in out.items() if v is not None}

    def to_payload(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> Rule:
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in known})


def _text(body: dict[str, Any], name: str, *, required: bool, limit: int) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise RuleError(name, "is required")
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise RuleError(name, f"must be a non-empty string of at most {limit} characters")
    return value


def _int(body: dict[str, Any], name: str, default: int | None, low: int, high: int) -> int:
    value = body.get(name, default)
    if value is None:
        raise RuleError(name, "is required")
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RuleError(name, f"must be an integer between {low} and {high}")
    return value


FIELDS = {
    "topic_spiking": set(),
    "new_topic": {"min_events_per_hour"},
    "segment_share": {"segment", "value", "min_share", "min_events"},
}
COMMON = {"name", "kind", "url", "enabled", "dimension"}


def parse_rule(body: Any, project: str, previous: Rule | None = None) -> Rule:
    """A rule from a request body (a whole rule; on update, ``previous`` supplies what the
    body leaves out). The URL's form is checked here, its addresses by the caller."""
    if not isinstance(body, dict):
        raise RuleError("body", "must be a JSON object")
    merged = dict(previous.to_payload()) if previous else {}
    merged.update(body)
    kind = merged.get("kind")
    if kind not in KINDS:
        raise RuleError("kind", f"must be one of {', '.join(KINDS)}")
    unknown = set(body) - COMMON - FIELDS[kind]
    if unknown:
        raise RuleError(
            sorted(unknown)[0],
            f"is not a field of a {kind} rule (fields: {', '.join(sorted(COMMON | FIELDS[kind]))})",
        )
    enabled = merged.get("enabled", True)
    if not isinstance(enabled, bool):
        raise RuleError("enabled", "must be true or false")
    rule = Rule(
        id=previous.id if previous else f"al_{uuid.uuid4().hex[:16]}",
        project=project,
        name=_text(merged, "name", required=True, limit=MAX_NAME_CHARS) or "",
        kind=kind,
        url=merged.get("url") if isinstance(merged.get("url"), str) else "",
        secret=previous.secret if previous else f"whsec_{secrets.token_hex(24)}",
        enabled=enabled,
        dimension=_text(merged, "dimension", required=False, limit=MAX_FIELD_CHARS),
        created_at=previous.created_at if previous else time.time(),
    )
    if not rule.url:
        raise RuleError("url", "is required (an http(s) URL)")
    if kind == "new_topic":
        rule.min_events_per_hour = _int(merged, "min_events_per_hour", None, 1, 10_000_000)
    elif kind == "segment_share":
        rule.segment = _text(merged, "segment", required=True, limit=MAX_FIELD_CHARS)
        value = merged.get("value")
        if not isinstance(value, str | int | bool) or (isinstance(value, str) and not value):
            raise RuleError("value", "must be the segment value (a string, number or boolean)")
        rule.value = str(value).lower() if isinstance(value, bool) else str(value)
        share = merged.get("min_share")
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share <= 1:
            raise RuleError("min_share", "must be a number in (0, 1]")
        rule.min_share = float(share)
        rule.min_events = _int(merged, "min_events", 20, 1, 10_000_000)
    return rule


class RuleBook:
    """The rules of every project (the API writes, the alert agent reads)."""

    def __init__(self, store: VectorStore) -> None:
        self.store = store

    def _ensure(self) -> None:
        if not self.store.has_collection(COLLECTION):
            self.store.create_collection(COLLECTION, 1, "dot", indexes={"project": "keyword"})

    def list(self, project: str | None = None) -> list[Rule]:
        """A project's rules (every project's with None), oldest first."""
        if not self.store.has_collection(COLLECTION):
            return []
        rules: list[Rule] = []
        offset = None
        flt = Filter(must={"project": project}) if project is not None else None
        while True:
            records, offset = self.store.scroll(COLLECTION, filter=flt, limit=256, offset=offset)
            rules += [Rule.from_payload(r.payload) for r in records]
            if offset is None:
                break
        return sorted(rules, key=lambda r: r.created_at)

    def get(self, project: str, rule_id: str) -> Rule | None:
        if not self.store.has_collection(COLLECTION):
            return None
        found = self.store.retrieve(COLLECTION, [rule_id])
        if not found or found[0].payload.get("project") != project:
            return None
        return Rule.from_payload(found[0].payload)

    def save(self, rule: Rule) -> None:
        self._ensure()
        rule.updated_at = time.time()
        self.store.upsert(COLLECTION, [Point(rule.id, _UNIT, rule.to_payload())])

    def delete(self, project: str, rule_id: str) -> bool:
        if self.get(project, rule_id) is None:
            return False
        self.store.delete(COLLECTION, [rule_id])
        return True
