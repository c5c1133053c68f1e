"""Neutral topics: learned from which topics share sessions, and journeys that do not
switch on them — the pure rules, then a real DimensionOwner on real texts and the
journey API reading its result."""

from __future__ import annotations

import random
import time

import pytest

from turret_stream.agents.sessions import advance
from turret_stream.catalog import Catalog
from turret_stream.clustering.context import (
    MAX_MCS_PER_SESSION,
    Presence,
    SessionContext,
    neutral_of,
    neutral_topics,
    otsu_threshold,
    topic_specificity,
)
from turret_stream.clustering.owner import DimensionOwner
from turret_stream.embedding import open_embedder
from turret_stream.journey_queries import JourneyFilter, JourneyQueries
from turret_stream.journeys import JourneyEvent, session_path
from turret_stream.queries import Queries
from turret_stream.records import EmbeddedText, TopicAssignment, encode_vector
from turret_stream.settings import Settings
from turret_stream.storage.edge import EdgeStore

# -- learning which topics are neutral --------------------------------------------------

# Four tasks that come in pairs (a flight with a hotel, a table with a taxi), and two
# topics that show up in conversations of every kind.
PAIRS = [("flight", "hotel"), ("restaurant", "taxi")]
GENERIC = ("thanks", "time")


def synthetic_sessions(n: int, seed: int = 0) -> list[set[str]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        pair = rng.choice(PAIRS)
        topics = {pair[0]} if rng.random() < 0.5 else set(pair)
        for g in GENERIC:
            if rng.random() < 0.8:
                topics.add(g)
        out.append(topics)
    return out


def test_topics_found_beside_every_task_are_neutral():
    neutral = neutral_topics(synthetic_sessions(300), min_sessions=50, min_topic_sessions=5)
    assert neutral == set(GENERIC)


def test_task_topics_are_more_specific_than_generic_ones():
    kl = topic_specificity(synthetic_sessions(300), min_topic_sessions=5)
    assert min(kl[t] for p in PAIRS for t in p) > max(kl[g] for g in GENERIC)


def test_no_verdict_without_enough_evidence():
    sessions = synthetic_sessions(300)
    assert neutral_topics(sessions[:40], min_sessions=50, min_topic_sessions=5) == frozenset()
    # A topic seen in fewer sessions than required is never judged (so never neutral).
    rare = [*sessions, {"flight", "rare"}, {"taxi", "rare"}]
    neutral = neutral_topics(rare, min_sessions=50, min_topic_sessions=5)
    assert "rare" not in neutral and neutral == set(GENERIC)
    # Single-topic sessions say nothing about company.
    assert neutral_topics([{"a"}] * 500, min_sessions=50, min_topic_sessions=5) == frozenset()


def test_otsu_threshold_splits_two_groups():
    assert 3 < otsu_threshold([1.0, 1.2, 0.9, 5.0, 5.5, 6.0]) < 5
    assert otsu_threshold([2.0, 2.0, 2.0]) is None
    assert otsu_threshold([1.0]) is None
    # Equal values stay on one side of the cut.
    cut = otsu_threshold([1.0, 1.0, 1.0, 9.0])
    assert 1.0 < cut < 9.0


def test_session_context_remembers_recent_sessions_and_distinct_micro_clusters():
    ctx = SessionContext(max_sessions=2)
    for session, mc in [("a", 1), ("a", 1), ("a", 2), ("b", 3), ("a", 4), ("c", 5)]:
        ctx.observe(session, mc)
    # "b" was the least recently active when "c" arrived.
    assert list(ctx.sessions.items()) == [("a", [1, 2, 4]), ("c", [5])]
    restored = SessionContext.from_blob(ctx.to_blob(), max_sessions=1)
    assert list(restored.sessions.items()) == [("c", [5])]
    long = SessionContext(10)
    for mc in range(MAX_MCS_PER_SESSION + 10):
        long.observe("s", mc)
    assert len(long.sessions["s"]) == MAX_MCS_PER_SESSION
    topics = {1: "A", 2: "A", 4: "B"}
    assert ctx.topic_sets(topics.get) == [{"A", "B"}, set()]


def test_context_presence_equals_its_topic_sets():
    """The owner's array-built presence gives what the per-session sets give: the same
    (session, topic) pairs, and the same neutral topics, micro-clusters without a topic
    and sessions left with one topic included."""
    rng = random.Random(3)
    ctx = SessionContext(max_sessions=400)
    for s in range(500):
        for _ in range(rng.randint(1, 7)):
            ctx.observe(f"s{s}", rng.randrange(90))
    # 80 of 90 micro-clusters in 12 topics; two of them beside everything (neutral).
    topic_of = {mc: f"t{mc % 12}" for mc in range(80)}.get
    sets = ctx.topic_sets(topic_of)
    built = ctx.presence(topic_of)
    oracle = Presence.of(sets)
    assert built.topics == oracle.topics
    assert built.rows.tolist() == oracle.rows.tolist()
    assert built.cols.tolist() == oracle.cols.tolist()
    found = neutral_of(built, min_sessions=50, min_topic_sessions=5)
    assert found and found == neutral_topics(sets, min_sessions=50, min_topic_sessions=5)
    empty = SessionContext(10).presence(topic_of)
    assert neutral_of(empty, min_sessions=1, min_topic_sessions=1) == frozenset()


# -- journeys do not switch on neutral topics ----------------------------------------------

MC = {"A": 1, "B": 2, "N": 3, "M": 4, ".": 0}
TOPIC = {1: "A", 2: "B", 3: "N", 4: "M"}


def path(letters: str, minimum: int = 1, neutral=frozenset({"N", "M"})) -> list[str]:
    evs = [JourneyEvent(f"e{i:02}", "s", "u", float(i), MC[c]) for i, c in enumerate(letters)]
    return [s.topic for s in session_path(evs, TOPIC.get, minimum, neutral)]


def test_neutral_events_never_move_a_journey():
    assert path("ANNBNMA") == ["A", "B", "A"]
    assert path("ANMNA") == ["A"]
    assert path("ANMNA", neutral=frozenset()) == ["A", "N", "M", "N", "A"]
    # A session that opens with a neutral topic starts there; the first task moves it.
    assert path("NNAN") == ["N", "A"]
    # With two events needed, neutral ones neither count nor break the run.
    assert path("AABNBN", minimum=2) == ["A", "B"]
    assert path("AABNAB", minimum=2) == ["A"]


def test_neutral_events_stay_in_the_step_they_fall_in():
    evs = [JourneyEvent(f"e{i}", "s", "u", float(i), MC[c]) for i, c in enumerate("ANBN")]
    steps = session_path(evs, TOPIC.get, 1, frozenset({"N"}))
    assert [s.event_ids for s in steps] == [("e0", "e1"), ("e2", "e3")]


def test_session_actor_ignores_neutral_assignments():
    state: dict = {}
    moves = []
    for i, (topic, neutral) in enumerate(
        [("A", False), ("N", True), ("B", False), ("N", True), ("A", False)]
    ):
        a = TopicAssignment(
            event_id=f"e{i}",
            project="p",
            dimension="prompt",
            session_id="s",
            user_id="u",
            mc=0,
            topic=topic,
            received_at=float(i),
            neutral=neutral,
        )
        moves.append(advance(state, a, 1))
    made = [(m.from_topic, m.to_topic, m.event_id) for m in moves if m]
    assert made == [(None, "A", "e0"), ("A", "B", "e2"), ("B", "A", "e4")]


# -- a real owner on real texts ----------------------------------------------------------

TASKS = {
    "pricing": [
        "How much does the Pro plan cost per month?",
        "What is the monthly price of the Pro plan?",
        "Is there a discount if I pay yearly instead of monthly?",
        "Can you tell me the pricing for the team plan?",
    ],
    "export": [
        "Does the app support exporting reports to PDF?",
        "Can I export my dashboard reports as PDF files?",
        "Is it possible to export a report to PDF or Excel?",
        "How do I download my reports as a PDF?",
    ],
    "password": [
        "How do I reset my password?",
        "I forgot my login credentials and cannot sign in",
        "Can't log in, forgot my password",
        "Password reset link not working",
    ],
    "shipping": [
        "When will my order be shipped to my address?",
        "How long does delivery take for my package?",
        "Where is my parcel, it has not arrived yet",
        "Can I track the shipment of my order?",
    ],
    "refund": [
        "I want a refund for my last order",
        "How do I get my money back for a returned item?",
        "Can I return this product and get refunded?",
        "My refund has not been paid back yet",
    ],
    "integration": [
        "Does the app integrate with Slack?",
        "Is there an integration with Slack?",
        "Can I integrate the app with Slack?",
        "How do I set up the Slack integration?",
    ],
}
REPLIES = {
    "thanks": [
        "Thanks, that's all!",
        "Thanks, that is all.",
        "Thanks, that's all for now.",
        "Thanks, that's all for today.",
    ],
    "yes": ["Yes please.", "Yes, that works for me.", "Sure, go ahead.", "Yes, correct."],
}
TASK_PAIRS = [("pricing", "export"), ("password", "shipping"), ("refund", "integration")]


@pytest.fixture(scope="module")
def owned(tmp_path_factory):
    """90 sessions: one or two related tasks, with replies ("yes", "thanks") between."""
    data = tmp_path_factory.mktemp("neutral")
    settings = Settings(data_dir=data, dimensions={"overrides": {"prompt": "text"}})
    embedder = open_embedder()
    texts = {**TASKS, **REPLIES}
    vectors = {g: embedder.embed(ts) for g, ts in texts.items()}
    rng = random.Random(7)
    items, group_of = [], {}
    t0 = time.time() - 3600
    for s in range(90):
        pair = TASK_PAIRS[s % 3]
        plan = [pair[0], pair[0], "yes", pair[0]]
        if s % 2:
            plan += [pair[1], "yes", pair[1]]
        plan.append("thanks")
        for i, group in enumerate(plan):
            k = rng.randrange(len(texts[group]))
            event_id = f"evt_{s}_{i}"
            group_of[event_id] = group
            items.append(
                EmbeddedText(
                    event_id=event_id,
                    project="acme",
                    dimension="prompt",
                    text=texts[group][k],
                    vector=encode_vector(vectors[group][k]),
                    model_id="m",
                    name="user_prompt",
                    metadata={"prompt": texts[group][k]},
                    session_id=f"s{s}",
                    user_id="u",
                    received_at=t0 + s * 20 + i,
                )
            )
    store = EdgeStore(data / "qdrant")
    owner = DimensionOwner(store, Catalog(store), "acme", "prompt", settings, 384)
    owner.process(items)
    owner.tick(time.time() + 60)
    yield {
        "store": store,
        "owner": owner,
        "settings": settings,
        "group_of": group_of,
        "texts": texts,
        "vectors": vectors,
    }
    store.close()


def test_owner_learns_that_replies_are_neutral(owned):
    owner, store, group_of = owned["owner"], owned["store"], owned["group_of"]
    topic_map = Queries(store).topic_map(owner.names)
    topic_of_group: dict[str, set] = {}
    for r in store.scroll(owner.names.events, limit=1000)[0]:
        topic_of_group.setdefault(group_of[r.id], set()).add(topic_map.topic_of(r.payload["mc"]))
    # The premise: no topic mixes a task with replies (short replies may split up).
    for g in TASKS:
        assert all(not (topic_of_group[g] & topic_of_group[r]) for r in REPLIES), topic_of_group
    replies = set().union(*(topic_of_group[g] for g in REPLIES)) - {None}
    tasks = set().union(*(topic_of_group[g] for g in TASKS))
    assert replies <= topic_map.neutral and not (tasks & topic_map.neutral)
    # The owner flags new events in neutral topics for the session actors.
    assert owner.neutral == topic_map.neutral
    later = [
        EmbeddedText(
            event_id=f"evt_new_{g}",
            project="acme",
            dimension="prompt",
            text=owned["texts"][g][0],
            vector=encode_vector(owned["vectors"][g][0]),
            model_id="m",
            name="user_prompt",
            metadata={"prompt": owned["texts"][g][0]},
            session_id="s-new",
            user_id="u",
            received_at=time.time(),
        )
        for g in ("pricing", "yes")
    ]
    flags = {a.event_id: a.neutral for a in owner.process(later)}
    assert flags == {"evt_new_pricing": False, "evt_new_yes": True}


def test_journey_api_path_skips_replies(owned):
    store, settings = owned["store"], owned["settings"]
    topic_map = Queries(store).topic_map(owned["owner"].names)
    journeys = JourneyQueries(store, settings=settings.journeys)
    # s1: password, password, yes, password, shipping, yes, shipping, thanks
    body = journeys.session("acme", "s1", "prompt", JourneyFilter())
    assert len(body["path"]) == 2 and not set(body["path"]) & topic_map.neutral
    assert [s["events"] for s in body["steps"]] == [4, 4]
    # Switched off, every reply is a step of its own.
    off = settings.journeys.model_copy(update={"neutral_topics": False})
    body = JourneyQueries(store, settings=off).session("acme", "s1", "prompt", JourneyFilter())
    assert len(body["path"]) == 7


def test_a_restarted_owner_keeps_what_it_learned(owned):
    owner, store, settings = owned["owner"], owned["store"], owned["settings"]
    again = DimensionOwner(store, Catalog(store), "acme", "prompt", settings, 384)
    assert again.neutral == owner.neutral and again.neutral
    # The session context was saved at the first reclustering (90 sessions then).
    assert len(again.context.sessions) >= 90
