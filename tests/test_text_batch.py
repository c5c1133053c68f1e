"""The texts topic carries a batch's texts of one dimension per message (TextBatch)."""

from __future__ import annotations

import asyncio

import aiohttp
import numpy as np
import pytest

from turret_stream.agents.cluster import unpack
from turret_stream.keys import KeyStore
from turret_stream.records import EmbeddedText, TextBatch, dimension_key
from turret_stream.stack import running_stack

from .conftest import consume, decode, make_settings, wait_until
from .crash_child import event


def _text(i: int, text: str = "", metadata: dict | None = None) -> EmbeddedText:
    """Text ``i`` (crash_child's test event), its metadata by default holding the text."""
    text = text or f"text number {i}"
    vector = np.random.default_rng(i).standard_normal(384)
    return event(i, vector, float(i), text, {"prompt": text} if metadata is None else metadata)


def _json_size(message: TextBatch) -> int:
    return len(message.dumps(serializer="json"))


def test_split_keeps_order_and_every_field():
    texts = [_text(i) for i in range(50)]
    messages = TextBatch.split(texts, 1_000_000)
    assert len(messages) == 1
    assert [t.asdict() for t in messages[0].texts()] == [t.asdict() for t in texts]


@pytest.mark.parametrize("text", ["plain words " * 40, "émoji 🙂 ünïcode " * 40, '"\\\n' * 150])
def test_split_stays_under_the_byte_bound(text):
    # Escapes (non-ASCII, quotes, backslashes) make JSON longer than the text.
    texts = [_text(i, text, {"prompt": text, "other": text}) for i in range(60)]
    bound = 20_000
    messages = TextBatch.split(texts, bound)
    assert len(messages) > 1
    assert all(_json_size(m) <= bound for m in messages)
    assert [t.event_id for m in messages for t in m.texts()] == [t.event_id for t in texts]


def test_a_text_over_the_bound_goes_alone():
    texts = [_text(0), _text(1, "long " * 3000), _text(2)]
    messages = TextBatch.split(texts, 8192)
    assert [[t.event_id for t in m.texts()] for m in messages] == [[t.event_id] for t in texts]


async def test_a_batch_travels_as_one_message_and_an_old_lone_text_still_counts(tmp_path, broker):
    settings = make_settings(tmp_path, broker.port)
    key = KeyStore(settings.keys_db_path).create("acme").secret
    async with running_stack(settings, broker=False, worker=True, api=True) as stack:
        placed: list = []
        stack.topology.owners.listeners.append(placed.append)
        async with aiohttp.ClientSession(headers={"X-API-Key": key}) as http:

            async def post(i: int) -> str:
                body = {"name": "prompt", "metadata": {"prompt": f"reset my password, try {i}"}}
                async with http.post(f"{stack.api_url}/track", json=body) as r:
                    return (await r.json())["event_id"]

            # Posted at once: the embed agent takes them in one or two batches.
            ids = await asyncio.gather(*(post(i) for i in range(20)))
        await wait_until(lambda: len(placed) >= 20, timeout=60)
        # A worker before TextBatch sent each text alone: such a message left on the
        # topic by an upgrade is clustered too.
        lone = _text(99, "where is my card, it has not arrived")
        await (await stack.topology.texts.send(key=dimension_key("acme", "prompt"), value=lone))
        await wait_until(lambda: any(a.event_id == lone.event_id for a in placed), timeout=30)
        # Everything on the texts topic so far (fewer than asked: read until the timeout).
        found = await consume(settings, 1000, timeout=3.0, topic=settings.kafka.texts_topic)
        messages = [decode(m) for m in found]
    batches = [m for m in messages if "items" in m]
    assert sorted(item["event_id"] for m in batches for item in m["items"]) == sorted(ids)
    assert any(len(m["items"]) > 1 for m in batches)  # together, not a message a text
    assert sorted(a.event_id for a in placed) == sorted([*ids, lone.event_id])


def test_a_message_no_embed_agent_wrote_is_skipped_not_fatal(caplog):
    good = TextBatch.split([_text(1), _text(2)], 100_000)[0]
    broken = TextBatch(project="acme", dimension="prompt", items=[{"event_id": "x"}])
    texts = unpack([good, {"some": "json"}, broken, _text(3)])
    assert [t.event_id for t in texts] == [_text(i).event_id for i in (1, 2, 3)]
    assert caplog.text.count("skipped a malformed message on the texts topic") == 2
