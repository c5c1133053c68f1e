"""Topic labels end to end on a real store and the real embedding model: offline labels for
every topic, LLM rounds (against the tests' Ollama-compatible server: no Ollama can run here)
whose names win only where they identify their topic, the relabel policy and command, and a
person's label that automation never overwrites."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from turret_stream.agents.labels import Labeller
from turret_stream.catalog import Catalog
from turret_stream.cli import main
from turret_stream.clustering.owner import DimensionOwner
from turret_stream.embedding import open_embedder
from turret_stream.http import create_app
from turret_stream.keys import KeyStore
from turret_stream.labels.book import LabelBook
from turret_stream.labels.ollama import OllamaLabeller
from turret_stream.queries import Queries
from turret_stream.settings import LabelSettings, Settings
from turret_stream.storage.edge import EdgeStore

from .test_label_ollama import FakeOllama, Reply, answer
from .test_persistence import embedded_rows, item  # noqa: F401  (fixture)

LLM_NAME = "Forgotten Login Password"
# A name of nothing in particular: it identifies its topic worse than the offline name.
VAGUE = "Online Banking App"


@pytest.fixture(scope="module")
def embedder():
    return open_embedder()


def respond_by_topic(prompt: str) -> Reply:
    """The model's answers: a good name for passwords, a vague one for cards, garbage else."""
    prompt = prompt.lower()
    if "reset my password" in prompt:
        return Reply(answer(LLM_NAME, VAGUE, description="Users cannot log in to their account."))
    if "card has not arrived" in prompt:
        return Reply(answer(VAGUE))
    return Reply("not json at all")


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


async def test_llm_names_win_only_where_they_identify_their_topic(labelled, embedder):
    store, owner, topic_of_group = labelled
    fake = await FakeOllama().start()
    fake.respond = respond_by_topic
    password, card, weather = (topic_of_group[g] for g in ("password", "card", "weather"))
    try:
        ollama = OllamaLabeller(fake.host, fake.models[0], timeout_s=5, min_timeout_s=5)
        labeller = Labeller(store, LabelSettings(), ollama, embedder)
        jobs = labeller.scan()
        before = shown(store, owner)
        await labeller.ask_llm(jobs)
        clusters = shown(store, owner)
        book = LabelBook(store)

        assert clusters[password]["label"] == LLM_NAME
        assert clusters[password]["label_source"] == "llm"
        assert clusters[password]["description"] == "Users cannot log in to their account."
        why = book.history(owner.names, password)[-1]["why"]
        assert why["winner"] == "llm"
        assert why["fallback"]["name"] == before[password]["label"]
        assert [c["name"] for c in why["candidates"]] == [LLM_NAME, VAGUE]

        # A vague name loses to the offline one; the record says so.
        assert clusters[card]["label"] == before[card]["label"]
        assert clusters[card]["label_source"] == "fallback"
        why = book.history(owner.names, card)[-1]["why"]
        assert why["winner"] == "fallback" and why["candidates"][0]["name"] == VAGUE
        assert why["candidates"][0]["margin"] < why["fallback"]["margin"]

        # Garbage (after one correction) leaves the offline label as the scan wrote it.
        assert clusters[weather] == before[weather]
        assert len(book.history(owner.names, weather)) == 1
        progress = labeller.progress[owner.names.slug]
        assert (progress.llm, progress.kept, progress.failed) == (1, 1, 1)
        # The prompt showed the topic's own texts and its neighbours' current names.
        prompt = next(json.dumps(r) for r in fake.requests if "reset my password" in json.dumps(r))
        assert before[card]["label"] in prompt and before[weather]["label"] in prompt
        # ... and its key terms, the offline labeller's, as material for the names.
        assert "Key terms of this topic" in prompt and "password" in prompt.split("Key terms")[1]
        assert clusters[password]["label_set_at"] > clusters[weather]["label_set_at"]
    finally:
        await fake.stop()
    # Ollama gone: asking again changes nothing and raises nothing.
    await labeller.ask_llm(jobs)
    assert shown(store, owner)[password]["label"] == LLM_NAME
    await ollama.aclose()


@pytest.fixture
def fake_in_thread() -> Iterator[FakeOllama]:
    """The Ollama-API server on a loop of its own, for a command that runs its own loop."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    fake = asyncio.run_coroutine_threadsafe(FakeOllama().start(), loop).result(10)
    yield fake
    asyncio.run_coroutine_threadsafe(fake.stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def test_relabel_command_renames_a_dimension_with_progress(labelled, fake_in_thread, tmp_path):
    store, owner, topic_of_group = labelled
    Labeller(store, LabelSettings()).scan()
    store.close()  # the command opens the store itself, as with a stopped worker
    fake_in_thread.respond = respond_by_topic
    args = ["labels", "relabel", "--dimension", "prompt", "--project", "acme"]
    args += ["--data-dir", str(tmp_path), "--ollama-host", fake_in_thread.host]
    args += ["--ollama-model", fake_in_thread.models[0]]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "3 topics: 1 named by the LLM, 1 kept the offline name" in result.output
    assert "1 failed" in result.output and "LLM labels" in result.output  # the progress bar

    missing = CliRunner().invoke(main, [*args[:3], "nope", *args[4:]])
    assert missing.exit_code == 1 and "No text dimension 'nope'" in missing.output
    reopened = EdgeStore(tmp_path / "qdrant")
    try:
        assert shown(reopened, owner)[topic_of_group["password"]]["label"] == LLM_NAME
    finally:
        reopened.close()


async def test_a_persons_label_is_never_overwritten(labelled, aiohttp_client, embedder):
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
        ollama = OllamaLabeller(fake.host, fake.models[0], timeout_s=5, min_timeout_s=5)
        labeller = Labeller(store, LabelSettings(), ollama, embedder)
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
