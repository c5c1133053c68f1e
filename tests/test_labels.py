"""Topic labels end to end on a real store: offline labels for every topic, Ollama labels
replacing them (against the tests' Ollama-compatible server: no Ollama can run here),
the relabel policy, and a person's label that automation never overwrites."""

from __future__ import annotations

import json
import time

import pytest

from turret_stream.agents.labels import Labeller
from turret_stream.catalog import Catalog
from turret_stream.clustering.owner import DimensionOwner
from turret_stream.http import create_app
from turret_stream.keys import KeyStore
from turret_stream.labels.book import LabelBook
from turret_stream.labels.ollama import OllamaLabeller
from turret_stream.queries import Queries
from turret_stream.settings import LabelSettings, Settings
from turret_stream.storage.edge import EdgeStore

from .test_label_ollama import FakeOllama, Reply
from .test_persistence import embedded_rows, item  # noqa: F401  (fixture)

LLM_NAME = "Account Password Recovery"


@pytest.fixture
def labelled(tmp_path, embedded_rows):  # noqa: F811
    store = EdgeStore(tmp_path / "qdrant")
    settings = Settings(data_dir=tmp_path)
    owner = DimensionOwner(store, Catalog(store), "acme", "prompt", settings, 384)
    items = [item(i, t, v) for i, (_, t, v) in enumerate(embedded_rows)]
    owner.process(items[:10])
    owner.process(items[10:])
    assert owner.tick(now=time.time() + 60)
    groups = {}
    for (group, _, _), it in zip(embedded_rows, items, strict=True):
        mc = store.retrieve(owner.names.events, [it.event_id])[0].payload["mc"]
        groups.setdefault(group, set()).add(owner.model.topic_of(mc))
    yield store, owner, {g: max(t, key=lambda x: x is not None) for g, t in groups.items()}
    store.close()


def shown(store, owner) -> dict[str, dict]:
    body = Queries(store).clusters("acme", "prompt", limit=50, examples=0)
    return {c["id"]: c for c in body["clusters"]}


def test_every_topic_gets_a_readable_offline_label(labelled):
    store, owner, topic_of_group = labelled
    jobs = Labeller(store, LabelSettings()).scan()
    clusters = shown(store, owner)
    assert len(jobs) == len(clusters) >= 3
    for c in clusters.values():
        assert c["label"] and c["label_source"] == "fallback"
        words = c["label"].split()
        assert 2 <= len(words) <= 5 and all(w[0].isupper() for w in words)
        assert c["description"]
    assert "Password" in clusters[topic_of_group["password"]]["label"]
    assert "Card" in clusters[topic_of_group["card"]]["label"]
    # Nothing changed: nothing to rename.
    assert Labeller(store, LabelSettings()).scan() == []


def test_growth_triggers_a_relabel(labelled):
    store, owner, topic_of_group = labelled
    Labeller(store, LabelSettings()).scan()
    topic = topic_of_group["password"]
    book = LabelBook(store)
    record = book.automatic(owner.names, [topic])[topic]
    basis = {**record["basis"], "size": 1}  # as if named when the topic was tiny
    book.set_automatic(owner.names, topic, book.labels(owner.names, [topic])[topic], basis)
    jobs = Labeller(store, LabelSettings(relabel_growth=2.0)).scan()
    assert [j.topic for j in jobs] == [topic]
    assert len(book.history(owner.names, topic)) == 3


async def test_ollama_label_replaces_the_fallback_and_survives_outages(labelled):
    store, owner, topic_of_group = labelled
    fake = await FakeOllama().start()
    try:
        ollama = OllamaLabeller(fake.host, fake.models[0], timeout_s=2, retries=0)
        labeller = Labeller(store, LabelSettings(), ollama)
        jobs = labeller.scan()
        topic = topic_of_group["password"]
        fake.script = [
            Reply(json.dumps({"name": LLM_NAME, "description": "People locked out."}))
        ] + [Reply("not json at all")] * (len(jobs) - 1)
        await labeller.ask_llm(
            [j for j in jobs if j.topic == topic] + [j for j in jobs if j.topic != topic]
        )
        clusters = shown(store, owner)
        assert clusters[topic]["label"] == LLM_NAME
        assert clusters[topic]["label_source"] == "llm"
        # Garbage answers leave the offline labels in place.
        others = [c for t, c in clusters.items() if t != topic]
        assert all(c["label_source"] == "fallback" for c in others)
        # The examples sent were the topic's own texts.
        assert "password" in json.dumps(fake.requests[0]).lower()
    finally:
        await fake.stop()
    # Ollama gone: asking again changes nothing and raises nothing.
    await labeller.ask_llm(jobs)
    assert shown(store, owner)[topic]["label"] == LLM_NAME
    await ollama.aclose()


async def test_a_persons_label_is_never_overwritten(labelled, aiohttp_client):
    store, owner, topic_of_group = labelled
    settings = Settings(data_dir=owner.settings.data_dir)
    keys = KeyStore(settings.keys_db_path)
    acme, other = keys.create("acme").secret, keys.create("other").secret

    async def always_ready() -> bool:
        return True

    client = await aiohttp_client(
        create_app(settings, keystore=keys, worker_probe=always_ready, store=store)
    )
    topic = topic_of_group["card"]
    url = f"/v1/clusters/{topic}/label"
    resp = await client.put(url, json={"name": "Card Delivery"}, headers={"X-API-Key": acme})
    assert resp.status == 200 and (await resp.json())["label"]["source"] == "manual"

    fake = await FakeOllama().start()
    try:
        labeller = Labeller(store, LabelSettings(), OllamaLabeller(fake.host, fake.models[0]))
        jobs = labeller.scan()
        assert topic not in [j.topic for j in jobs]
        await labeller.ask_llm(jobs)
    finally:
        await fake.stop()
    detail = await (await client.get(f"/v1/clusters/{topic}", headers={"X-API-Key": acme})).json()
    assert detail["cluster"]["label"] == "Card Delivery"
    assert detail["cluster"]["label_source"] == "manual"
    assert detail["cluster"]["label_history"][-1]["source"] == "manual"

    async def put(body, key=acme, target=url):
        r = await client.put(target, data=json.dumps(body), headers={"X-API-Key": key})
        return r.status, await r.json()

    assert (await put({}))[1]["code"] == "MISSING_REQUIRED_FIELD"
    assert (await put({"name": "x" * 81}))[1]["code"] == "INVALID_REQUEST"
    assert (await put({"name": "ok", "description": 5}))[1]["code"] == "INVALID_REQUEST"
    assert (await put({"name": "Mine"}, key=other))[0] == 404
    assert (await put({"name": "Mine"}, target="/v1/clusters/tp_nope/label"))[0] == 404
