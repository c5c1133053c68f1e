"""What arrived on the events topic: per-project counts and duplicate deliveries.

The embed agent, the one reader of the events topic, records every event here as it takes
it (a second agent on the topic would cost every event a second stream's dispatch and
acknowledgement). A duplicate is a client retry after a timeout or a redelivery after a
worker restart; it is only counted here: the dimension owners are what drop a repeated
event id (they remember ids across restarts, this does not).
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field

from turret_stream.records import TrackedEvent


@dataclass
class IngestStats:
    """What the worker has taken from the events topic; read by tests."""

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

    def record(self, event: TrackedEvent) -> None:
        """Count one event taken from the events topic."""
        if self.seen(event.event_id):
            self.duplicates += 1
            return
        self.processed += 1
        self.per_project[event.project] += 1
        self.last_event_at = time.time()
