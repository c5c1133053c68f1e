"""Where topic labels are kept: one writer per collection.

``<slug>.labels`` holds the automatic labels (offline c-TF-IDF, then the LLM's), written only
by the labeller; ``<slug>.manual_labels`` holds labels a person set, written only by the
API. Readers take a manual label over an automatic one, so automation can never overwrite
what a person chose. Each label keeps its history with timestamps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from turret_stream.catalog import DimensionNames
from turret_stream.records import decode_vector, encode_vector
from turret_stream.storage import Point, VectorStore

_UNIT = [1.0]
HISTORY_LIMIT = 20


@dataclass(frozen=True)
class Label:
    name: str
    description: str
    source: str  # "manual" | "llm" | "fallback"
    set_at: float
    model: str | None = None
    # The labeller's reasons: which names competed, their scores and why this one won.
    why: dict[str, Any] | None = None

    def view(self) -> dict[str, Any]:
        out = {
            "name": self.name,
            "description": self.description,
            "source": self.source,
            "model": self.model,
            "set_at": self.set_at,
        }
        if self.why is not None:
            out["why"] = self.why
        return out


def auto_collection(names: DimensionNames) -> str:
    return f"{names.slug}.labels"


def manual_collection(names: DimensionNames) -> str:
    return f"{names.slug}.manual_labels"


class LabelBook:
    def __init__(self, store: VectorStore) -> None:
        self.store = store

    def _ensure(self, collection: str) -> None:
        if not self.store.has_collection(collection):
            self.store.create_collection(collection, 1, "dot")

    def _read(self, collection: str, topics: list[str]) -> dict[str, dict[str, Any]]:
        if not topics or not self.store.has_collection(collection):
            return {}
        return {r.id: r.payload for r in self.store.retrieve(collection, topics)}

    def labels(self, names: DimensionNames, topics: list[str]) -> dict[str, Label]:
        """The label to show for each topic: manual first, then automatic."""
        out: dict[str, Label] = {}
        for collection in (auto_collection(names), manual_collection(names)):
            for topic, p in self._read(collection, topics).items():
                if p.get("name"):
                    out[topic] = Label(
                        p["name"],
                        p.get("description", ""),
                        p["source"],
                        p["set_at"],
                        p.get("model"),
                        p.get("why"),
                    )
        return out

    def automatic(self, names: DimensionNames, topics: list[str]) -> dict[str, dict[str, Any]]:
        """The labeller's own records (with the basis each label was made on)."""
        records = self._read(auto_collection(names), topics)
        for payload in records.values():
            basis = payload.get("basis")
            if basis and isinstance(basis.get("centre"), str):
                basis["centre"] = decode_vector(basis["centre"]).tolist()
        return records

    def manual_topics(self, names: DimensionNames, topics: list[str]) -> set[str]:
        return {t for t, p in self._read(manual_collection(names), topics).items() if p.get("name")}

    def _write(
        self, collection: str, labels: list[tuple[str, Label, dict[str, Any] | None]]
    ) -> None:
        """Each (topic, label, extra fields), appended to the topic's history: one read and
        one write for all of them (a scan names dozens of topics at once)."""
        if not labels:
            return
        self._ensure(collection)
        previous = self._read(collection, list(dict.fromkeys(t for t, _, _ in labels)))
        points: dict[str, Point] = {}
        for topic, label, extra in labels:
            history = list(previous.get(topic, {}).get("history", []))
            history.append(label.view())
            payload = {**label.view(), **(extra or {}), "history": history[-HISTORY_LIMIT:]}
            previous[topic] = payload  # a topic given twice keeps both in its history
            points[topic] = Point(topic, _UNIT, payload)
        self.store.upsert(collection, list(points.values()))

    def set_automatic(
        self, names: DimensionNames, topic: str, label: Label, basis: dict[str, Any]
    ) -> None:
        """Written by the labeller only. ``basis``: the topic's size and centre when named."""
        self.set_automatic_many(names, [(topic, label, basis)])

    def set_automatic_many(
        self, names: DimensionNames, labels: list[tuple[str, Label, dict[str, Any]]]
    ) -> None:
        """``set_automatic`` for several topics (topic, label, basis) in one write."""
        self._write(
            auto_collection(names), [(t, label, {"basis": _packed(b)}) for t, label, b in labels]
        )

    def set_manual(self, names: DimensionNames, topic: str, name: str, description: str) -> Label:
        """Written by the API only."""
        label = Label(name, description, "manual", time.time())
        self._write(manual_collection(names), [(topic, label, None)])
        return label

    def history(self, names: DimensionNames, topic: str) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        for collection in (auto_collection(names), manual_collection(names)):
            entries.extend(self._read(collection, [topic]).get(topic, {}).get("history", []))
        return sorted(entries, key=lambda e: e["set_at"])


def _packed(basis: dict[str, Any]) -> dict[str, Any]:
    """The basis as stored: its centre as one base64 text. The store converts a payload
    value by value, and 384 floats cost about 1.5 ms a label, most of a labeller scan's
    writes; ``automatic`` gives the centre back as floats (older lists are read as they
    are)."""
    centre = basis.get("centre")
    if centre is None or isinstance(centre, str):
        return basis
    return {**basis, "centre": encode_vector(centre)}
