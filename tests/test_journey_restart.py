"""A restart of the journey books from what they wrote: the cells as stored, the one
write whose cells may not have landed, and the active sessions; never the history.

The owner is stopped at each write boundary of its flush (the fault-injection switch
``faults.crash_point``, made to raise here instead of exiting so one test can restart
many times on one real edge store); a new owner restores from the store, the events
since before the crash are delivered again, and every figure must equal the oracle's
(the computation from the stored events). That a kill -9 keeps what the store was given
is the store's write-ahead log's part, tested with real kills in test_crash_consistency.
"""

from __future__ import annotations

from collections import Counter

import pytest

from tests.test_journey_aggregates import (
    MAPS,
    answers,
    corpus,
    deliver,
    owner_stats,
    sessions_store,
)
from turret_stream import journey_store
from turret_stream.clustering.topic_map import TopicMap
from turret_stream.journey_owner import JourneyOwner
from turret_stream.journeys import aggregate, by_session, session_journey

# (boundary, nth write reaching it). Between the members and the cells is where a write
# is half done: there, several points of the run (before and after the map change).
KILLS = [
    ("journey-sessions", 3),
    ("journey-sessions", 9),
    ("journey-members", 3),
    ("journey-members", 6),
    ("journey-members", 9),
    ("journey-members", 14),
    ("journey-cells", 3),
    ("journey-cells", 9),
]


class Killed(Exception):
    pass


@pytest.mark.parametrize(("boundary", "nth"), KILLS)
def test_killed_at_a_write_boundary_the_books_restart_from_their_cells(
    tmp_path, monkeypatch, boundary, nth
):
    store, names, maps = sessions_store(tmp_path)
    second, n2 = MAPS[1]
    events = sorted(corpus(nth, sessions=80), key=lambda e: (e.ts, e.event_id))
    reached = Counter()

    def crash_point(name: str) -> None:
        reached[name] += 1
        if name == boundary and reached[name] == nth:
            raise Killed(name)

    monkeypatch.setattr(journey_store, "crash_point", crash_point)

    def owner() -> JourneyOwner:
        return JourneyOwner(store, 1, map_check_s=0.0, idle_after_s=600.0)

    def feed(o: JourneyOwner, start: int) -> int | None:
        """Deliver events from ``start``; the index the owner was killed at, if it was."""
        for k in range(start, len(events)):
            deliver(store, names, o, events[k])
            if k == len(events) // 2:
                # A merge and a neutral flag half way: the evicted sessions are re-derived
                # and written as part of the flushes around the crash.
                maps.write_head(names, TopicMap.head_record(0, 2, second, {}, n2))
            try:
                if k % 15 == 0:
                    o.flush(force=True)
                if k % 45 == 0:
                    o.catch_up()
            except Killed:
                return k
        o.catch_up()
        return None

    live = owner()
    killed_at = feed(live, 0)
    assert killed_at is not None, "the run never reached the boundary"
    restarted = owner()
    committed = {p for p in (0, 1) if restarted.rows.last_commit(names, p) is not None}
    assert committed, "no write landed before the crash"
    read_whole: list[int] = []
    every_session = journey_store.JourneyStore.session_pages
    with monkeypatch.context() as m:
        # A partition with a landed write reads no session that is neither active nor
        # in the unfinished write (one without, its first write cut short, reads them all).
        def session_pages(self, names, partition):
            read_whole.append(partition)
            return every_session(self, names, partition)

        m.setattr(journey_store.JourneyStore, "session_pages", session_pages)
        for partition in (0, 1):
            restarted._slot(partition, names)
    assert not committed & set(read_whole)
    sessions = len(by_session(events))
    held = sum(len(s.book.sessions) for s in restarted.slots.values())
    assert held < sessions / 2  # the restart did not bring the history into memory
    # Redelivered from before the crash (what the consumer had not committed), then on.
    assert feed(restarted, max(0, killed_at - 30)) is None
    journeys = [session_journey(evs, second.get, 1, n2) for evs in by_session(events).values()]
    expected = aggregate(journeys, now=0.0, dropoff_timeout_s=1.0)
    assert answers(owner_stats(restarted)) == answers(expected)
    # And what the next restart reads back from the store is the same.
    again = owner()
    for partition in (0, 1):
        again._slot(partition, names)
    assert answers(owner_stats(again)) == answers(expected)
    store.close()
