"""End to end: /track -> Kafka -> embed -> cluster -> Qdrant -> read API, all real."""

from __future__ import annotations

import asyncio
import random

import aiohttp
import pytest

from turret_stream.client import TurretClient
from turret_stream.keys import KeyStore
from turret_stream.stack import running_stack

from .conftest import make_settings, wait_until

GROUPS = {
    "password": [
        "How do I reset my password?",
        "I forgot my login credentials",
        "Can't log in, forgot my password",
        "How can I change my password?",
        "Password reset link not working",
        "I need to recover my account password",
    ],
    "card": [
        "My card has not arrived yet",
        "When will my new card be delivered?",
        "Still waiting for my debit card",
        "How long does card delivery take?",
        "The card you sent never came",
        "Where is my card? It hasn't shown up",
    ],
    "weather": [
        "What is the weather in Paris today?",
        "Will it rain tomorrow in London?",
        "Weather forecast for this weekend",
        "How hot will it be tomorrow?",
        "Tell me the temperature outside",
        "Is it going to be cold tonight in Berlin?",
    ],
}


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory, broker):
    """One real stack, fed once; the tests below read what it made."""
    tmp_path = tmp_path_factory.mktemp("pipeline")
    settings = make_settings(tmp_path, broker.port)
    keys = KeyStore(settings.keys_db_path)
    acme, other = keys.create("acme").secret, keys.create("other").secret
    rows = [(group, text) for group, texts in GROUPS.items() for text in texts]
    random.Random(4).shuffle(rows)
    result: dict = {"settings": settings, "acme": acme, "other": other, "ids": {}}

    async def run() -> None:
        async with running_stack(settings, broker=False, worker=True, api=True) as stack:
            seen: list = []
            stack.topology.owners.listeners.append(seen.append)

            def send() -> None:
                client = TurretClient(acme, stack.api_url)
                for i, (group, text) in enumerate(rows):
                    r = client.track(
                        "user_prompt",
                        {"prompt": text, "platform": ["ios", "web"][i % 2]},
                        session_id=f"s{i % 3}",
                        user_id=f"u{i % 2}",
                    )
                    result["ids"][r.event_id] = group
                TurretClient(other, stack.api_url).track(
                    "p", {"prompt": "a secret of another project"}
                )

            await asyncio.to_thread(send)
            await wait_until(lambda: len(seen) >= len(rows) + 1)
            # The owners recluster on their own once traffic pauses: wait for topics that
            # hold every event before sending the late one.
            await wait_until(lambda: topics_hold(stack, len(rows)), timeout=30)
            await asyncio.to_thread(
                TurretClient(acme, stack.api_url).track,
                "user_prompt",
                {"prompt": "How do I reset my password please?"},
                session_id="late",
            )
            await wait_until(lambda: len(seen) >= len(rows) + 2)
            # Topic figures reach the read API within clustering.topic_points_interval_s.
            owner = stack.topology.owners.get("acme", "prompt")
            await wait_until(lambda: not owner.figures_pending)
            result["assignments"] = list(seen)
            async with aiohttp.ClientSession(stack.api_url) as http:
                result["http"] = await read_api(http, acme, other, result)

    asyncio.run(run())
    return result


def topics_hold(stack, n: int) -> bool:
    owner = stack.topology.owners.get("acme", "prompt")
    model = owner.model
    return model is not None and sum(model.topic_size(m) for m in model.topics().values()) >= n


async def read_api(http: aiohttp.ClientSession, acme: str, other: str, result: dict) -> dict:
    """Everything the tests check, fetched while the stack runs."""
    h = {"X-API-Key": acme}
    out = {}

    async def get(path, key=acme, **params):
        async with http.get(path, headers={"X-API-Key": key}, params=params) as resp:
            return resp.status, await resp.json()

    out["clusters"] = await get("/v1/clusters", dimension="prompt", examples=3)
    out["clusters_by_growth"] = await get("/v1/clusters", dimension="prompt", sort="growth")
    out["bad_sort"] = await get("/v1/clusters", dimension="prompt", sort="random")
    out["default_dim"] = await get("/v1/clusters")
    topics = out["clusters"][1].get("clusters", [])
    if topics:
        first = topics[0]["id"]
        out["cluster"] = await get(f"/v1/clusters/{first}")
        page1 = await get(f"/v1/clusters/{first}/events", limit=2)
        out["events_page1"] = page1
        cursor = page1[1].get("next_cursor")
        out["events_page2"] = await get(
            f"/v1/clusters/{first}/events", limit=100, **({"cursor": cursor} if cursor else {})
        )
        out["cluster_other_key"] = await get(f"/v1/clusters/{first}", key=other)
        out["segments"] = await get(f"/v1/clusters/{first}/segments")
        out["segments_other_key"] = await get(f"/v1/clusters/{first}/segments", key=other)
    out["themes"] = await get("/v1/themes", dimension="prompt")
    themes = out["themes"][1].get("themes", [])
    if themes:
        out["theme"] = await get(f"/v1/themes/{themes[0]['id']}")
        out["clusters_of_theme"] = await get("/v1/clusters", theme=themes[0]["id"])
    out["unknown_theme"] = await get("/v1/clusters", theme="th_0000000000000000")
    out["theme_transitions"] = await get("/v1/journeys/transitions", level="theme")
    out["bad_level"] = await get("/v1/journeys/transitions", level="galaxy")
    out["topic_of"] = {}
    for event_id in result["ids"]:
        status, body = await get(f"/v1/events/{event_id}")
        if status == 200:
            out["topic_of"][event_id] = body["event"]["dimensions"]["prompt"]["cluster_id"]
    some_event = next(iter(result["ids"]))
    out["event"] = await get(f"/v1/events/{some_event}")
    out["event_other_key"] = await get(f"/v1/events/{some_event}", key=other)
    out["search"] = await get("/v1/search", q="I lost my password", limit=3)
    out["other_clusters"] = await get("/v1/clusters", key=other)
    out["bad_limit"] = await get("/v1/clusters", limit="abc")
    out["zero_limit"] = await get("/v1/clusters", limit="0")
    out["no_q"] = await get("/v1/search")
    out["unknown_dim"] = await get("/v1/clusters", dimension="nope")
    out["segment_dim"] = await get("/v1/clusters", dimension="platform")
    async with http.get("/v1/clusters") as resp:
        out["no_key"] = resp.status, await resp.json()
    del h
    return out


def topic_by_group(run) -> dict[str, list]:
    """Each group's topics, as the API resolves them now."""
    by_event = run["http"]["topic_of"]
    groups: dict[str, list] = {}
    for event_id, group in run["ids"].items():
        groups.setdefault(group, []).append(by_event.get(event_id))
    return groups


def test_paraphrases_share_a_topic_and_unrelated_texts_do_not(pipeline_run):
    status, body = pipeline_run["http"]["clusters"]
    assert status == 200
    topics = {c["id"]: c for c in body["clusters"]}
    assert 3 <= len(topics) <= 5
    # Read through the API: each group's events, by the topic the API resolves.
    groups = topic_by_group(pipeline_run)
    majority = {}
    for group, assigned in groups.items():
        best = max(set(assigned), key=assigned.count)
        assert best is not None
        assert assigned.count(best) >= 5, (group, assigned)
        majority[group] = best
    assert len(set(majority.values())) == 3


def test_cluster_list_has_sizes_shares_and_examples(pipeline_run):
    body = pipeline_run["http"]["clusters"][1]
    assert body["dimension"] == "prompt"
    assert body["total_events"] == 19
    top = body["clusters"][0]
    assert top["size"] >= 5 and 0 < top["share"] <= 1
    assert top["first_seen"] and top["last_seen"]
    assert sum(c["count"] for c in top["counts"]["hourly"]) == top["size"]
    assert 1 <= len(top["examples"]) <= 3
    assert all(e["text"] for e in top["examples"])
    # The default dimension is the project's largest text dimension.
    assert pipeline_run["http"]["default_dim"][1]["dimension"] == "prompt"


def test_cluster_detail_and_paginated_events(pipeline_run):
    http = pipeline_run["http"]
    status, detail = http["cluster"]
    assert status == 200 and detail["cluster"]["size"] >= 5
    first, rest = http["events_page1"][1], http["events_page2"][1]
    assert len(first["events"]) == 2 and first["next_cursor"]
    ids = [e["event_id"] for e in first["events"] + rest["events"]]
    assert len(ids) == len(set(ids)) == detail["cluster"]["size"]
    assert all(e["cluster_id"] == detail["cluster"]["id"] for e in rest["events"])


def test_event_by_id_and_search(pipeline_run):
    http = pipeline_run["http"]
    status, body = http["event"]
    assert status == 200
    assert body["event"]["dimensions"]["prompt"]["cluster_id"]
    assert body["event"]["metadata"]["platform"] in ("ios", "web")
    status, found = http["search"]
    assert status == 200 and len(found["results"]) == 3
    assert "password" in found["results"][0]["text"].lower()


def test_segments_are_not_dimensions(pipeline_run):
    status, body = pipeline_run["http"]["segment_dim"]
    assert status == 404 and body["code"] == "NOT_FOUND"
    assert "prompt" in body["error"]


def test_projects_are_isolated(pipeline_run):
    http = pipeline_run["http"]
    assert http["cluster_other_key"][0] == 404
    assert http["event_other_key"][0] == 404
    status, body = http["other_clusters"]
    # The other project has one event of its own and never sees acme's topics.
    assert status == 200 and body["total_events"] == 1
    assert http["no_key"][0] == 401 and http["no_key"][1]["code"] == "INVALID_API_KEY"


def test_bad_query_parameters_are_400_with_a_code(pipeline_run):
    http = pipeline_run["http"]
    for name in ("bad_limit", "zero_limit"):
        status, body = http[name]
        assert status == 400 and body["code"] == "INVALID_REQUEST" and "limit" in body["error"]
    status, body = http["no_q"]
    assert status == 400 and body["code"] == "MISSING_REQUIRED_FIELD"
    assert http["unknown_dim"][0] == 404


def test_a_late_paraphrase_joins_the_existing_topic(pipeline_run):
    late = [a for a in pipeline_run["assignments"] if a.session_id == "late"]
    assert late and late[0].topic is not None
    groups = topic_by_group(pipeline_run)
    password = max(set(groups["password"]), key=groups["password"].count)
    assert late[0].topic == password


def test_topics_carry_a_trend_tag_and_sort_by_growth(pipeline_run):
    status, body = pipeline_run["http"]["clusters"]
    assert status == 200
    # Every topic was born minutes ago: "new", and no previous window to grow from.
    for topic in body["clusters"]:
        assert topic["trend"] == "new", topic
        assert topic["growth"] is None
        assert topic["window_events"]["current"] == sum(
            c["count"] for c in topic["counts"]["hourly"]
        )
    status, by_growth = pipeline_run["http"]["clusters_by_growth"]
    assert status == 200
    assert {t["id"] for t in by_growth["clusters"]} == {t["id"] for t in body["clusters"]}
    status, bad = pipeline_run["http"]["bad_sort"]
    assert status == 400 and bad["code"] == "INVALID_REQUEST" and bad["field"] == "sort"


def test_themes_over_topics_through_the_api(pipeline_run):
    http = pipeline_run["http"]
    status, clusters = http["clusters"]
    status_t, body = http["themes"]
    assert status == status_t == 200
    themes = {t["id"]: t for t in body["themes"]}
    # Every topic names its theme; every theme lists its topics, with their summed figures.
    assert {c["theme"] for c in clusters["clusters"]} == set(themes)
    assert sum(t["total_topics"] for t in themes.values()) == clusters["total_clusters"]
    assert sum(t["size"] for t in themes.values()) == sum(c["size"] for c in clusters["clusters"])
    for t in themes.values():
        assert t["trend"] == "new" and t["counts"]["hourly"]
    status, one = http["theme"]
    assert status == 200 and one["theme"]["id"] in themes
    status, only = http["clusters_of_theme"]
    assert status == 200 and {c["theme"] for c in only["clusters"]} == {only["theme"]}
    status, missing = http["unknown_theme"]
    assert status == 404 and missing["code"] == "NOT_FOUND"
    status, flows = http["theme_transitions"]
    assert status == 200 and flows["level"] == "theme"
    for row in flows["transitions"]:
        assert {row["from"], row["to"]} <= set(themes)
    status, bad = http["bad_level"]
    assert status == 400 and bad["field"] == "level"


def test_a_topic_breaks_down_by_segment(pipeline_run):
    http = pipeline_run["http"]
    status, body = http["segments"]
    assert status == 200
    [platform] = body["segments"]
    assert platform["key"] == "platform"
    # Counted as the events arrived: each of the topic's events sent with a platform (the
    # late one had none) once, under its value.
    with_platform = [t for t in http["topic_of"].values() if t == body["cluster_id"]]
    assert platform["events"] == len(with_platform) > 0
    assert {v["value"] for v in platform["values"]} <= {"ios", "web"}
    assert sum(v["share"] for v in platform["values"]) == pytest.approx(1, abs=1e-3)
    assert http["segments_other_key"][0] == 404
