"""The read side: topics and events of a project, as the API serves them.

Reads go to the vector store only (never to a worker's memory), so an API process can run
apart from the workers when the store is a Qdrant server. An event's topic is resolved
through its dimension's current topic map (``clustering/topic_map.py``, the record its
owner writes for readers, cached here by version), so events that arrived as noise show
their topic once their region became a topic, and merges apply to old events too.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import numpy as np

from turret_stream.catalog import Catalog, DimensionInfo, DimensionNames, dimension_names
from turret_stream.clustering.topic_map import TopicMap, TopicMapReader
from turret_stream.clustering.topic_series import TopicSeries
from turret_stream.labels.book import Label, LabelBook
from turret_stream.segments import breakdown, over_represented
from turret_stream.storage import Filter, Record, VectorStore
from turret_stream.trends import Trend, newest_hour, trend

EXAMPLES = 5
# Topics listed inside each theme by GET /v1/themes (largest first).
TOPICS_PER_THEME = 5


class NotFound(Exception):
    """A dimension, topic or event that the project does not have."""


def _hours(record: Record) -> dict[int, int]:
    return TopicSeries.from_payload(record.payload).hours


def _trend(record: Record, now_hour: int | None) -> Trend | None:
    if now_hour is None:
        return None
    return trend(_hours(record), record.payload.get("first_seen"), now_hour)


def _trends(topics: list[Record]) -> dict[str, Trend]:
    """Every topic's trend, against the dimension's newest hour (event time)."""
    hours = {r.id: _hours(r) for r in topics}  # each topic's series decoded once
    now_hour = newest_hour(hours.values())
    if now_hour is None:
        return {}
    return {r.id: trend(hours[r.id], r.payload.get("first_seen"), now_hour) for r in topics}


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


class Queries:
    def __init__(self, store: VectorStore) -> None:
        self.store = store
        self.catalog = Catalog(store)
        self.labels = LabelBook(store)
        self.topic_maps = TopicMapReader(store)

    # -- dimensions -----------------------------------------------------------------------

    def text_dimensions(self, project: str) -> list[DimensionInfo]:
        return [d for d in self.catalog.dimensions(project) if d.type == "text" and d.events]

    def dimension(self, project: str, key: str | None) -> DimensionNames:
        dims = self.text_dimensions(project)
        if key is None:
            if not dims:
                raise NotFound("This project has no clustered text dimension yet")
            return dimension_names(project, dims[0].key)
        if not any(d.key == key for d in dims):
            known = ", ".join(d.key for d in dims) or "none yet"
            raise NotFound(f"No text dimension '{key}' in this project (text dimensions: {known})")
        return dimension_names(project, key)

    def topic_map(self, names: DimensionNames) -> TopicMap:
        """The dimension's current topic map (one small point read while unchanged)."""
        return self.topic_maps.get(names)

    # -- topics ---------------------------------------------------------------------------

    def clusters(
        self,
        project: str,
        key: str | None,
        limit: int,
        examples: int,
        sort: str = "size",
        theme: str | None = None,
    ) -> dict:
        names = self.dimension(project, key)
        info = self.catalog.dimension(project, names.dimension) or {}
        total = info.get("events", 0)
        topic_map = self.topic_map(names)
        all_topics = self._topic_records(names, with_vectors=examples > 0)
        # Trends against the whole dimension's newest hour, whatever the filter.
        trends = _trends(all_topics)
        topics = all_topics
        if theme is not None:
            current = self.live_theme(topic_map, theme)
            topics = [r for r in all_topics if topic_map.theme_of(r.id) == current]
        if sort == "growth":
            # Fastest growing first; topics without a previous window after, by size.
            topics.sort(
                key=lambda r: (
                    trends[r.id].growth is None,
                    -(trends[r.id].growth or 0.0),
                    -r.payload.get("size", 0),
                )
            )
        else:
            topics.sort(key=lambda r: -r.payload.get("size", 0))
        labels = self.labels.labels(names, [r.id for r in topics[:limit]])
        shown = [
            self._topic_view(
                names,
                r,
                total,
                examples,
                labels.get(r.id),
                trends.get(r.id),
                topic_map.theme_of(r.id),
            )
            for r in topics[:limit]
        ]
        in_topics = sum(r.payload.get("size", 0) for r in all_topics)
        body = {
            "success": True,
            "project": project,
            "dimension": names.dimension,
            "total_events": total,
            "unassigned_events": max(0, total - in_topics),
            "total_clusters": len(topics),
            "clusters": shown,
        }
        if theme is not None:
            body["theme"] = self.live_theme(topic_map, theme)
        return body

    # -- themes ---------------------------------------------------------------------------

    def live_theme(self, topic_map: TopicMap, theme: str) -> str:
        """A theme id as of now (a merged theme's id names the theme that took it)."""
        current = topic_map.current_theme(theme)
        if current is None or current not in set(topic_map.themes.values()):
            raise NotFound(f"No theme '{theme}' in this dimension")
        return current

    def themes(
        self,
        project: str,
        key: str | None,
        limit: int,
        sort: str = "size",
        only: str | None = None,
    ) -> dict:
        """The dimension's themes (``clustering/themes.py``) with figures summed over their
        topics, trend tags from those sums (``trends.py``) and their largest topics."""
        names = self.dimension(project, key)
        total = (self.catalog.dimension(project, names.dimension) or {}).get("events", 0)
        topic_map = self.topic_map(names)
        records = self._topic_records(names)
        now_hour = newest_hour(_hours(r) for r in records)
        groups: dict[str, list[Record]] = {}
        for r in records:
            theme = topic_map.theme_of(r.id)
            if theme is not None:
                groups.setdefault(theme, []).append(r)
        if only is not None:
            wanted = self.live_theme(topic_map, only)
            groups = {wanted: groups.get(wanted, [])}
        views = [
            self._theme_view(theme, members, total, now_hour, topic_map)
            for theme, members in groups.items()
        ]
        if sort == "growth":
            views.sort(key=lambda v: (v["growth"] is None, -(v["growth"] or 0.0), -v["size"]))
        else:
            views.sort(key=lambda v: (-v["size"], v["id"]))
        views = views[:limit]
        per_theme = None if only is not None else TOPICS_PER_THEME
        shown_topics = [t["id"] for v in views for t in v["topics"][:per_theme]]
        labels = self.labels_of(names, [v["id"] for v in views] + shown_topics)
        for v in views:
            label = labels.get(v["id"])
            v.update(
                label=label.name if label else None,
                description=label.description if label else None,
                label_source=label.source if label else None,
            )
            v["topics"] = v["topics"][:per_theme]
            for t in v["topics"]:
                t["label"] = labels[t["id"]].name if t["id"] in labels else None
        in_themes = sum(len(m) for m in groups.values())
        body = {
            "success": True,
            "project": project,
            "dimension": names.dimension,
            "total_events": total,
            "total_themes": len(groups),
            "topics_without_theme": len(records) - in_themes if only is None else None,
            "themes": views,
        }
        if only is not None:
            body = {k: v for k, v in body.items() if k != "themes"} | {"theme": views[0]}
            if only != views[0]["id"]:
                body["theme"]["requested_id"] = only
        return body

    def labels_of(self, names: DimensionNames, ids: list[str]) -> dict[str, Label]:
        """The labels of topics and themes; a theme of one topic is that topic, and shows
        its topic's label (the labeller does not name it) unless a person named the theme."""
        topic_map = self.topic_map(names)
        single: dict[str, str] = {}
        for theme in set(ids) & set(topic_map.themes.values()):
            topics = topic_map.theme_topics(theme)
            if len(topics) == 1:
                single[theme] = topics[0]
        found = self.labels.labels(names, sorted(set(ids) | set(single.values())))
        for theme, topic in single.items():
            if theme in found and found[theme].source == "manual":
                continue
            if topic in found:
                found[theme] = found[topic]
            else:
                found.pop(theme, None)
        return found

    def theme_records(self, names: DimensionNames) -> list[Record]:
        """One record per theme, as the labeller reads topics: its centre (its topics'
        centres weighted by their events), ``size`` and ``topics``."""
        topic_map = self.topic_map(names)
        sums: dict[str, np.ndarray] = {}
        sizes: dict[str, int] = {}
        topics: dict[str, list[str]] = {}
        for r in self._topic_records(names, with_vectors=True):
            theme = topic_map.theme_of(r.id)
            if theme is None or r.vector is None:
                continue
            size = int(r.payload.get("size", 0))
            vector = np.asarray(r.vector, dtype=np.float64) * max(size, 1)
            sums[theme] = sums[theme] + vector if theme in sums else vector
            sizes[theme] = sizes.get(theme, 0) + size
            topics.setdefault(theme, []).append(r.id)
        out = []
        for theme, total in sums.items():
            norm = float(np.linalg.norm(total)) or 1.0
            payload = {"size": sizes[theme], "topics": sorted(topics[theme])}
            out.append(Record(theme, payload, (total / norm).tolist()))
        return out

    def _theme_view(
        self,
        theme: str,
        members: list[Record],
        total: int,
        now_hour: int | None,
        topic_map: TopicMap,
    ) -> dict[str, Any]:
        hours: Counter[int] = Counter()
        days: Counter[int] = Counter()
        firsts, lasts = [], []
        for r in members:
            series = TopicSeries.from_payload(r.payload)
            hours.update(series.hours)
            days.update(series.days)
            if r.payload.get("first_seen") is not None:
                firsts.append(r.payload["first_seen"])
            if r.payload.get("last_seen") is not None:
                lasts.append(r.payload["last_seen"])
        size = sum(r.payload.get("size", 0) for r in members)
        first_seen = min(firsts, default=None)
        t = trend(hours, first_seen, now_hour) if now_hour is not None else None
        members = sorted(members, key=lambda r: (-r.payload.get("size", 0), r.id))
        return {
            "id": theme,
            "size": size,
            "share": round(size / total, 4) if total else 0.0,
            "total_topics": len(members),
            "first_seen": _iso(first_seen),
            "last_seen": _iso(max(lasts, default=None)),
            "created_at": _iso(topic_map.theme_created.get(theme)),
            # Trend tag from the theme's own hourly counts (its topics' summed).
            "trend": t.tag if t else None,
            "growth": t.growth if t else None,
            "window_events": {"current": t.current, "previous": t.previous} if t else None,
            "counts": {
                "hourly": [{"hour": _iso(h * 3600), "count": c} for h, c in sorted(hours.items())],
                "daily": [
                    {"day": _iso(d * 86400)[:10], "count": c} for d, c in sorted(days.items())
                ],
            },
            "topics": [{"id": r.id, "size": r.payload.get("size", 0)} for r in members],
        }

    # -- segments -------------------------------------------------------------------------

    def cluster_segments(self, project: str, topic_id: str, key: str | None) -> dict:
        """A topic's events by enum segment value, against the project (``segments.py``);
        the counts are the owner's, kept as events arrive."""
        names, record = self._find_topic(project, topic_id, key)
        enum_keys = {d.key for d in self.catalog.dimensions(project) if d.type == "enum"}
        project_counts: Counter[tuple[str, str]] = Counter()
        for r in self._topic_records(names):
            project_counts.update(TopicSeries.from_payload(r.payload).segments)
        mine = TopicSeries.from_payload(record.payload).segments
        if record.payload.get("status") != "active":
            project_counts.update(mine)  # a merged topic is not among the active ones
        sections = breakdown(mine, project_counts, enum_keys)
        return {
            "success": True,
            "project": project,
            "dimension": names.dimension,
            "cluster_id": topic_id,
            "size": record.payload.get("size", 0),
            "segments": sections,
            "over_represented": over_represented(sections),
        }

    def cluster(self, project: str, topic_id: str, key: str | None, examples: int) -> dict:
        names, record = self._find_topic(project, topic_id, key)
        total = (self.catalog.dimension(project, names.dimension) or {}).get("events", 0)
        label = self.labels.labels(names, [topic_id]).get(topic_id)
        now_hour = newest_hour(_hours(r) for r in self._topic_records(names))
        theme = self.topic_map(names).theme_of(topic_id)
        view = self._topic_view(
            names, record, total, examples, label, _trend(record, now_hour), theme
        )
        view["label_history"] = self.labels.history(names, topic_id)
        if record.payload.get("status") != "active":
            view["current_id"] = self.topic_map(names).successor.get(topic_id)
        return {"success": True, "project": project, "dimension": names.dimension, "cluster": view}

    def set_label(
        self, project: str, topic_id: str, key: str | None, name: str, description: str
    ) -> dict:
        names, _ = self._find_topic(project, topic_id, key)
        label = self.labels.set_manual(names, topic_id, name, description)
        return {"success": True, "cluster_id": topic_id, "label": label.view()}

    def set_theme_label(
        self, project: str, theme_id: str, key: str | None, name: str, description: str
    ) -> dict:
        """A person names a theme (kept in the label book beside topics' names)."""
        names = self.dimension(project, key)
        topic_map = self.topic_map(names)
        if theme_id not in set(topic_map.themes.values()):
            raise NotFound(f"No live theme '{theme_id}' in this dimension")
        label = self.labels.set_manual(names, theme_id, name, description)
        return {"success": True, "theme_id": theme_id, "label": label.view()}

    def cluster_events(
        self, project: str, topic_id: str, key: str | None, limit: int, cursor: str | None
    ) -> dict:
        names, _ = self._find_topic(project, topic_id, key)
        members = self.topic_map(names).members(topic_id)
        if not members:
            return {"success": True, "events": [], "next_cursor": None}
        records, next_cursor = self.store.scroll(
            names.events, filter=Filter(must={"mc": members}), limit=limit, offset=cursor
        )
        return {
            "success": True,
            "project": project,
            "dimension": names.dimension,
            "cluster_id": topic_id,
            "events": [self._event_view(r.payload, topic_id) for r in records],
            "next_cursor": next_cursor,
        }

    def _topic_records(self, names: DimensionNames, with_vectors: bool = False) -> list[Record]:
        if not self.store.has_collection(names.topics):
            return []
        out: list[Record] = []
        offset = None
        while True:
            records, offset = self.store.scroll(
                names.topics,
                filter=Filter(must={"status": "active"}),
                limit=256,
                offset=offset,
                with_vectors=with_vectors,
            )
            out.extend(records)
            if offset is None:
                return out

    def _find_topic(
        self, project: str, topic_id: str, key: str | None
    ) -> tuple[DimensionNames, Record]:
        dims = (
            [self.dimension(project, key)]
            if key
            else [dimension_names(project, d.key) for d in self.text_dimensions(project)]
        )
        for names in dims:
            if not self.store.has_collection(names.topics):
                continue
            found = self.store.retrieve(names.topics, [topic_id], with_vectors=True)
            if found:
                return names, found[0]
        raise NotFound(f"No cluster '{topic_id}' in this project")

    def _topic_view(
        self,
        names: DimensionNames,
        record: Record,
        total: int,
        examples: int,
        label: Label | None = None,
        trend: Trend | None = None,
        theme: str | None = None,
    ) -> dict[str, Any]:
        p = record.payload
        series = TopicSeries.from_payload(p)
        size = p.get("size", 0)
        view = {
            "id": record.id,
            # The theme over this topic (clustering/themes.py); null until the dimension's
            # next reclustering for a topic map written before themes existed.
            "theme": theme,
            "label": label.name if label else None,
            "description": label.description if label else None,
            "label_source": label.source if label else None,
            "label_set_at": _iso(label.set_at) if label else None,
            "status": p.get("status"),
            "size": size,
            "share": round(size / total, 4) if total else 0.0,
            "first_seen": _iso(p.get("first_seen")),
            "last_seen": _iso(p.get("last_seen")),
            "counts": {
                "hourly": [
                    {"hour": _iso(h * 3600), "count": c} for h, c in sorted(series.hours.items())
                ],
                "daily": [
                    {"day": _iso(d * 86400)[:10], "count": c}
                    for d, c in sorted(series.days.items())
                ],
            },
            # Trend tag from the topic's own hourly counts (turret_stream/trends.py).
            "trend": trend.tag if trend else None,
            "growth": trend.growth if trend else None,
            "window_events": {"current": trend.current, "previous": trend.previous}
            if trend
            else None,
            "micro_clusters": p.get("micro_clusters", 0),
            # Journeys do not switch on a neutral topic (it keeps company with all kinds).
            "neutral": bool(p.get("neutral", False)),
            "created_at": _iso(p.get("created_at")),
        }
        if p.get("merged_into"):
            view["merged_into"] = p["merged_into"]
        if examples:
            view["examples"] = self._examples(names, record, examples)
        return view

    def _examples(self, names: DimensionNames, record: Record, n: int) -> list[dict]:
        """The events nearest the topic's centre."""
        members = self.topic_map(names).members(record.id)
        vector = record.vector
        if not members or vector is None:
            return []
        hits = self.store.search(
            names.events, np.asarray(vector), n, filter=Filter(must={"mc": members})
        )
        return [
            {
                "event_id": h.payload["event_id"],
                "text": h.payload["text"],
                "ts": _iso(h.payload["ts"]),
                "similarity": round(h.score, 4),
            }
            for h in hits
        ]

    # -- events ---------------------------------------------------------------------------

    def _event_view(self, payload: dict[str, Any], topic: str | None) -> dict[str, Any]:
        return {
            "event_id": payload["event_id"],
            "name": payload["name"],
            "text": payload["text"],
            "metadata": payload["metadata"],
            "session_id": payload["session_id"],
            "user_id": payload["user_id"],
            "timestamp": _iso(payload["ts"]),
            "micro_cluster": payload["mc"],
            "cluster_id": topic,
        }

    def event(self, project: str, event_id: str) -> dict:
        event: dict[str, Any] | None = None
        clusters: dict[str, Any] = {}
        for dim in self.text_dimensions(project):
            names = dimension_names(project, dim.key)
            if not self.store.has_collection(names.events):
                continue
            found = self.store.retrieve(names.events, [event_id])
            if not found:
                continue
            payload = found[0].payload
            topic = self.topic_map(names).topic_of(payload["mc"])
            view = self._event_view(payload, topic)
            if event is None:
                event = {
                    k: v
                    for k, v in view.items()
                    if k not in ("text", "micro_cluster", "cluster_id")
                }
            clusters[dim.key] = {
                "text": payload["text"],
                "cluster_id": topic,
                "micro_cluster": payload["mc"],
            }
        if event is None:
            raise NotFound(f"No event '{event_id}' in this project (or not clustered yet)")
        return {"success": True, "event": {**event, "dimensions": clusters}}

    def search(self, project: str, vector: np.ndarray, key: str | None, limit: int) -> dict:
        names = self.dimension(project, key)
        topic_map = self.topic_map(names)
        hits = self.store.search(names.events, vector, limit)
        return {
            "success": True,
            "project": project,
            "dimension": names.dimension,
            "results": [
                {
                    **self._event_view(h.payload, topic_map.topic_of(h.payload["mc"])),
                    "similarity": round(h.score, 4),
                }
                for h in hits
            ],
        }
