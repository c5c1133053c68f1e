"""Themes over topics and per-segment breakdowns, through a real owner, store and model:
kept by the dimension's owner, read through the topic map and the topic records."""

from __future__ import annotations

import time

import numpy as np
import pytest

from turret_stream.agents.labels import Labeller
from turret_stream.catalog import Catalog
from turret_stream.clustering.owner import DimensionOwner
from turret_stream.embedding import open_embedder
from turret_stream.journey_queries import JourneyFilter, JourneyQueries
from turret_stream.queries import NotFound, Queries
from turret_stream.records import EmbeddedText, encode_vector
from turret_stream.settings import LabelSettings, Settings
from turret_stream.storage.edge import EdgeStore

from .test_pipeline import GROUPS

# Two kinds of account access (one theme) and the weather (another).
TEXTS = {
    "password": GROUPS["password"],
    "two_factor": [
        "My two-factor code never arrives",
        "The 2FA text message code is not coming",
        "I did not receive the verification code to log in",
        "I don't get the security code to sign in",
        "The authenticator code is rejected when I log in",
        "Login verification code keeps failing",
    ],
    "weather": GROUPS["weather"],
}
T0 = 1_700_000_000.0


@pytest.fixture(scope="module")
def vectors():
    embedder = open_embedder()
    return {g: embedder.embed(texts) for g, texts in TEXTS.items()}


def _event(i: int, group: str, j: int, vector: np.ndarray, platform: str) -> EmbeddedText:
    text = TEXTS[group][j]
    # Session s<j> asks about its password, then its 2FA code, then the weather.
    at = T0 + {"password": 0, "two_factor": 100, "weather": 200}[group] + j
    return EmbeddedText(
        event_id=f"evt_{i:032x}",
        project="acme",
        dimension="prompt",
        text=text,
        vector=encode_vector(vector),
        model_id="m",
        name="p",
        metadata={"prompt": text, "platform": platform},
        session_id=f"s{j}",
        user_id=f"u{j}",
        received_at=at,
    )


def _segment(event: EmbeddedText) -> EmbeddedText:
    """The same event's enum key, as the owner of ``platform`` receives it (no vector)."""
    value = event.metadata["platform"]
    return EmbeddedText(**{**event.asdict(), "dimension": "platform", "text": value, "vector": ""})


@pytest.fixture
def fed(tmp_path, vectors):
    store = EdgeStore(tmp_path / "qdrant")
    settings = Settings(data_dir=tmp_path)
    events = []
    for group, vecs in vectors.items():
        for j, v in enumerate(vecs):
            # 2FA questions come from the mobile app; a few of the rest too.
            mobile = group == "two_factor" or len(events) % 9 == 0
            events.append(_event(len(events), group, j, v, "mobile" if mobile else "web"))
    DimensionOwner(store, Catalog(store), "acme", "platform", settings, 384).process(
        [_segment(e) for e in events]
    )
    owner = DimensionOwner(store, Catalog(store), "acme", "prompt", settings, 384)
    owner.process(events[:9])
    owner.process(events[9:])
    assert owner.tick(now=time.time() + 60)
    yield store, settings, owner, events
    store.close()


def _topics_of(store, owner, events) -> dict[str, set[str]]:
    topic_map = Queries(store).topic_map(owner.names)
    found = store.retrieve(owner.names.events, [e.event_id for e in events])
    mc = {r.id: r.payload["mc"] for r in found}
    out: dict[str, set[str]] = {}
    for e, group in zip(events, [g for g in TEXTS for _ in TEXTS[g]], strict=True):
        topic = topic_map.topic_of(mc[e.event_id])
        if topic is not None:  # an event can be noise (in no topic)
            out.setdefault(group, set()).add(topic)
    return out


def test_related_topics_share_a_theme_and_the_api_lists_it(fed):
    store, _, owner, events = fed
    queries = Queries(store)
    topics = _topics_of(store, owner, events)
    topic_map = queries.topic_map(owner.names)
    theme = {g: {topic_map.theme_of(t) for t in ts} for g, ts in topics.items()}
    assert None not in set().union(*theme.values())
    assert len(theme["password"]) == len(theme["two_factor"]) == 1
    assert topics["password"] != topics["two_factor"]  # two topics ...
    assert theme["password"] == theme["two_factor"]  # ... one theme
    assert theme["weather"].isdisjoint(theme["password"])
    [access] = theme["password"]

    body = queries.themes("acme", "prompt", limit=50)
    views = {v["id"]: v for v in body["themes"]}
    clusters = queries.clusters("acme", "prompt", limit=50, examples=0)["clusters"]
    # Every topic is in exactly one theme; a theme's figures are its topics' sums.
    assert sum(v["total_topics"] for v in views.values()) == len(clusters)
    assert sum(v["size"] for v in views.values()) == sum(c["size"] for c in clusters)
    assert {c["theme"] for c in clusters} == set(views)
    assert {t["id"] for t in views[access]["topics"]} == topics["password"] | topics["two_factor"]
    assert views[access]["trend"] == "new" and views[access]["created_at"]

    only = queries.clusters("acme", "prompt", limit=50, examples=0, theme=access)
    assert {c["id"] for c in only["clusters"]} == {t["id"] for t in views[access]["topics"]}
    with pytest.raises(NotFound):
        queries.clusters("acme", "prompt", limit=50, examples=0, theme="th_0000000000000000")

    # Labelled like topics: the two-topic theme gets its own offline name.
    Labeller(store, LabelSettings()).scan()
    named = {v["id"]: v for v in queries.themes("acme", "prompt", limit=50)["themes"]}
    assert named[access]["label"] and named[access]["label_source"] == "fallback"
    # A person names a theme; the labeller never overwrites it.
    queries.set_theme_label("acme", access, "prompt", "Account access", "Logging in")
    Labeller(store, LabelSettings()).scan_dimension(owner.names, time.time(), force=True)
    renamed = {v["id"]: v for v in queries.themes("acme", "prompt", limit=50)["themes"]}
    assert renamed[access]["label"] == "Account access"
    assert renamed[access]["label_source"] == "manual"
    with pytest.raises(NotFound):
        queries.set_theme_label("acme", "th_0000000000000000", "prompt", "X", "")
    weather_topic = next(iter(topics["weather"]))
    [weather] = theme["weather"]
    if named[weather]["total_topics"] == 1:  # a one-topic theme shows its topic's label
        assert (
            named[weather]["label"]
            == queries.cluster("acme", weather_topic, None, 0)["cluster"]["label"]
        )


def test_theme_ids_survive_a_restart_and_new_traffic(fed, vectors):
    store, settings, owner, _ = fed
    before = dict(Queries(store).topic_map(owner.names).themes)
    restored = DimensionOwner(store, Catalog(store), "acme", "prompt", settings, 384)
    more = [
        _event(100 + j, "two_factor", j, v * 0.999 + 0.001, "mobile")
        for j, v in enumerate(vectors["two_factor"])
    ]
    restored.process(more)
    assert restored.tick(now=time.time() + 120)
    after = Queries(store).topic_map(owner.names).themes
    # More of the same kind of traffic: every theme keeps its id, every topic its theme.
    assert set(before.values()) <= set(after.values())
    kept = [t for t in before if t in after]
    assert len(kept) >= 3
    assert all(after[t] == before[t] for t in kept)


def test_a_topic_over_represents_the_segment_its_users_come_from(fed):
    store, settings, owner, events = fed
    queries = Queries(store)
    two_factor = next(iter(_topics_of(store, owner, events)["two_factor"]))
    body = queries.cluster_segments("acme", two_factor, "prompt")
    [platform] = body["segments"]
    assert platform["key"] == "platform" and platform["events"] == body["size"]
    by_value = {v["value"]: v for v in platform["values"]}
    assert by_value["mobile"]["share"] == 1.0 and by_value["mobile"]["over_represented"], str(body)
    assert [(f["key"], f["value"]) for f in body["over_represented"]] == [("platform", "mobile")]
    assert by_value["mobile"]["p_value"] < 0.01
    # The project-wide counts are every topic's: shares of the project add up.
    assert sum(v["project_share"] for v in platform["values"]) == pytest.approx(1, abs=1e-3)

    # Counts are owner state: a restart and a reclustering keep them.
    restored = DimensionOwner(store, Catalog(store), "acme", "prompt", settings, 384)
    restored.tick(now=time.time() + 300)
    assert queries.cluster_segments("acme", two_factor, "prompt")["segments"] == body["segments"]


def _collapsed(path: list[str]) -> list[str]:
    return [t for i, t in enumerate(path) if i == 0 or path[i - 1] != t]


def test_journeys_between_themes_and_within_one(fed):
    store, _, owner, _ = fed
    journeys = JourneyQueries(store)
    topic_map = Queries(store).topic_map(owner.names)
    walked = 0
    for j in range(len(TEXTS["password"])):
        session = f"s{j}"
        topics = journeys.session("acme", session, "prompt", JourneyFilter())["path"]
        themes = journeys.session("acme", session, "prompt", JourneyFilter(level="theme"))
        # At theme level a session moves only when its theme changes.
        assert themes["path"] == _collapsed([topic_map.theme_of(t) for t in topics])
        assert themes["level"] == "theme"
        if len(topics) == 3:  # password -> 2FA -> weather: three topics, two themes
            walked += 1
            assert len(themes["path"]) == 2
            # Narrowed to the account theme, the session never reaches the weather.
            access = JourneyFilter(theme=themes["path"][0])
            inside = journeys.session("acme", session, "prompt", access)
            assert inside["path"] == topics[:2]
    assert walked >= 3
    body = journeys.transitions("acme", "prompt", JourneyFilter(level="theme"))
    assert body["level"] == "theme"
    assert body["transitions"]
    for row in body["transitions"]:
        assert {row["from"], row["to"]} <= set(topic_map.themes.values())
