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
        self.history.extend(changes)
        return changes

    def assign(self, mc: int, topic: str) -> None:
        """Put a new micro-cluster into an existing topic before the next reclustering."""
        self.mapping[mc] = topic

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
