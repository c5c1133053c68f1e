"""The read side: topics and events of a project, as the API serves them.

Reads go to the vector store only (never to a worker's memory), so an API process can run
apart from the workers when the store is a Qdrant server. An event's topic is resolved
through its dimension's current topic map (``clustering/topic_map.py``, the record its
owner writes for readers, cached here by version), so events that arrived as noise show
their topic once their region became a topic, and merges apply to old events too.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np

from turret_stream.catalog import Catalog, DimensionInfo, DimensionNames, dimension_names
from turret_stream.clustering.topic_map import TopicMap, TopicMapReader
from turret_stream.labels.book import Label, LabelBook
from turret_stream.storage import Filter, Record, VectorStore
from turret_stream.trends import Trend, newest_hour, trend

EXAMPLES = 5


class NotFound(Exception):
    """A dimension, topic or event that the project does not have."""


def _hours(record: Record) -> dict[int, int]:
    return {int(h): int(c) for h, c in record.payload.get("hours", [])}


def _trend(record: Record, now_hour: int | None) -> Trend | None:
    if now_hour is None:
        return None
    return trend(_hours(record), record.payload.get("first_seen"), now_hour)


def _trends(topics: list[Record]) -> dict[str, Trend]:
    """Every topic's trend, against the dimension's newest hour (event time)."""
    now_hour = newest_hour(_hours(r) for r in topics)
    out = {}
    for r in topics:
        t = _trend(r, now_hour)
        if t is not None:
            out[r.id] = t
    return out


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
        self, project: str, key: str | None, limit: int, examples: int, sort: str = "size"
    ) -> dict:
        names = self.dimension(project, key)
        info = self.catalog.dimension(project, names.dimension) or {}
        total = info.get("events", 0)
        topics = self._topic_records(names, with_vectors=examples > 0)
        trends = _trends(topics)
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
            self._topic_view(names, r, total, examples, labels.get(r.id), trends.get(r.id))
            for r in topics[:limit]
        ]
        in_topics = sum(r.payload.get("size", 0) for r in topics)
        return {
            "success": True,
            "project": project,
            "dimension": names.dimension,
            "total_events": total,
            "unassigned_events": max(0, total - in_topics),
            "total_clusters": len(topics),
            "clusters": shown,
        }

    def cluster(self, project: str, topic_id: str, key: str | None, examples: int) -> dict:
        names, record = self._find_topic(project, topic_id, key)
        total = (self.catalog.dimension(project, names.dimension) or {}).get("events", 0)
        label = self.labels.labels(names, [topic_id]).get(topic_id)
        now_hour = newest_hour(_hours(r) for r in self._topic_records(names))
        view = self._topic_view(names, record, total, examples, label, _trend(record, now_hour))
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
    ) -> dict[str, Any]:
        p = record.payload
        size = p.get("size", 0)
        view = {
            "id": record.id,
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
                "hourly": [{"hour": _iso(h * 3600), "count": c} for h, c in p.get("hours", [])],
                "daily": [{"day": _iso(d * 86400)[:10], "count": c} for d, c in p.get("days", [])],
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
