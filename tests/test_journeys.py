"""Journeys: the pure path and aggregate functions, then the API on a real store filled by
a real DimensionOwner (real embedding model, no Kafka)."""

from __future__ import annotations

import time
import zlib
from datetime import UTC, datetime

import pytest

from turret_stream.catalog import Catalog
from turret_stream.clustering.owner import DimensionOwner
from turret_stream.clustering.topic_map import TopicMapStore
from turret_stream.embedding import open_embedder
from turret_stream.http import create_app
from turret_stream.http.keys import JOURNEYS
from turret_stream.journey_owner import JourneyOwner
from turret_stream.journey_queries import JourneyFilter, JourneyQueries
from turret_stream.journeys import (
    JourneyEvent,
    SessionJourney,
    aggregate,
    session_journey,
    session_path,
)
from turret_stream.keys import KeyStore
from turret_stream.queries import Queries
from turret_stream.records import EmbeddedText, TopicAssignment, encode_vector
from turret_stream.settings import Settings
from turret_stream.storage.edge import EdgeStore

# -- pure functions ---------------------------------------------------------------------

TOPICS = {1: "A", 2: "B", 3: "C"}  # micro-cluster -> topic; mc 0 is noise


def topic_of(mc: int) -> str | None:
    return TOPICS.get(mc)


def events(topics: str, session: str = "s", user: str = "u", t0: float = 0.0, gap: float = 10):
    """One event per letter ('.' is noise), ``gap`` seconds apart."""
    mcs = {"A": 1, "B": 2, "C": 3, ".": 0}
    return [
        JourneyEvent(f"{session}-{i:03d}", session, user, t0 + i * gap, mcs[ch])
        for i, ch in enumerate(topics)
    ]


def path(topics: str, minimum: int = 2) -> list[str]:
    return [s.topic for s in session_path(events(topics), topic_of, minimum)]


def test_a_b_a_with_times_counts_and_ids():
    steps = session_path(events("AABBAA"), topic_of, 2)
    assert [s.topic for s in steps] == ["A", "B", "A"]
    assert [(s.first_at, s.last_at, s.events) for s in steps] == [
        (0, 10, 2),
        (20, 30, 2),
        (40, 50, 2),
    ]
    assert steps[1].event_ids == ("s-002", "s-003")


def test_input_order_does_not_matter_and_ties_break_by_event_id():
    shuffled = list(reversed(events("AABBAA")))
    assert [s.topic for s in session_path(shuffled, topic_of, 2)] == ["A", "B", "A"]
    same_time = [
        JourneyEvent("e2", "s", "u", 5.0, 2),
        JourneyEvent("e1", "s", "u", 5.0, 1),
    ]
    assert [s.topic for s in session_path(same_time, topic_of, 1)] == ["A", "B"]


def test_first_topic_bearing_event_is_the_entry_even_alone():
    assert path("..BAAA") == ["B", "A"]
    steps = session_path(events("..BAAA"), topic_of, 2)
    assert steps[0].first_at == 20  # leading noise is in no step


def test_a_short_excursion_does_not_split_with_2_but_does_with_1():
    assert path("AABAA", minimum=2) == ["A"]
    assert path("AABAA", minimum=1) == ["A", "B", "A"]
    # The excursion stays part of the step: it counts in it.
    [step] = session_path(events("AABAA"), topic_of, 2)
    assert step.events == 5


def test_noise_never_starts_or_ends_a_step():
    assert path("A.A", minimum=1) == ["A"]
    steps = session_path(events("A..B.B..A.A.."), topic_of, 2)
    assert [s.topic for s in steps] == ["A", "B", "A"]
    # Noise between consecutive events of B counts in B; noise between steps in none.
    assert [(s.first_at, s.last_at, s.events) for s in steps] == [
        (0, 0, 1),
        (30, 50, 3),
        (80, 100, 3),
    ]
    assert session_path(events("...."), topic_of, 1) == []


def test_the_switch_needs_consecutive_events_in_one_same_topic():
    assert path("AABCBCAA") == ["A"]  # B and C alternate: no evidence for either
    assert path("AABCCA") == ["A", "C"]  # one A after C C: stays in C
    assert path("AAB.BA") == ["A", "B"]  # noise does not break a run
    assert path("AABB", minimum=3) == ["A"]
    # The switch happens at the first event of the run.
    steps = session_path(events("AACBBB"), topic_of, 3)
    assert [(s.topic, s.first_at) for s in steps] == [("A", 0), ("B", 30)]
    assert steps[0].last_at == 20  # the lone C stayed in A


def journey(topics: str, session: str, user: str = "u", t0: float = 0.0) -> SessionJourney:
    return session_journey(events(topics, session, user, t0), topic_of, 2)


def test_transitions_probabilities_and_follow_ups():
    stats = aggregate(
        [
            journey("AABB", "s1"),
            journey("AACC", "s2"),
            journey("AABB", "s3"),
            journey("BBAA", "s4"),
        ],
        now=1e6,
        dropoff_timeout_s=1800,
    )
    assert stats.transitions == {("A", "B"): 2, ("A", "C"): 1, ("B", "A"): 1}
    assert stats.probability("A", "B") == pytest.approx(2 / 3, abs=1e-4)
    assert stats.probability("B", "A") == 1.0
    assert stats.probability("C", "A") == 0.0
    table = {(r["from"], r["to"]): r for r in stats.transition_table()}
    assert table[("A", "C")]["probability"] == pytest.approx(1 / 3, abs=1e-4)
    assert [f["topic"] for f in stats.follow_ups()["A"]] == ["B", "C"]
    assert stats.total_transitions == 4


def test_entries_paths_and_unique_users():
    stats = aggregate(
        [
            journey("AABB", "s1", "u1"),
            journey("..AA", "s2", "u1"),
            journey("BB", "s3", "u2"),
            journey("...", "s4", "u3"),  # noise only: a session and a user, no journey
        ],
        now=0,
        dropoff_timeout_s=1800,
    )
    assert (stats.sessions, stats.users, stats.sessions_with_topic) == (4, 3, 3)
    assert stats.events == 4 + 4 + 2 + 3
    assert stats.entry_table() == [
        {"topic": "A", "sessions": 2, "share": 0.6667},
        {"topic": "B", "sessions": 1, "share": 0.3333},
    ]
    assert stats.top_paths(2) == [
        {"path": ["A"], "sessions": 1, "share": 0.3333},
        {"path": ["B"], "sessions": 1, "share": 0.3333},
    ]


def test_back_and_forth_rate_and_pairs():
    stats = aggregate(
        [
            journey("AABBAA", "s1"),
            journey("AABBAABBAA", "s2"),  # A-B-A twice: the session counts once
            journey("BBAABB", "s3"),
            journey("AABBCC", "s4"),
        ],
        now=0,
        dropoff_timeout_s=1800,
    )
    summary = stats.back_and_forth_summary()
    assert summary["sessions"] == 3
    assert summary["rate"] == 0.75
    assert summary["pairs"] == [
        {"topic": "A", "via": "B", "sessions": 2},
        {"topic": "B", "via": "A", "sessions": 2},
    ]


def test_median_seconds_between_steps():
    stats = aggregate(
        [
            journey("AABB", "s1"),  # A at 0, B at 20
            session_journey(events("AAAABB", "s2", gap=10), topic_of, 2),  # 40
            session_journey(events("AABBBBBBAA", "s3", gap=10), topic_of, 2),  # 20, 60
        ],
        now=0,
        dropoff_timeout_s=1800,
    )
    assert stats.median_seconds_between_steps == 30  # of 20, 40, 20, 60
    table = {(r["from"], r["to"]): r["median_seconds"] for r in stats.transition_table()}
    assert table == {("A", "B"): 20, ("B", "A"): 60}
    assert aggregate([], now=0, dropoff_timeout_s=1).median_seconds_between_steps is None


def test_dropoffs_need_the_timeout_to_pass():
    now = 10_000.0
    sessions = [
        journey("AABB", "old1", t0=now - 5000),  # last event now - 4970: dropped at B
        journey("AABB", "recent", t0=now - 100),  # still going
        journey("BBAA", "old2", t0=now - 5000),  # dropped at A
        journey("AA", "edge", t0=now - 1810),  # last event now - 1800: not yet
    ]
    stats = aggregate(sessions, now=now, dropoff_timeout_s=1800)
    rows = {r.topic: r for r in stats.dropoff_table()}
    assert (rows["B"].dropped, rows["B"].ended_here, rows["B"].visited) == (1, 2, 3)
    assert rows["B"].share_of_ended == 0.5
    assert rows["B"].share_of_visited == 0.3333
    assert rows["B"].share_of_dropoffs == 0.5
    assert (rows["A"].dropped, rows["A"].ended_here, rows["A"].visited) == (1, 2, 4)
    shorter = aggregate(sessions, now=now, dropoff_timeout_s=60)
    assert sum(shorter.dropped.values()) == 4


# -- the API on a real store ---------------------------------------------------------------

PRICING = [
    "How much does the Pro plan cost per month?",
    "What is the monthly price of the Pro plan?",
    "Is there a discount if I pay yearly instead of monthly?",
    "How much does the Team plan cost per month?",
    "Can you tell me the pricing for the team plan?",
    "Is the monthly subscription fee cheaper with annual billing?",
]
FEATURES = [
    "Does the app support exporting reports to PDF?",
    "Can I export my dashboard reports as PDF files?",
    "Is it possible to export a report to PDF or Excel?",
    "How do I download my reports as a PDF?",
    "Can reports be exported to CSV or PDF?",
    "Does the reporting feature let me export charts to PDF?",
]
PASSWORD = [
    "How do I reset my password?",
    "I forgot my login credentials",
    "Can't log in, forgot my password",
    "How can I change my password?",
    "Password reset link not working",
    "I need to recover my account password",
]
# The world spans 40 minutes: a single-event micro-cluster idle for longer than
# clustering.cleanup_interval_s (1 h) is cleaned up, which is not what these tests are about.
BLOCK = 600.0
NOW = round(time.time(), 6)  # as /track stamps events: to the microsecond the store keeps
BASE = NOW - 4 * BLOCK
DROPOFF_S = 600.0
# project, session, user, platform, first event time, groups: P pricing, F features, W password
# (events of a session are 60 s apart)
SESSIONS = [
    ("acme", "s-abab", "u1", "mobile", BASE, "PPFFPP"),
    ("acme", "s-2", "u1", "web", BASE + BLOCK, "FFPP"),
    ("acme", "s-3", "u2", "web", BASE + BLOCK + 200, "WWWWWW"),
    ("acme", "s-4", "u3", "mobile", BASE + 2 * BLOCK, "PPFF"),
    ("acme", "s-5", "u5", "web", BASE + 2 * BLOCK + 300, "PPFF"),
    ("acme", "s-live", "u4", "mobile", NOW - 120, "PP"),  # idle for less than DROPOFF_S
    ("other", "s-abab", "u1", "web", BASE, "WWWWW"),
]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A real store with acme's and other's events placed by their owners."""
    data = tmp_path_factory.mktemp("journeys")
    settings = Settings(data_dir=data, journeys={"dropoff_timeout_s": DROPOFF_S})
    embedder = open_embedder()
    texts = {"P": PRICING, "F": FEATURES, "W": PASSWORD}
    vectors = {g: embedder.embed(ts) for g, ts in texts.items()}
    store = EdgeStore(data / "qdrant")
    items: dict[str, list[EmbeddedText]] = {"acme": [], "other": []}
    group_of: dict[str, str] = {}
    used = {g: 0 for g in texts}
    for project, session, user, platform, t0, groups in SESSIONS:
        for i, g in enumerate(groups):
            k = used[g] % len(texts[g])
            used[g] += 1
            event_id = f"evt_{project}_{session}_{i}"
            group_of[event_id] = g
            items[project].append(
                EmbeddedText(
                    event_id=event_id,
                    project=project,
                    dimension="prompt",
                    text=texts[g][k],
                    vector=encode_vector(vectors[g][k]),
                    model_id="m",
                    name="user_prompt",
                    metadata={"prompt": texts[g][k], "platform": platform},
                    session_id=session,
                    user_id=user,
                    received_at=t0 + 60 * i,
                )
            )
    topics: dict[str, str] = {}  # group -> topic id in acme
    for project, batch in items.items():
        owner = DimensionOwner(store, Catalog(store), project, "prompt", settings, 384)
        batch.sort(key=lambda e: e.received_at)
        owner.process(batch)
        owner.tick(now=time.time() + 60)
        topic_map = Queries(store).topic_map(owner.names)
        placed = store.retrieve(owner.names.events, [e.event_id for e in batch])
        by_group: dict[str, set] = {}
        for r in placed:
            by_group.setdefault(group_of[r.id], set()).add(topic_map.topic_of(r.payload["mc"]))
        # The premise of every API test: each group of texts is exactly one topic.
        assert all(len(t) == 1 and None not in t for t in by_group.values()), by_group
        if project == "acme":
            topics = {g: next(iter(t)) for g, t in by_group.items()}
            assert len(set(topics.values())) == 3
    keystore = KeyStore(data / "keys.sqlite3")
    keys = {p: keystore.create(p).secret for p in ("acme", "other")}
    yield {"store": store, "settings": settings, "keystore": keystore, "keys": keys, **topics}
    keystore.close()
    store.close()


def assignments(store, project: str) -> list[TopicAssignment]:
    """What the cluster owner told the sessions actor about each stored event, in the
    order it did (the aggregates derive topics from the topic map, not from ``topic``)."""
    names = Queries(store).dimension(project, "prompt")
    found, offset = [], None
    while True:
        records, offset = store.scroll(names.events, limit=1000, offset=offset)
        for r in records:
            p = r.payload
            found.append(
                TopicAssignment(
                    event_id=p["event_id"],
                    project=project,
                    dimension="prompt",
                    session_id=p["session_id"],
                    user_id=p["user_id"],
                    mc=p["mc"],
                    topic=None,
                    received_at=p["ts"],
                    # platform is an enum segment (the embed agent types it so).
                    segments={"platform": p["metadata"]["platform"]},
                )
            )
        if offset is None:
            return sorted(found, key=lambda a: (a.received_at, a.event_id))


@pytest.fixture(scope="module")
def aggregated(world):
    """The sessions actor's journey owner fed every event (on two partitions), caught up."""
    store = world["store"]
    owner = JourneyOwner(store, world["settings"].journeys.min_switch_events)
    for project in ("acme", "other"):
        for a in assignments(store, project):
            owner.observe(zlib.crc32(a.session_id.encode()) % 2, a)
    owner.catch_up()
    return owner


async def always_ready() -> bool:
    return True


@pytest.fixture(params=["events", "aggregates"])
async def api(request, aiohttp_client, world):
    """The API answering aggregates from stored events (the oracle) or from the stream's
    aggregates: every API test below holds for both."""
    app = create_app(
        world["settings"],
        keystore=world["keystore"],
        worker_probe=always_ready,
        store=world["store"],
    )
    if request.param == "aggregates":
        request.getfixturevalue("aggregated")
    else:
        app[JOURNEYS].cells = None
    client = await aiohttp_client(app)

    async def get(path: str, project: str = "acme", status: int = 200, **params) -> dict:
        resp = await client.get(
            path, params=params or None, headers={"X-API-Key": world["keys"][project]}
        )
        body = await resp.json()
        assert resp.status == status, body
        if status == 200 and "totals" in body:
            assert body["source"] == request.param, body["source"]
        return body

    return get


async def test_session_journey_a_b_a_from_real_texts(api, world):
    P, F = world["P"], world["F"]
    body = await api("/v1/sessions/s-abab/journey")
    assert body["path"] == [P, F, P]
    assert [s["events"] for s in body["steps"]] == [2, 2, 2]
    assert body["steps"][1]["event_ids"] == ["evt_acme_s-abab_2", "evt_acme_s-abab_3"]
    assert body["steps"][0]["first_at"] == datetime.fromtimestamp(BASE, UTC).isoformat()
    assert (body["dimension"], body["user_id"], body["truncated"]) == ("prompt", "u1", False)
    assert body["min_switch_events"] == 1  # the default


async def test_transitions_with_totals_back_and_forth_and_medians(api, world):
    P, F, W = world["P"], world["F"], world["W"]
    body = await api("/v1/journeys/transitions", dimension="prompt")
    assert body["totals"] == {
        "events": 26,
        "sessions": 6,
        "users": 5,
        "sessions_with_topic": 6,
        "transitions": 5,
    }
    table = {(r["from"], r["to"]): (r["count"], r["probability"]) for r in body["transitions"]}
    assert table == {(P, F): (3, 1.0), (F, P): (2, 1.0)}
    assert body["follow_ups"][P] == [{"topic": F, "count": 3, "probability": 1.0}]
    assert W not in body["follow_ups"]
    assert body["back_and_forth"]["sessions"] == 1
    assert body["back_and_forth"]["pairs"] == [{"topic": P, "via": F, "sessions": 1}]
    assert body["median_seconds_between_steps"] == 120.0


async def test_paths_entries_and_dropoffs(api, world):
    P, F, W = world["P"], world["F"], world["W"]
    paths = await api("/v1/journeys/paths", top=1)
    assert paths["paths"] == [{"path": [P, F], "sessions": 2, "share": 0.3333}]
    entries = await api("/v1/journeys/entries")
    assert entries["entries"][0] == {"topic": P, "sessions": 4, "share": 0.6667}
    assert {e["topic"] for e in entries["entries"]} == {P, F, W}
    drops = await api("/v1/journeys/dropoffs")
    assert drops["dropoff_timeout_s"] == DROPOFF_S
    assert drops["dropped_sessions"] == 5  # all but s-live
    rows = {r["topic"]: r for r in drops["dropoffs"]}
    assert (rows[P]["dropped"], rows[P]["ended_here"], rows[P]["visited"]) == (2, 3, 5)
    assert (rows[F]["dropped"], rows[F]["share_of_ended"]) == (2, 1.0)


async def test_segment_and_time_filters(api, world):
    P, F = world["P"], world["F"]
    mobile = await api("/v1/journeys/transitions", segment="platform:mobile")
    assert (mobile["totals"]["sessions"], mobile["totals"]["users"]) == (3, 3)
    assert {(r["from"], r["to"]): r["count"] for r in mobile["transitions"]} == {
        (P, F): 2,
        (F, P): 1,
    }
    assert mobile["segments"] == ["platform:mobile"]
    # Several segments must all hold.
    none = await api("/v1/journeys/entries?segment=platform:web&segment=platform:mobile")
    assert none["totals"]["sessions"] == 0
    # The second block only, once as ISO 8601 and once as epoch seconds.
    since = datetime.fromtimestamp(BASE + BLOCK - 1, UTC).isoformat()
    end = BASE + 2 * BLOCK - 1
    for until in (datetime.fromtimestamp(end, UTC).isoformat(), end):
        block = await api("/v1/journeys/transitions", since=since, until=str(until))
        assert block["totals"]["sessions"] == 2
        assert [(r["from"], r["to"]) for r in block["transitions"]] == [(F, P)]
    # A time window cuts a session: only the part inside counts.
    tail = await api("/v1/sessions/s-abab/journey", since=str(BASE + 150))
    assert tail["path"] == [F, P]
    assert (await api("/v1/sessions/s-abab/journey", since=str(NOW)))["steps"] == []


async def test_a_user_across_sessions(api, world):
    P, F = world["P"], world["F"]
    body = await api("/v1/users/u1/sessions")
    assert body["returning"] is True
    assert [(s["session_id"], s["path"]) for s in body["sessions"]] == [
        ("s-abab", [P, F, P]),
        ("s-2", [F, P]),
    ]
    assert body["sessions"][1]["first_at"] == datetime.fromtimestamp(BASE + BLOCK, UTC).isoformat()
    assert (await api("/v1/users/u3/sessions"))["returning"] is False


async def test_projects_never_see_each_other(api, world):
    theirs = await api("/v1/sessions/s-abab/journey", project="other")
    assert len(theirs["path"]) == 1 and theirs["path"][0] not in (world["P"], world["F"])
    await api("/v1/sessions/s-3/journey", project="other", status=404)
    await api("/v1/users/u2/sessions", project="other", status=404)
    totals = (await api("/v1/journeys/transitions", project="other"))["totals"]
    assert (totals["events"], totals["sessions"], totals["transitions"]) == (5, 1, 0)


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/v1/journeys/transitions", {"since": "yesterday"}, "since"),
        ("/v1/journeys/transitions", {"until": "nan"}, "until"),
        ("/v1/journeys/entries", {"since": "2024-02-01", "until": "2024-01-01"}, "since"),
        ("/v1/journeys/dropoffs", {"segment": "platform"}, "segment"),
        ("/v1/journeys/dropoffs", {"segment": ":mobile"}, "segment"),
        ("/v1/journeys/paths", {"top": "0"}, "top"),
        ("/v1/journeys/paths", {"top": "101"}, "top"),
        ("/v1/sessions/s-2/journey", {"dimension": ""}, "dimension"),
        ("/v1/users/u1/sessions", {"until": "2024-13-01"}, "until"),
    ],
)
async def test_bad_parameters_are_named(api, path, params, field):
    body = await api(path, status=400, **params)
    assert (body["code"], body["field"]) == ("INVALID_REQUEST", field)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/sessions/nope/journey",
        "/v1/users/nobody/sessions",
        "/v1/journeys/transitions?dimension=answer",
        "/v1/sessions/s-2/journey?dimension=platform",
    ],
)
async def test_unknown_things_are_404(api, path):
    assert (await api(path, status=404))["code"] == "NOT_FOUND"


async def test_without_a_key_is_401(aiohttp_client, world):
    app = create_app(world["settings"], keystore=world["keystore"], store=world["store"])
    client = await aiohttp_client(app)
    resp = await client.get("/v1/journeys/paths")
    assert resp.status == 401


def test_the_scan_cap_truncates(world):
    capped = JourneyQueries(world["store"], max_events=5, use_aggregates=False)
    body = capped.transitions("acme", None, JourneyFilter())
    assert body["truncated"] is True and body["totals"]["events"] == 5
    assert (
        JourneyQueries(world["store"]).entries("acme", None, JourneyFilter())["truncated"] is False
    )


def test_dropoffs_follow_the_clock_on_a_kept_sum(world, aggregated):
    """A reader keeps its sum between requests; as ``now`` moves hours on, the drop-off
    boundary moves with it and the dropped sessions still equal the oracle's."""
    store, settings = world["store"], world["settings"]
    oracle = JourneyQueries(store, settings=settings.journeys, use_aggregates=False)
    cells = JourneyQueries(store, settings=settings.journeys)
    totals = []
    for now in (NOW, NOW + 1800, NOW + 3 * 3600, NOW):
        _, kept = cells.stats("acme", None, JourneyFilter(), now=now)
        _, exact = oracle.stats("acme", None, JourneyFilter(), now=now)
        assert dict(kept.dropped) == dict(exact.dropped)
        totals.append(sum(kept.dropped.values()))
    assert totals[0] < totals[1] == totals[2]  # s-live drops off once idle long enough


def test_aggregates_equal_the_oracle_after_a_merge_and_a_neutral_flag(world, aggregated):
    """Every aggregate endpoint, with and without filters, answers the same from the
    stream's aggregates as from stored events; after a topic merge and a neutral flag
    (written as the owner writes them) too, once the owner has caught up."""
    store, settings = world["store"], world["settings"]
    P, F = world["P"], world["F"]
    oracle = JourneyQueries(store, settings=settings.journeys, use_aggregates=False)
    cells = JourneyQueries(store, settings=settings.journeys)
    mid = BASE + BLOCK + 130.5  # inside sessions, not on an hour
    filters = [
        JourneyFilter(),
        JourneyFilter(segments=(("platform", "mobile"),)),
        JourneyFilter(since=mid),
        JourneyFilter(until=mid),
        JourneyFilter(since=BASE + 30, until=NOW - 300, segments=(("platform", "web"),)),
    ]

    def answers(q: JourneyQueries) -> list[dict]:
        out = []
        for flt in filters:
            for body in (
                q.transitions("acme", None, flt),
                q.paths("acme", None, flt, 100),
                q.entries("acme", None, flt),
                q.dropoffs("acme", None, flt),
                q.flows("acme", None, flt, 4),
            ):
                out.append({k: v for k, v in body.items() if k != "source"})
        return out

    def sources() -> set[str]:
        return {cells.transitions("acme", None, f)["source"] for f in filters}

    assert sources() == {"aggregates"}
    assert answers(cells) == answers(oracle)
    maps = TopicMapStore(store)
    names = Queries(store).dimension("acme", "prompt")
    original = maps.head(names)
    today = Queries(store).topic_map(names)
    try:
        merged = {**original, "seq": original["seq"] + 1}
        merged["assigned"] = original["assigned"] + [[mc, P] for mc in today.members(F)]
        maps.write_head(names, merged)
        assert answers(cells) != answers(oracle)  # the owner has not seen the merge yet
        aggregated.catch_up()
        assert answers(cells) == answers(oracle)
        assert cells.paths("acme", None, JourneyFilter(), 1)["paths"][0]["path"] == [P]
        neutral = {**original, "seq": original["seq"] + 2, "neutral": [F]}
        maps.write_head(names, neutral)
        aggregated.catch_up()
        assert answers(cells) == answers(oracle)
    finally:
        maps.write_head(names, {**original, "seq": original["seq"] + 3})
        aggregated.catch_up()
