"""Values of a key its owner decided is a segment travel without a vector: the model does
not embed them and the broker does not carry their 384 floats, while the owner still
counts them and the events keep their segments."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence

import aiohttp
import numpy as np

from turret_stream.agents.embed import embed_batch
from turret_stream.catalog import Catalog, EnumKeys
from turret_stream.embedding import Embedder, open_embedder
from turret_stream.keys import KeyStore
from turret_stream.records import TextBatch, TrackedEvent, decode_vector
from turret_stream.settings import Settings
from turret_stream.stack import running_stack
from turret_stream.storage import open_store

from .conftest import consume, make_settings, wait_until


class Recording(Embedder):
    """The real model, noting every text it is asked to embed."""

    def __init__(self, inner: Embedder) -> None:
        # The bound method: the pipeline test then puts this one in its place.
        self._embed, self.model_id, self.dim = inner.embed, inner.model_id, inner.dim
        self.asked: list[str] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.asked.extend(texts)
        return self._embed(texts)


def _event(i: int, project: str, metadata: dict) -> TrackedEvent:
    return TrackedEvent(
        event_id=f"evt_{project}_{i}",
        project=project,
        name="user_prompt",
        metadata=metadata,
        session_id=f"s{i}",
        user_id="u1",
        received_at=1_700_000_000.0 + i,
    )


def test_a_decided_segment_is_not_embedded_in_its_project_only(tmp_path):
    model = Recording(open_embedder())
    events = [
        _event(1, "acme", {"prompt": "upgrade me to pro", "plan": "pro", "platform": "ios"}),
        # The same string as a prompt elsewhere: that one is text, and gets its vector.
        _event(2, "acme", {"prompt": "pro", "plan": "pro", "platform": "android"}),
        _event(3, "beta", {"prompt": "cancel my plan", "plan": "pro", "platform": "ios"}),
    ]
    decided = {"acme": frozenset({"plan", "platform"})}
    texts = embed_batch(events, model, Settings(), lambda p: decided.get(p, frozenset()))

    sent = {(t.event_id, t.dimension): t for t in texts}
    assert len(sent) == 9  # every value still goes to its key's owner
    assert sent[("evt_acme_1", "plan")].vector == ""
    assert sent[("evt_acme_2", "platform")].vector == ""
    assert sent[("evt_acme_1", "plan")].metadata == {}  # nothing its owner would read
    assert sent[("evt_acme_1", "prompt")].metadata == events[0].metadata
    assert sent[("evt_beta_3", "plan")].vector != ""  # beta's plan is not decided
    assert sent[("evt_beta_3", "plan")].metadata == events[2].metadata
    # Each embedded string once, and no value of acme's segments on its own account.
    assert sorted(model.asked) == sorted(["upgrade me to pro", "pro", "cancel my plan", "ios"])
    prompt = decode_vector(sent[("evt_acme_2", "prompt")].vector)
    assert np.allclose(prompt, open_embedder().embed(["pro"])[0], atol=1e-6)
    assert all(t.model_id == model.model_id for t in texts)


def test_decided_segments_follow_the_catalog(tmp_path):
    settings = Settings(data_dir=tmp_path)
    store = open_store(settings)
    try:
        catalog = Catalog(store)
        keys = EnumKeys(catalog, ttl_s=0)
        catalog.save_dimension("acme", "plan", "enum", False, {}, 0)
        assert keys.of("acme") == {"plan"} and keys.decided("acme") == frozenset()
        catalog.save_dimension("acme", "plan", "enum", True, {}, 0)
        catalog.save_dimension("acme", "prompt", "text", True, {}, 10)
        assert keys.decided("acme") == {"plan"} and keys.decided("beta") == frozenset()
        # Its values stopped repeating: the owner made it text, and it is embedded again.
        catalog.save_dimension("acme", "plan", "text", True, {}, 0)
        assert keys.decided("acme") == frozenset()
    finally:
        store.close()


def test_an_unreadable_catalog_means_every_value_is_embedded(tmp_path, caplog):
    settings = Settings(data_dir=tmp_path)
    store = open_store(settings)
    catalog = Catalog(store)
    catalog.save_dimension("acme", "plan", "enum", True, {}, 0)
    keys = EnumKeys(catalog, ttl_s=3600)
    store.close()  # as a store server that went away
    reads = 0
    scan = catalog.dimensions

    def counted(project: str):
        nonlocal reads
        reads += 1
        return scan(project)

    catalog.dimensions = counted
    assert keys.decided("acme") == frozenset()
    assert keys.decided("acme") == frozenset()
    assert reads == 1  # not tried again on every batch
    assert caplog.text.count("cannot read the catalog") == 1


async def test_the_pipeline_stops_embedding_a_segment_once_decided(tmp_path, broker):
    settings = make_settings(tmp_path, broker.port, **{"dimensions.min_observations": 10})
    key = KeyStore(settings.keys_db_path).create("acme").secret
    platforms = itertools.cycle(["ios", "android", "web"])
    count = itertools.count()
    async with running_stack(settings, broker=False, worker=True, api=True) as stack:
        model = Recording(stack.embedder)
        stack.embedder.embed = model.embed  # the embed agent calls it through this object
        placed: list = []
        stack.topology.owners.listeners.append(placed.append)
        catalog = Catalog(stack.store)
        async with aiohttp.ClientSession(headers={"X-API-Key": key}) as http:

            async def post(n: int) -> list[str]:
                ids = []
                for _ in range(n):
                    i = next(count)
                    body = {
                        "name": "user_prompt",
                        "metadata": {
                            "prompt": f"how do I reset my password, try {i}",
                            "platform": next(platforms),
                        },
                        "session_id": f"s{i % 4}",
                    }
                    async with http.post(f"{stack.api_url}/track", json=body) as r:
                        assert r.status == 200, await r.text()
                        ids.append((await r.json())["event_id"])
                return ids

            await post(10)  # 3 values in 10: a segment (dimensions.py)
            await wait_until(
                lambda: (catalog.dimension("acme", "platform") or {}).get("decided"), 60
            )
            assert catalog.dimension("acme", "platform")["type"] == "enum"

            def platform_items(messages: list) -> list[dict]:
                batches = [TextBatch.loads(m.value) for m in messages]
                return [t for b in batches for t in b.items if t["dimension"] == "platform"]

            topic = settings.kafka.texts_topic
            # The embed agent reads the catalog at most every 5 s: post until it has.
            async with asyncio.timeout(60):
                while True:
                    await post(2)
                    await asyncio.sleep(0.5)
                    found = platform_items(await consume(settings, 10_000, 2.0, topic))
                    # (Read partition by partition: any, not the last, is the newest.)
                    if any(t["vector"] == "" for t in found):
                        break
            asked_before = len(model.asked)
            later = await post(6)
            await wait_until(lambda: {a.event_id for a in placed} >= set(later), 60)

        messages = await consume(settings, 10_000, 3.0, topic)
    items = [t for m in messages for t in TextBatch.loads(m.value).items]
    mine = [t for t in items if t["event_id"] in later]
    assert sorted(t["dimension"] for t in mine) == ["platform"] * 6 + ["prompt"] * 6
    assert all((t["vector"] == "") == (t["dimension"] == "platform") for t in mine)
    assert not {"ios", "android", "web"} & set(model.asked[asked_before:])
    # The prompts' events still carry their segment.
    segments = {a.event_id: a.segments for a in placed if a.event_id in later}
    assert all(s.get("platform") in ("ios", "android", "web") for s in segments.values())
