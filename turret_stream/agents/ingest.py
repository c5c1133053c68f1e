"""The first agent on the events topic.

For now it keeps per-project counts of what arrived and drops duplicate deliveries of an
event id (a client retry after a timeout, or a redelivery after a worker restart); the
embedding and clustering agents take its place in the pipeline next.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field

import faust

from turret_stream.records import TrackedEvent

log = logging.getLogger(__name__)


@dataclass
class IngestStats:
    """What the agent has seen; read by /readyz and tests."""

    processed: int = 0
    duplicates: int = 0
    per_project: Counter[str] = field(default_factory=Counter)
    last_event_at: float | None = None
    recent_ids: OrderedDict[str, None] = field(default_factory=OrderedDict)
    recent_limit: int = 100_000

    def seen(self, event_id: str) -> bool:
        """Record ``event_id``; True if it was already seen recently."""
        if event_id in self.recent_ids:
            self.recent_ids.move_to_end(event_id)
            return True
        self.recent_ids[event_id] = None
        if len(self.recent_ids) > self.recent_limit:
            self.recent_ids.popitem(last=False)
        return False


def register_ingest_agent(app: faust.App, events: faust.TopicT) -> IngestStats:
    stats = IngestStats()

    @app.agent(events, name="turret.ingest")
    async def count_events(stream: faust.StreamT[TrackedEvent]) -> None:
        async for event in stream:
            if stats.seen(event.event_id):
                stats.duplicates += 1
                continue
            stats.processed += 1
            stats.per_project[event.project] += 1
            stats.last_event_at = time.time()

    return stats
