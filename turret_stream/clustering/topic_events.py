"""What a dimension's owner tells the world about its topics, as it happens.

The owner hands this module the topic changes of a reclustering and the topics a batch
touched; it answers with ``TopicEvent`` records for the owner to publish:

- ``topic_created`` (a topic born), ``topic_split`` (a part of a topic became its own
  topic), ``topic_merged`` (a topic was absorbed by another), from the reclustering;
- ``topic_spiking``, when the current hour's count of a topic passes ``trends.spike``
  (the same Poisson test as the ``spiking`` tag), evaluated on the counts as they arrive.
  Once per spike *episode*: a topic that keeps spiking hour after hour is announced once;
  it is announced again only after a whole hour without spiking; a part split off a
  topic shares its episodes (a burst that splits its topic is one alarm). The episode state is
  in memory: after a worker restart an ongoing spike may be announced once more.

Time is event time (the newest event's hour), as for the trend tags.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from turret_stream.clustering.topics import TopicChange
from turret_stream.records import TopicEvent
from turret_stream.trends import HOUR, spike

KINDS = ("topic_created", "topic_merged", "topic_split", "topic_labelled", "topic_spiking")
EXAMPLES = 3
MAX_LINEAGE = 10_000
MAX_LINEAGE_DEPTH = 16
_CHANGE_KIND = {"born": "topic_created", "split": "topic_split", "merged": "topic_merged"}


@dataclass(frozen=True)
class TopicView:
    """What an event says of a topic: its size, label, examples, counts."""

    size: int
    label: str | None
    examples: list[str]
    hours: Mapping[int, int]
    first_seen: float | None


# Looks up the topics named (one call per batch of events, so one store read).
Describe = Callable[[Sequence[str]], Mapping[str, TopicView]]


def new_event(
    project: str, dimension: str, kind: str, topic: str, view: TopicView | None, **fields: object
) -> TopicEvent:
    return TopicEvent(
        id=f"te_{uuid.uuid4().hex}",
        kind=kind,
        project=project,
        dimension=dimension,
        topic=topic,
        label=view.label if view else None,
        size=view.size if view else 0,
        examples=list(view.examples[:EXAMPLES]) if view else [],
        at=time.time(),
        **fields,
    )


class TopicAnnouncer:
    """One per DimensionOwner: turns its topic changes and counts into TopicEvents."""

    def __init__(self, project: str, dimension: str) -> None:
        self.project = project
        self.dimension = dimension
        # episode (a topic, or the topic its ancestors split off) -> the last hour
        # (index) it tested spiking
        self._spiking: dict[str, int] = {}
        # topic -> the topic it split off (the most recent MAX_LINEAGE splits)
        self._parent: dict[str, str] = {}

    def _episode(self, topic: str) -> str:
        for _ in range(MAX_LINEAGE_DEPTH):
            parent = self._parent.get(topic)
            if parent is None:
                break
            topic = parent
        return topic

    def changes(
        self, changes: Iterable[TopicChange], describe: Describe, event_time: float | None
    ) -> list[TopicEvent]:
        """Events for a reclustering's births, splits and merges (retirements are silent:
        a topic that faded away is no news)."""
        wanted = [c for c in changes if c.kind in _CHANGE_KIND]
        if not wanted:
            return []
        views = describe(sorted({c.topic for c in wanted} | {c.other for c in wanted if c.other}))
        out = []
        hour = int(event_time // HOUR) if event_time is not None else None
        for c in wanted:
            kind = _CHANGE_KIND[c.kind]
            view = views.get(c.topic)
            if kind == "topic_merged":
                # The gone topic's label; the size and examples of where it went.
                into = views.get(c.other) if c.other else None
                label = view.label if view else None
                event = new_event(
                    self.project,
                    self.dimension,
                    kind,
                    c.topic,
                    into or view,
                    merged_into=c.other,
                    event_time=event_time,
                )
                event.label = label
                self._spiking.pop(c.topic, None)
                out.append(event)
                continue
            fields: dict[str, object] = {
                "event_time": event_time,
                "first_seen": view.first_seen if view else None,
                "this_hour": view.hours.get(hour, 0) if view and hour is not None else None,
            }
            if kind == "topic_split":
                fields["split_from"] = c.other
                # A part split off a topic shares its spike episodes (one burst that
                # splits its topic is one alarm, not two).
                if c.other:
                    self._parent[c.topic] = c.other
                    while len(self._parent) > MAX_LINEAGE:
                        del self._parent[next(iter(self._parent))]
            out.append(new_event(self.project, self.dimension, kind, c.topic, view, **fields))
        return out

    def counts(
        self,
        topics: Mapping[str, tuple[Mapping[int, int], float | None]],
        event_time: float,
        describe: Describe,
    ) -> list[TopicEvent]:
        """``topic_spiking`` for the touched topics (hourly counts, first seen) whose
        current hour fails the spike test, once per episode."""
        now_hour = int(event_time // HOUR)
        found = {}
        for topic, (hours, first_seen) in topics.items():
            result = spike(hours, first_seen, now_hour)
            if result is None:
                continue
            episode = self._episode(topic)
            last = self._spiking.get(episode)
            self._spiking[episode] = now_hour
            if last is None or last < now_hour - 1:
                found[topic] = result
        self._forget_before(now_hour - 1)
        if not found:
            return []
        views = describe(sorted(found))
        return [
            new_event(
                self.project,
                self.dimension,
                "topic_spiking",
                topic,
                views.get(topic),
                event_time=event_time,
                this_hour=s.this_hour,
                baseline_per_hour=s.baseline_per_hour,
                p_value=s.p_value,
            )
            for topic, s in found.items()
        ]

    def _forget_before(self, hour: int) -> None:
        if len(self._spiking) > 64:
            self._spiking = {t: h for t, h in self._spiking.items() if h >= hour}
