"""The stream's journey aggregates against the oracle (the computation from stored
events): first the pure book on random corpora under changing topic maps, then the
sessions actor's owner on a real store filled by a real DimensionOwner."""

from __future__ import annotations

import json
import random
import zlib
from collections import Counter

import pytest

from turret_stream.journey_aggregates import _add_cell
from turret_stream.journey_book import JourneyBook, SessionRuns, derive
from turret_stream.journeys import (
    JourneyEvent,
    JourneyStats,
    aggregate,
    by_session,
    session_journey,
    session_path,
)
from turret_stream.storage import Filter


def corpus(seed: int, sessions: int = 60, mcs: int = 9) -> list[JourneyEvent]:
    """Sessions wandering over micro-clusters (0 is noise), integer-second gaps."""
    rng = random.Random(seed)
    events = []
    for s in range(sessions):
        t = 1_700_000_000 + rng.randrange(0, 3 * 3600)
        mc = rng.randrange(mcs)
        for i in range(rng.randrange(1, 14)):
            if rng.random() < 0.45:
                mc = rng.randrange(mcs)
            events.append(JourneyEvent(f"e{s:03d}-{i:02d}", f"s{s}", f"u{s % 17}", t, mc))
            t += rng.choice([0, 5, 30, 61, 240, 1900])
    return events


# Topic maps: micro-cluster -> topic; the second merges B into A and makes C neutral.
MAPS = [
    ({1: "A", 2: "A", 3: "B", 4: "B", 5: "C", 6: "D", 7: "D", 8: "E"}, frozenset()),
    ({1: "A", 2: "A", 3: "A", 4: "A", 5: "C", 6: "D", 7: "F", 8: "E"}, frozenset({"C"})),
]


def summed(book: JourneyBook) -> JourneyStats:
    stats = JourneyStats()
    users: Counter[str] = Counter()
    for cell in book.cells.values():
        _add_cell(stats, users, cell)
    stats.users = len(users)
    return stats


def owner_stats(owner) -> JourneyStats:
    """The sum of a sessions owner's cells, over its partitions."""
    stats, users = JourneyStats(), Counter()
    for slot in owner.slots.values():
        for cell in slot.book.cells.values():
            _add_cell(stats, users, cell)
    stats.users = len(users)
    return stats


def deliver(store, names, owner, e: JourneyEvent) -> None:
    """One event as the pipeline delivers it: stored, then its assignment observed on the
    partition of its session."""
    from turret_stream.records import TopicAssignment
    from turret_stream.storage import Point

    payload = {"event_id": e.event_id, "session_id": e.session_id, "user_id": e.user_id}
    store.upsert(names.events, [Point(e.event_id, [1.0], {**payload, "ts": e.ts, "mc": e.mc})])
    a = TopicAssignment(
        project="p", dimension="prompt", mc=e.mc, topic=None, received_at=e.ts, **payload
    )
    owner.observe(zlib.crc32(e.session_id.encode()) % 2, a)


def sessions_store(tmp_path):
    """A real edge store with an events collection and the first of ``MAPS`` as the
    dimension's topic map: (store, names, topic map store)."""
    from turret_stream.catalog import dimension_names
    from turret_stream.clustering.topic_map import TopicMap, TopicMapStore
    from turret_stream.storage.edge import EdgeStore

    store = EdgeStore(tmp_path / "qdrant")
    names = dimension_names("p", "prompt")
    store.create_collection(names.events, 1, "dot", indexes={"session_id": "keyword"})
    maps = TopicMapStore(store)
    first, neutral = MAPS[0]
    maps.write_head(names, TopicMap.head_record(0, 1, first, {}, neutral))
    return store, names, maps


def answers(stats: JourneyStats) -> dict:
    return {
        "totals": (stats.events, stats.sessions, stats.users, stats.sessions_with_topic),
        "transitions": stats.transition_table(),
        "follow_ups": stats.follow_ups(),
        "entries": stats.entry_table(),
        "paths": stats.top_paths(1000),
        "back_and_forth": stats.back_and_forth_summary(),
        "median": stats.median_seconds_between_steps,
        "ended": dict(stats.ended),
        "visited": dict(stats.visited),
    }


@pytest.mark.parametrize("minimum", [1, 2, 3])
def test_derived_paths_equal_the_stored_journeys(minimum):
    for seed in range(5):
        for mapping, neutral in MAPS:
            for events in by_session(corpus(seed)).values():
                runs = SessionRuns.from_events(events, lambda _: {})
                steps = session_path(events, mapping.get, minimum, neutral)
                derived = derive(runs, mapping.get, minimum, neutral)
                assert derived.path == tuple(s.topic for s in steps)
                assert derived.step_starts == tuple(s.first_at for s in steps)


@pytest.mark.parametrize("minimum", [1, 2])
def test_a_cell_summed_from_stored_members_equals_the_cell_the_book_kept(minimum):
    """``Cell.add_members`` (a window's boundary cells, counted per distinct path) adds up
    to what ``apply``, session by session, kept: the members as stored (JSON)."""
    from turret_stream.journey_book import Cell

    mapping, neutral = MAPS[1]
    book = JourneyBook(minimum)
    for events in by_session(corpus(3, sessions=200)).values():
        book.put(SessionRuns.from_events(events, lambda _: {}), mapping.get, neutral)
    members: dict = {}
    for c in book.contributions.values():
        members.setdefault(c.key, []).append(json.loads(json.dumps(c.to_member())))
    assert len(members) > 5 and any(len(m) > 10 for m in members.values())
    # The corpus reaches every kind of count: moves with their gaps, back-and-forth.
    assert any(c.back_and_forth and c.gaps for c in book.cells.values())
    for key, cell in book.cells.items():
        summed_cell = Cell()
        summed_cell.add_members(members[key])
        assert summed_cell == cell


@pytest.mark.parametrize("incremental", [False, True])
@pytest.mark.parametrize("minimum", [1, 2])
def test_book_fed_event_by_event_matches_the_oracle_across_a_map_change(minimum, incremental):
    """``incremental``: ``put`` told the map's version, as the sessions owner does (the
    session's derivation so far is kept and each event adds only its difference)."""
    events = corpus(7, sessions=120)
    (first, n1), (second, n2) = MAPS
    book = JourneyBook(minimum)
    arrival = sorted(events, key=lambda e: (e.ts, e.event_id))
    half = len(arrival) // 2
    for k, e in enumerate(arrival):
        mapping, neutral = (first, n1) if k < half else (second, n2)
        runs = book.sessions.get(e.session_id) or SessionRuns(e.session_id, e.user_id)
        assert runs.add(e.ts, e.event_id, e.mc, {"plan": "pro"})
        basis = ("v1" if k < half else "v2") if incremental else None
        book.put(runs, mapping.get, neutral, basis=basis)
    # Sessions last touched before the change still carry the first map's journeys ...
    for _ in book.rederive(second.get, n2, "v2"):
        pass
    # ... until re-derived: then every figure is the oracle's under today's map.
    journeys = [
        session_journey(evs, second.get, minimum, n2) for evs in by_session(events).values()
    ]
    oracle = aggregate(journeys, now=0.0, dropoff_timeout_s=1.0)
    assert answers(summed(book)) == answers(oracle)
    # Serialised cells read back to the same figures.
    from turret_stream.journey_book import Cell

    book.cells = {k: Cell.from_payload(c.to_payload()) for k, c in book.cells.items()}
    assert answers(summed(book)) == answers(oracle)


@pytest.mark.parametrize("minimum", [1, 2, 3])
def test_long_sessions_fed_one_event_at_a_time_keep_exact_cells(minimum):
    """Sessions of hundreds of events that bounce between few topics (returns on most
    steps), cross hours, change segments and pass through noise and a neutral topic:
    after every event, each session's contribution is its path derived from scratch and
    the cells equal the sum of the contributions counted afresh, as ``put`` computes them
    step by step (``DerivedPrefix``, ``Cell.extend``)."""
    from turret_stream.journey_book import Cell

    mapping = {1: "A", 2: "A", 3: "B", 4: "C", 5: "N"}  # 0: noise
    neutral = frozenset({"N"})
    rng = random.Random(minimum)
    book = JourneyBook(minimum)
    clock = {f"s{i}": 1_700_000_000.0 + 1000 * i for i in range(3)}
    mc = dict.fromkeys(clock, 1)
    for k in range(900):
        sid = rng.choice(sorted(clock))
        clock[sid] += rng.choice([1, 5, 30, 400])
        if rng.random() < 0.3:  # runs of a few events, so every minimum makes steps
            mc[sid] = rng.randrange(6)
        runs = book.sessions.get(sid) or SessionRuns(sid, f"u-{sid}")
        plan = "pro" if k < 600 or sid != "s1" else "free"  # s1 turns mixed
        assert runs.add(clock[sid], f"e{k:04d}", mc[sid], {"plan": plan})
        book.put(runs, mapping.get, neutral, basis="v1")
        fresh = book.contribution(runs, mapping.get, neutral)
        assert book.contributions[sid] == fresh
        if k % 50 == 49 or k == 899:
            want: dict = {}
            for c in book.contributions.values():
                want.setdefault(c.key, Cell()).apply(c, 1)
            assert {key: cell for key, cell in book.cells.items() if not cell.empty} == want
            # What a flush writes as each cell's delta: the sessions' changes since the
            # last flush, as retracting each one's written contribution and adding its
            # current one would count them.
            changes: dict = {}
            for s, before in book.written.items():
                if before is not None:
                    changes.setdefault(before.key, Cell()).apply(before, -1)
                now = book.contributions[s]
                changes.setdefault(now.key, Cell()).apply(now, 1)
            deltas = book.cell_deltas(set(book.cells))
            assert {key: d for key, d in deltas.items() if d != Cell()} == {
                key: d for key, d in changes.items() if d != Cell()
            }
            book.take_dirty()
    assert min(c.events for c in book.contributions.values()) > 250
    assert max(len(c.derived.path) for c in book.contributions.values()) > 20
    assert any(cell.back_and_forth_sessions for cell in book.cells.values())


def test_a_replayed_or_late_event_is_refused_for_a_rebuild():
    runs = SessionRuns("s", "u")
    assert runs.add(10.0, "e1", 1, None)
    assert runs.add(20.0, "e2", 1, None)
    assert not runs.add(20.0, "e2", 1, None)  # replay
    assert not runs.add(15.0, "e9", 2, None)  # late
    assert (runs.events, runs.runs) == (2, [[1, 2, 10.0, 20.0]])


def test_the_last_event_redelivered_with_a_time_an_ulp_later_counts_once():
    # A path rebuilt from the event store after a restart held its last event's time an
    # ulp early (the store's float round trip); the redelivered assignment carries the
    # exact time. Found by the kill -9 test: the event was counted twice.
    stamped = 1796017087.0144045  # one ulp from a microsecond tie
    from_store = SessionRuns.from_events(
        [
            JourneyEvent("e1", "s", "u", 1796017086.5, 1),
            JourneyEvent("e2", "s", "u", stamped - 2.4e-7, 2),
        ],
        lambda _: {},
    )
    assert not from_store.add(stamped, "e2", 2, None)
    assert from_store.events == 2


def test_sessions_with_changing_segments_are_mixed_and_combinations_are_capped():
    book = JourneyBook(1, max_segment_keys=2)
    topic = {1: "A"}.get
    for i, plan in enumerate(["free", "pro", "team"]):
        runs = SessionRuns(f"s{i}", "u")
        runs.add(1.0, "e", 1, {"plan": plan})
        book.put(runs, topic, frozenset())
    mixed = SessionRuns("m", "u")
    mixed.add(1.0, "a", 1, {"plan": "free"})
    mixed.add(2.0, "b", 1, {"plan": "pro"})
    book.put(mixed, topic, frozenset())
    assert sorted(k.segments for k in book.cells) == [
        "plan=s:free",
        "plan=s:pro",
        "~mixed",
        "~other",
    ]


def test_idle_sessions_leave_memory_and_every_figure_stays_exact(tmp_path):
    """With eviction on, sessions idle for the drop-off timeout leave the owner's memory
    (their contributions stay in the cells); a session that comes back, a topic map
    change and a restart still give the oracle's figures. Real edge store."""
    from turret_stream.clustering.topic_map import TopicMap
    from turret_stream.journey_owner import JourneyOwner

    store, names, maps = sessions_store(tmp_path)
    (first, n1), (second, n2) = MAPS
    events = corpus(11, sessions=80)  # gaps of up to 1,900 s: sessions come back

    def owner() -> JourneyOwner:
        return JourneyOwner(store, 1, map_check_s=0.0, idle_after_s=600.0)

    def oracle(mapping, neutral) -> JourneyStats:
        journeys = [
            session_journey(evs, mapping.get, 1, neutral) for evs in by_session(events).values()
        ]
        return aggregate(journeys, now=0.0, dropoff_timeout_s=1.0)

    def in_memory(o: JourneyOwner) -> int:
        return sum(len(slot.book.sessions) for slot in o.slots.values())

    live = owner()
    for k, e in enumerate(sorted(events, key=lambda e: (e.ts, e.event_id))):
        deliver(store, names, live, e)
        if k % 15 == 0:
            live.flush(force=True)  # written sessions idle for 600 s leave memory
    live.catch_up()
    sessions = len(by_session(events))
    assert in_memory(live) < sessions / 2
    assert answers(owner_stats(live)) == answers(oracle(first, n1))
    # A merge and a neutral flag: evicted sessions are re-derived from their stored rows.
    maps.write_head(names, TopicMap.head_record(0, 2, second, {}, n2))
    live.catch_up()
    assert answers(owner_stats(live)) == answers(oracle(second, n2))
    # A restart reads every stored session and keeps only the active ones.
    again = owner()
    for partition in (0, 1):
        again._slot(partition, names)
    assert in_memory(again) < sessions / 2
    assert answers(owner_stats(again)) == answers(oracle(second, n2))
    # A change that moves one micro-cluster reads back only the sessions through it.
    third = {**second, 8: "G"}
    maps.write_head(names, TopicMap.head_record(0, 3, third, {}, n2))
    again.catch_up()
    through_8 = [s for s, evs in by_session(events).items() if any(e.mc == 8 for e in evs)]
    assert 0 < len(through_8) < sessions
    assert sum(slot.rederive_read for slot in again.slots.values()) == len(through_8)
    assert answers(owner_stats(again)) == answers(oracle(third, n2))
    store.close()


def test_sessions_written_by_the_previous_format_are_rewritten_and_still_re_derived(
    tmp_path,
):
    """Rows written before sessions carried their micro-clusters (journey_store FORMAT 1:
    no ``mcs``, a commit without ``format``): the first start rebuilds and rewrites them,
    so a later change that moves one micro-cluster still finds every session through it."""
    from turret_stream.clustering.topic_map import TopicMap
    from turret_stream.journey_owner import JourneyOwner
    from turret_stream.journey_store import CELLS, SESSIONS
    from turret_stream.storage import Point

    store, names, maps = sessions_store(tmp_path)
    (first, n1), _ = MAPS
    events = corpus(5, sessions=50)
    live = JourneyOwner(store, 1, map_check_s=0.0, idle_after_s=600.0)
    for e in sorted(events, key=lambda e: (e.ts, e.event_id)):
        deliver(store, names, live, e)
    live.flush(force=True)
    # Back to the previous format, as its code wrote it.
    rows, offset = [], None
    while True:
        page, offset = store.scroll(SESSIONS, limit=1000, offset=offset)
        rows += [
            Point(r.id, [1.0], {k: v for k, v in r.payload.items() if k != "mcs"}) for r in page
        ]
        if offset is None:
            break
    store.upsert(SESSIONS, rows)
    commits, _ = store.scroll(CELLS, filter=Filter(must={"slug": names.slug + "~commit"}))
    store.upsert(
        CELLS,
        [
            Point(r.id, [1.0], {k: v for k, v in r.payload.items() if k != "format"})
            for r in commits
        ],
    )
    again = JourneyOwner(store, 1, map_check_s=0.0, idle_after_s=600.0)
    for partition in (0, 1):
        again._slot(partition, names)
    again.flush(force=True)
    moved = {**first, 8: "G"}
    maps.write_head(names, TopicMap.head_record(0, 2, moved, {}, n1))
    again.catch_up()
    journeys = [session_journey(evs, moved.get, 1, n1) for evs in by_session(events).values()]
    assert answers(owner_stats(again)) == answers(
        aggregate(journeys, now=0.0, dropoff_timeout_s=1.0)
    )
    store.close()


def test_a_kept_sum_follows_rewritten_cells_as_a_fresh_sum_does(tmp_path):
    """A reader keeps its sum between requests and applies only what changed in the cells
    a flush rewrote (the write's delta, else the difference of the cells decoded); after
    every flush every figure, the drop-offs of cells whose hour is past the boundary
    included, equals a fresh reader's sum. Real edge store."""
    from turret_stream.journey_aggregates import CellReader
    from turret_stream.journey_owner import JourneyOwner

    store, names, _ = sessions_store(tmp_path)
    events = sorted(corpus(5, sessions=80), key=lambda e: (e.ts, e.event_id))
    live = JourneyOwner(store, 1, map_check_s=0.0)
    now = events[len(events) // 2].ts  # the drop-off boundary inside the stream

    def read(reader: CellReader) -> dict:
        found = reader.stats(
            names,
            since=None,
            until=None,
            segments=[],
            now=now,
            dropoff_timeout_s=1800.0,
            exact=lambda ids: [],
        )
        assert found is not None
        stats, _ = found
        return {**answers(stats), "dropped": dict(stats.dropped)}

    # ``kept`` reads after every flush: most rewritten cells come as the write's delta.
    # ``behind`` reads after every other one: a delta from a seq it does not hold is of
    # no use, it decodes those cells. Halfway the owner restarts: its first writes carry
    # no deltas (it does not know the seqs the cells were written at).
    kept, behind = CellReader(store), CellReader(store)
    reads = 0
    for k, e in enumerate(events):
        deliver(store, names, live, e)
        if k == len(events) // 2:
            live.flush(force=True)
            live = JourneyOwner(store, 1, map_check_s=0.0)
        if k % 15 == 14:
            live.flush(force=True)
            fresh = read(CellReader(store))
            assert read(kept) == fresh
            if reads % 2:
                assert read(behind) == fresh
            reads += 1
    assert reads > 10 and read(kept)["dropped"]
    assert kept.deltas_applied > 2 * behind.deltas_applied > 0
    store.close()


@pytest.mark.parametrize("member_cache", [None, 3])
def test_a_window_cuts_sessions_between_runs_from_their_stored_paths(
    tmp_path, monkeypatch, member_cache
):
    """A time window that cuts sessions is answered exactly: where its bound falls between
    two runs of a session's events, from the session's stored path; inside a run, from the
    session's events. Every figure equals the oracle's, for windows at many cut points,
    also when the cut cells' members do not fit the reader's cache (``member_cache``)."""
    from turret_stream import journey_aggregates
    from turret_stream.catalog import Catalog

    if member_cache is not None:
        monkeypatch.setattr(journey_aggregates, "MEMBER_CACHE_SESSIONS", member_cache)
    from turret_stream.journey_owner import JourneyOwner
    from turret_stream.journey_queries import JourneyFilter, JourneyQueries
    from turret_stream.settings import JourneySettings

    store, names, _ = sessions_store(tmp_path)
    Catalog(store).save_dimension("p", "prompt", "text", True, {}, 1)
    events = sorted(corpus(3, sessions=80), key=lambda e: (e.ts, e.event_id))
    live = JourneyOwner(store, 1, map_check_s=0.0)
    for e in events:
        deliver(store, names, live, e)
    live.flush(force=True)
    settings = JourneySettings(min_switch_events=1)
    cells = JourneyQueries(store, settings=settings)
    oracle = JourneyQueries(store, settings=settings, use_aggregates=False)
    from_events: list[str] = []
    load = JourneyQueries.load

    def counted_load(self, *args, **exact):
        if self is cells:
            from_events.extend(exact.get("session_id", ()))
        return load(self, *args, **exact)

    monkeypatch.setattr(JourneyQueries, "load", counted_load)
    start, end = events[0].ts, events[-1].ts
    windows = 0
    for share in (0.2, 0.35, 0.5, 0.65, 0.8):
        t = start + share * (end - start) + 0.5
        now = t + 900.0  # the drop-off boundary (30 min) inside the stream too
        for flt in (
            JourneyFilter(since=t),
            JourneyFilter(until=t),
            JourneyFilter(since=t - 2000.0, until=t),
        ):
            _, kept = cells.stats("p", None, flt, now=now)
            _, exact = oracle.stats("p", None, flt, now=now)
            assert {**answers(kept), "dropped": dict(kept.dropped)} == {
                **answers(exact),
                "dropped": dict(exact.dropped),
            }
            windows += 1
    # Both ways were taken: some cut sessions' events were read, most were not.
    cut_sessions = len(by_session(events))  # an upper bound per window
    assert 0 < len(from_events) < windows * cut_sessions / 4
    reader = cells.cells
    assert reader is not None
    held = [len(m) for _, m in reader._members.values()]
    assert reader._members_held == sum(held)
    if member_cache is not None:
        assert len(held) == 1  # over the bound: only the last cell read stays
    else:
        assert len(held) > 1
    store.close()
