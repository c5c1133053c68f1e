"""The topic map: one dimension's micro-cluster -> topic mapping, as its own record.

Everything the read side needs to put an event (which stores its micro-cluster) in a
topic, and nothing else: live micro-cluster -> topic, absorbed micro-cluster -> the one
that took its events, merged or retired topic -> its successor, neutral topics (journeys do
not switch on them), when each topic was born, and each topic's theme (``themes.py``:
theme -> its topics, merged themes' successors, when each theme was born). Labels are the
label book's (``labels/book.py``), read beside it.

Written by the dimension's owner only, in two records of the ``topic_maps`` collection so
that a batch writes little:

* the **base** ``<slug>@<version>``, written whole at each reclustering (under a new
  version: a crash before the owner commits leaves the previous base in use);
* the **head** ``<slug>``: the base version it extends, a sequence number, and what changed
  since that base (new micro-clusters' provisional topics, absorptions, neutral flags).
  Small (bounded by ``recluster_every_events``), rewritten by batches that change it.

Readers (:class:`TopicMapReader`) read the head (one small point) and the base only when
its version changed, so a reader's cost is one point lookup per call while nothing moved.
"""

from __future__ import annotations

import base64
import json
import threading
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from turret_stream.catalog import DimensionNames
from turret_stream.storage import Filter, Point, VectorStore

COLLECTION = "topic_maps"
FORMAT = 2
_UNIT = [1.0]


def _pack(data: Any) -> str:
    return base64.b64encode(
        zlib.compress(json.dumps(data, separators=(",", ":")).encode(), 3)
    ).decode()


def _unpack(blob: str) -> Any:
    return json.loads(zlib.decompress(base64.b64decode(blob)))


@dataclass(frozen=True)
class TopicMap:
    """One dimension's topics as of one version; ``version`` is (base, head sequence)."""

    version: tuple[int, int] = (0, 0)
    mapping: Mapping[int, str] = field(default_factory=dict)
    absorbed: Mapping[int, int | None] = field(default_factory=dict)
    successor: Mapping[str, str | None] = field(default_factory=dict)
    neutral: frozenset[str] = frozenset()
    created: Mapping[str, float] = field(default_factory=dict)
    # topic -> its theme; merged or retired theme -> successor; theme -> when born.
    themes: Mapping[str, str] = field(default_factory=dict)
    theme_successor: Mapping[str, str | None] = field(default_factory=dict)
    theme_created: Mapping[str, float] = field(default_factory=dict)

    def theme_of(self, topic: str | None) -> str | None:
        return None if topic is None else self.themes.get(topic)

    def theme_topics(self, theme: str) -> list[str]:
        """The live topics of ``theme``."""
        return sorted(t for t, th in self.themes.items() if th == theme)

    def current_theme(self, theme: str) -> str | None:
        """A theme id as of now: merged themes resolve to the theme that absorbed them."""
        seen: set[str] = set()
        while theme in self.theme_successor and theme not in seen:
            seen.add(theme)
            nxt = self.theme_successor[theme]
            if nxt is None:
                return None
            theme = nxt
        return theme

    def resolve(self, mc: int | None) -> int | None:
        """The live micro-cluster holding ``mc``'s events (following absorptions)."""
        hops = 0
        while mc is not None and mc in self.absorbed and hops <= len(self.absorbed):
            mc = self.absorbed[mc]
            hops += 1
        return mc

    def topic_of(self, mc: int | None) -> str | None:
        live = self.resolve(mc)
        return None if live is None else self.mapping.get(live)

    def moved_since(self, older: TopicMap, neutral_counts: bool = True) -> set[int]:
        """The micro-clusters (absorbed ones included) whose topic differs between
        ``older`` and this map, or whose topic's neutral flag does (``neutral_counts``):
        a journey made of the others derives the same under both."""
        changed = set()
        for mc in {*older.mapping, *older.absorbed, *self.mapping, *self.absorbed}:
            was, now = older.topic_of(mc), self.topic_of(mc)
            if was != now or (
                neutral_counts
                and now is not None
                and (was in older.neutral) != (now in self.neutral)
            ):
                changed.add(mc)
        return changed

    @cached_property
    def _members(self) -> dict[str, list[int]]:
        out: dict[str, set[int]] = {}
        for mc, topic in self.mapping.items():
            out.setdefault(topic, set()).add(mc)
        for gone in self.absorbed:
            topic = self.topic_of(gone)
            if topic is not None:
                out[topic].add(gone)
        return {t: sorted(m) for t, m in out.items()}

    def members(self, topic: str) -> list[int]:
        """Every micro-cluster id whose events belong to ``topic``, absorbed ones included."""
        return self._members.get(topic, [])

    def topics(self) -> list[str]:
        return sorted(self._members)

    # -- records --------------------------------------------------------------------------

    @staticmethod
    def base_record(
        version: int,
        registry: Mapping[str, Any],
        absorbed: Mapping[int, int | None],
        neutral: Iterable[str],
        themes: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A whole map. ``registry`` is ``TopicRegistry.to_record()``, ``themes``
        ``ThemeRegistry.to_record()``; absorption chains
        are resolved here (and absorptions that lead nowhere dropped), so the base stays
        as small as the live state."""
        flat = TopicMap(absorbed=absorbed)
        resolved = {}
        for mc in absorbed:
            home = flat.resolve(mc)
            if home is not None:
                resolved[mc] = home
        return {
            "format": FORMAT,
            "version": version,
            "topics": registry["topics"],
            "absorbed": sorted(resolved.items()),
            "successor": registry["successor"],
            "history": registry["history"],
            "neutral": sorted(neutral),
            "themes": themes,
        }

    @staticmethod
    def head_record(
        base_version: int,
        seq: int,
        assigned: Mapping[int, str | None],
        absorbed: Mapping[int, int | None],
        neutral: Iterable[str],
    ) -> dict[str, Any]:
        """What changed since base ``base_version``: micro-cluster -> topic (None: it
        left its topic), new absorptions, today's neutral topics."""
        return {
            "format": FORMAT,
            "base": base_version,
            "seq": seq,
            "assigned": sorted(assigned.items()),
            "absorbed": sorted(absorbed.items()),
            "neutral": sorted(neutral),
        }

    @classmethod
    def from_records(cls, base: Mapping[str, Any] | None, head: Mapping[str, Any]) -> TopicMap:
        mapping: dict[int, str] = {}
        absorbed: dict[int, int | None] = {}
        successor: dict[str, str | None] = {}
        created: dict[str, float] = {}
        themes: dict[str, str] = {}
        theme_successor: dict[str, str | None] = {}
        theme_created: dict[str, float] = {}
        if base is not None:
            mapping = {int(mc): t for t, mcs in base["topics"].items() for mc in mcs}
            absorbed = {int(k): v for k, v in base["absorbed"]}
            successor = dict(base["successor"])
            for kind, topic, at, _ in base["history"]:
                if kind in ("born", "split"):
                    created.setdefault(topic, at)
            # Bases written before themes existed have none: themes come at the next
            # reclustering.
            theme_record = base.get("themes")
            if theme_record:
                themes = {t: th for th, ts in theme_record["themes"].items() for t in ts}
                theme_successor = dict(theme_record["successor"])
                for kind, theme, at, _ in theme_record["history"]:
                    if kind in ("born", "split"):
                        theme_created.setdefault(theme, at)
        for mc, topic in head["assigned"]:
            if topic is None:
                mapping.pop(int(mc), None)
            else:
                mapping[int(mc)] = topic
        absorbed.update({int(k): v for k, v in head["absorbed"]})
        return cls(
            version=(int(head["base"]), int(head["seq"])),
            mapping=mapping,
            absorbed=absorbed,
            successor=successor,
            neutral=frozenset(head["neutral"]),
            created=created,
            themes=themes,
            theme_successor=theme_successor,
            theme_created=theme_created,
        )


EMPTY_MAP = TopicMap()


class TopicMapStore:
    """Reads and writes of topic map records (the owner writes, readers read)."""

    def __init__(self, store: VectorStore) -> None:
        self.store = store
        store.create_collection(COLLECTION, 1, "dot", indexes={"slug": "keyword"})

    def write_base(self, names: DimensionNames, record: Mapping[str, Any]) -> int:
        blob = _pack(record)
        payload = {"slug": names.slug, "kind": "base", "blob": blob}
        self.store.upsert(COLLECTION, [Point(f"{names.slug}@{record['version']}", _UNIT, payload)])
        return len(blob)

    def drop_bases_except(self, names: DimensionNames, version: int) -> None:
        """Delete the bases of other versions (left by a crash before their clean-up)."""
        records, _ = self.store.scroll(
            COLLECTION, filter=Filter(must={"slug": names.slug, "kind": "base"}), limit=1000
        )
        stale = [r.id for r in records if r.id != f"{names.slug}@{version}"]
        if stale:
            self.store.delete(COLLECTION, stale)

    def write_head(self, names: DimensionNames, record: Mapping[str, Any]) -> int:
        payload = {"base": record["base"], "seq": record["seq"], "blob": _pack(record)}
        self.store.upsert(COLLECTION, [Point(names.slug, _UNIT, payload)])
        return len(payload["blob"])

    def drop_base(self, names: DimensionNames, version: int) -> None:
        self.store.delete(COLLECTION, [f"{names.slug}@{version}"])

    def head(self, names: DimensionNames) -> dict[str, Any] | None:
        found = self.store.retrieve(COLLECTION, [names.slug])
        return _unpack(found[0].payload["blob"]) if found else None

    def base(self, names: DimensionNames, version: int) -> dict[str, Any] | None:
        found = self.store.retrieve(COLLECTION, [f"{names.slug}@{version}"])
        return _unpack(found[0].payload["blob"]) if found else None


class TopicMapReader:
    """The current topic map of any dimension, cached by version (thread-safe)."""

    def __init__(self, store: VectorStore) -> None:
        self.records = TopicMapStore(store)
        self._bases: dict[str, tuple[int, dict[str, Any] | None]] = {}
        self._maps: dict[str, TopicMap] = {}
        self._lock = threading.Lock()

    def get(self, names: DimensionNames) -> TopicMap:
        found = self.records.store.retrieve(COLLECTION, [names.slug])
        if not found:
            return EMPTY_MAP
        version = (int(found[0].payload["base"]), int(found[0].payload["seq"]))
        with self._lock:
            cached = self._maps.get(names.slug)
            if cached is not None and cached.version == version:
                return cached
            base = self._bases.get(names.slug)
        head = _unpack(found[0].payload["blob"])
        if base is None or base[0] != version[0]:
            base = (version[0], self.records.base(names, version[0]) if version[0] else None)
        topic_map = TopicMap.from_records(base[1], head)
        with self._lock:
            self._bases[names.slug] = base
            self._maps[names.slug] = topic_map
        return topic_map
