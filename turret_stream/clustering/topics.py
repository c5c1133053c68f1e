"""Stable, opaque topic ids across reclusterings.

Each reclustering yields a new partition of micro-clusters. Topic ids follow it by overlap
(counted in events): pairs of (new community, old topic) are matched greedily, largest
overlap first, one-to-one. So a topic keeps its id as it grows; when topics merge, the
predecessor with the largest overlap (the larger one) keeps its id and the others are
recorded as merged into it; when a topic splits, the part with the largest overlap keeps
the id and the other parts are new topics recorded as split from it. Ids are never
renumbered or reused.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# History is pruned at each update: every line about a live topic stays (its birth dates
# it), plus the most recent HISTORY_KEEP lines about gone ones; merges and retirements are
# followed (``successor``) for the most recent SUCCESSOR_KEEP gone topics.
HISTORY_KEEP = 2_000
SUCCESSOR_KEEP = 10_000


def new_topic_id() -> str:
    return f"tp_{secrets.token_hex(8)}"


@dataclass
class TopicChange:
    """One line of a topic's history."""

    kind: str  # "born" | "merged" | "split" | "retired"
    topic: str
    at: float
    other: str | None = None  # merged *into* / split *from*


@dataclass
class TopicRegistry:
    """Which micro-clusters make up each live topic, and how topics came to be."""

    # micro-cluster -> topic id, for micro-clusters that belong to a topic
    mapping: dict[int, str] = field(default_factory=dict)
    # retired or merged topic id -> the topic that took its events (None: gone)
    successor: dict[str, str | None] = field(default_factory=dict)
    history: list[TopicChange] = field(default_factory=list)
    make_id: Callable[[], str] = new_topic_id
    # micro-cluster -> topic (None: left its topic) since the last update(): what a
    # topic map head records between reclusterings.
    assigned_since: dict[int, str | None] = field(default_factory=dict)

    def members(self) -> dict[str, set[int]]:
        topics: dict[str, set[int]] = defaultdict(set)
        for mc, topic in self.mapping.items():
            topics[topic].add(mc)
        return dict(topics)

    def update(
        self,
        communities: Iterable[set[int]],
        size: Mapping[int, int],
        now: float,
        min_size: int,
    ) -> list[TopicChange]:
        """Adopt a new partition. Communities with fewer than ``min_size`` events are not
        topics (their micro-clusters have none). Returns what changed."""
        kept = [c for c in communities if sum(size.get(m, 0) for m in c) >= min_size]
        old = self.members()
        overlap: list[tuple[int, str, int]] = []  # (events in common, old topic, community)
        for index, community in enumerate(kept):
            shared: dict[str, int] = defaultdict(int)
            for mc in community:
                topic = self.mapping.get(mc)
                if topic is not None:
                    shared[topic] += size.get(mc, 0)
            for topic, events in shared.items():
                overlap.append((events, topic, index))
        # Largest overlap first; ties broken by the old topic's size, then id (stable).
        old_size = {t: sum(size.get(m, 0) for m in mcs) for t, mcs in old.items()}
        overlap.sort(key=lambda o: (-o[0], -old_size.get(o[1], 0), o[1], o[2]))

        named: dict[int, str] = {}
        taken: set[str] = set()
        for _, topic, index in overlap:
            if index not in named and topic not in taken:
                named[index] = topic
                taken.add(topic)

        changes: list[TopicChange] = []
        # Where each old topic's events went: its largest-overlap community.
        best_home: dict[str, int] = {}
        for _, topic, index in overlap:
            best_home.setdefault(topic, index)
        for index in range(len(kept)):
            if index in named:
                continue
            named[index] = self.make_id()
            parents = [t for _, t, i in overlap if i == index]
            if parents:
                changes.append(TopicChange("split", named[index], now, other=parents[0]))
            else:
                changes.append(TopicChange("born", named[index], now))
        for topic in old:
            if topic in taken:
                continue
            home = best_home.get(topic)
            if home is None:
                changes.append(TopicChange("retired", topic, now))
                self.successor[topic] = None
            else:
                changes.append(TopicChange("merged", topic, now, other=named[home]))
                self.successor[topic] = named[home]

        self.mapping = {mc: named[i] for i, community in enumerate(kept) for mc in community}
        self.assigned_since = {}
        self.history.extend(changes)
        self._prune()
        return changes

    def _prune(self) -> None:
        live = set(self.mapping.values())
        gone = [i for i, c in enumerate(self.history) if c.topic not in live]
        if len(gone) > HISTORY_KEEP:
            drop = set(gone[: len(gone) - HISTORY_KEEP])
            self.history = [c for i, c in enumerate(self.history) if i not in drop]
        while len(self.successor) > SUCCESSOR_KEEP:
            del self.successor[next(iter(self.successor))]

    def created_at(self) -> dict[str, float]:
        """When each topic in the history was born (or split off)."""
        out: dict[str, float] = {}
        for c in self.history:
            if c.kind in ("born", "split"):
                out.setdefault(c.topic, c.at)
        return out

    # -- records --------------------------------------------------------------------------

    def to_record(self) -> dict[str, Any]:
        """The registry as a JSON-ready record (mapping grouped by topic, compactly)."""
        return {
            "topics": {t: sorted(m) for t, m in self.members().items()},
            "successor": list(self.successor.items()),
            "history": [[c.kind, c.topic, c.at, c.other] for c in self.history],
        }

    @classmethod
    def from_record(
        cls, record: Mapping[str, Any], make_id: Callable[[], str] = new_topic_id
    ) -> TopicRegistry:
        return cls(
            mapping={int(mc): t for t, mcs in record["topics"].items() for mc in mcs},
            successor=dict(record["successor"]),
            history=[TopicChange(k, t, at, o) for k, t, at, o in record["history"]],
            make_id=make_id,
        )

    def assign(self, mc: int, topic: str) -> None:
        """Put a new micro-cluster into an existing topic before the next reclustering."""
        self.mapping[mc] = topic
        self.assigned_since[mc] = topic

    def unassign(self, mc: int) -> None:
        """A micro-cluster is gone (absorbed): it has no topic of its own any more."""
        if self.mapping.pop(mc, None) is not None:
            self.assigned_since[mc] = None

    def current(self, topic: str) -> str | None:
        """A topic id as of now: merged topics resolve to the topic that absorbed them."""
        seen: set[str] = set()
        while topic in self.successor and topic not in seen:
            seen.add(topic)
            nxt = self.successor[topic]
            if nxt is None:
                return None
            topic = nxt
        return topic
