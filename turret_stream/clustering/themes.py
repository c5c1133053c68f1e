"""Themes: a second, coarser level over topics, with the topics' stability rules.

At each reclustering the owner groups the dimension's topics into themes by their centres:
average-linkage agglomerative clustering on cosine distance, cut where the average distance
between two groups' topics passes ``clustering.theme_distance`` (:func:`group_topics`). A
distance cut rather than a number of themes: a new topic joins the theme it is close to and
leaves the others as they were, where a fixed count would reshuffle them. Hysteresis keeps
themes from flickering as centres drift near the cut: two topics that were in the same theme
are taken ``clustering.theme_stickiness`` closer than they are, two that were in different
themes that much farther apart, so a grouping changes only when the topics moved by more
than that. Too much of it lets themes only grow (0.05 chained the SGD turns into one theme
of 46% of the events): see ``benchmarks/themes_quality.py``.

Theme ids follow the grouping exactly as topic ids follow Leiden's communities
(``topics.py``): a theme is the set of micro-clusters of its topics, and new themes are
matched one-to-one with old ones by the events they share, largest overlap first. So a
theme keeps its id while its topics grow, split or move in and out of it; when themes
merge, the larger keeps its id and the others are recorded as merged into it; a theme
that splits keeps its id on its larger part. Ids (``th_`` + 16 hex digits) are never reused.

The owner writes a theme's topics, successors and history into the topic map base
(``topic_map.py``), so readers never decode owner state.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import pdist

from turret_stream.clustering.topics import TopicChange, TopicRegistry

STICKINESS = 0.02


def new_theme_id() -> str:
    return f"th_{secrets.token_hex(8)}"


def group_topics(
    centres: Mapping[str, np.ndarray],
    max_distance: float,
    previous: Mapping[str, str] | None = None,
    stickiness: float = STICKINESS,
) -> list[set[str]]:
    """Topics grouped by average-linkage on cosine distance, cut at ``max_distance``.
    ``previous``: each topic's theme before (the hysteresis in the module docstring).

    >>> import numpy as np
    >>> c = {"a": np.array([1.0, 0.0]), "b": np.array([0.99, 0.14]), "c": np.array([0.0, 1.0])}
    >>> sorted(sorted(g) for g in group_topics(c, 0.3))
    [['a', 'b'], ['c']]
    """
    ids = sorted(centres)
    if len(ids) < 2:
        return [{t} for t in ids]
    matrix = np.asarray([centres[t] for t in ids], dtype=np.float64)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    matrix = matrix / np.where(norms > 0, norms, 1.0)
    distances = pdist(matrix, metric="cosine")
    if previous:
        numbers: dict[str, int] = {}
        codes = np.array(
            [numbers.setdefault(previous[t], len(numbers)) if t in previous else -1 for t in ids]
        )
        i, j = np.triu_indices(len(ids), k=1)  # pdist's pair order
        known = (codes[i] >= 0) & (codes[j] >= 0)
        same = codes[i] == codes[j]
        distances = distances + stickiness * known * np.where(same, -1.0, 1.0)
        distances = np.clip(distances, 0.0, None)
    tree = linkage(distances, method="average")
    groups: dict[int, set[str]] = {}
    for topic, group in zip(ids, fcluster(tree, t=max_distance, criterion="distance"), strict=True):
        groups.setdefault(int(group), set()).add(topic)
    return list(groups.values())


@dataclass
class ThemeRegistry:
    """Which theme each live topic is in, and how themes came to be."""

    of_topic: dict[str, str] = field(default_factory=dict)
    successor: dict[str, str | None] = field(default_factory=dict)
    history: list[TopicChange] = field(default_factory=list)
    make_id: Callable[[], str] = new_theme_id

    def update(
        self,
        groups: Iterable[set[str]],
        members: Mapping[str, set[int]],
        previous: Mapping[int, str],
        size: Mapping[int, int],
        now: float,
    ) -> list[TopicChange]:
        """Adopt a new grouping of the live topics. ``members``: each topic's
        micro-clusters now; ``previous``: each micro-cluster's theme before this
        reclustering (see :meth:`by_micro_cluster`); ``size``: events per micro-cluster."""
        communities = []
        for group in groups:
            mcs: set[int] = set()
            for topic in group:
                mcs |= members.get(topic, set())
            if mcs:
                communities.append((group, mcs))
        # The topics' matching, over micro-clusters of themes (min_size 0: every topic
        # has a theme).
        registry = TopicRegistry(
            mapping=dict(previous),
            successor=self.successor,
            history=self.history,
            make_id=self.make_id,
        )
        changes = registry.update([mcs for _, mcs in communities], size, now, min_size=0)
        self.of_topic = {}
        for group, mcs in communities:
            theme = registry.mapping[next(iter(mcs))]
            self.of_topic.update(dict.fromkeys(group, theme))
        self.successor, self.history = registry.successor, registry.history
        return changes

    def by_micro_cluster(self, topic_of_mc: Mapping[int, str]) -> dict[int, str]:
        """Each micro-cluster's theme, through its topic (``TopicRegistry.mapping``)."""
        return {
            mc: self.of_topic[topic] for mc, topic in topic_of_mc.items() if topic in self.of_topic
        }

    def members(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for topic, theme in sorted(self.of_topic.items()):
            out.setdefault(theme, []).append(topic)
        return out

    # -- records (in the topic map base) --------------------------------------------------

    def to_record(self) -> dict[str, Any]:
        return {
            "themes": self.members(),
            "successor": list(self.successor.items()),
            "history": [[c.kind, c.topic, c.at, c.other] for c in self.history],
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any] | None) -> ThemeRegistry:
        if not record:
            return cls()
        return cls(
            of_topic={t: theme for theme, topics in record["themes"].items() for t in topics},
            successor=dict(record["successor"]),
            history=[TopicChange(k, t, at, o) for k, t, at, o in record["history"]],
        )
