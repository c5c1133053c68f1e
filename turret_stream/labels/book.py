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
        return self._read(auto_collection(names), topics)

    def manual_topics(self, names: DimensionNames, topics: list[str]) -> set[str]:
        return {t for t, p in self._read(manual_collection(names), topics).items() if p.get("name")}

    def _write(
        self, collection: str, topic: str, label: Label, extra: dict[str, Any] | None = None
    ) -> None:
        self._ensure(collection)
        previous = self._read(collection, [topic]).get(topic, {})
        history = list(previous.get("history", []))
        history.append(label.view())
        payload = {**label.view(), **(extra or {}), "history": history[-HISTORY_LIMIT:]}
        self.store.upsert(collection, [Point(topic, _UNIT, payload)])

    def set_automatic(
        self, names: DimensionNames, topic: str, label: Label, basis: dict[str, Any]
    ) -> None:
        """Written by the labeller only. ``basis``: the topic's size and centre when named."""
        self._write(auto_collection(names), topic, label, {"basis": basis})

    def set_manual(self, names: DimensionNames, topic: str, name: str, description: str) -> Label:
        """Written by the API only."""
        label = Label(name, description, "manual", time.time())
        self._write(manual_collection(names), topic, label)
        return label

    def history(self, names: DimensionNames, topic: str) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        for collection in (auto_collection(names), manual_collection(names)):
            entries.extend(self._read(collection, [topic]).get(topic, {}).get("history", []))
        return sorted(entries, key=lambda e: e["set_at"])
