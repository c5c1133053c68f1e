"""One bad event never stops the line: an event the embed or cluster agent cannot
process is retried alone, then set aside in the dead-letter store, while every good event
of its batch, of its project and of another project, lands."""

from __future__ import annotations

import asyncio
import time
import uuid

import aiohttp
import numpy as np
import pytest
from click.testing import CliRunner

from turret_stream.agents.cluster import Owners
from turret_stream.catalog import dimension_names
from turret_stream.cli import main
from turret_stream.dead_letters import DeadLetterStore
from turret_stream.journal import Journal
from turret_stream.keys import KeyStore
from turret_stream.records import EmbeddedText, TrackedEvent, encode_vector, event_key
from turret_stream.settings import Settings
from turret_stream.stack import running_stack
from turret_stream.storage import open_store

from .conftest import make_settings, wait_until
from .test_pipeline import GROUPS

GOOD = GROUPS["password"] + GROUPS["card"]


def _event(project: str, prompt: str, **metadata: object) -> TrackedEvent:
    return TrackedEvent(
        event_id=f"evt_{uuid.uuid4().hex}",
        project=project,
        name="p",
        metadata={"prompt": prompt, **metadata},
        session_id=f"s-{project}",
        user_id="u",
        received_at=time.time(),
    )


@pytest.mark.timeout(180)
async def test_poison_events_go_to_dead_letters_and_the_rest_lands(tmp_path, broker):
    settings = make_settings(
        tmp_path / "data", broker.port, **{"dimensions.overrides": {"prompt": "text"}}
    )
    keys = KeyStore(settings.keys_db_path)
    acme, other = keys.create("acme").secret, keys.create("other").secret
    keys.close()
    good = [_event("acme", t) for t in GOOD] + [_event("other", t) for t in GOOD]
    # Both bypass the door (the API refuses them with 400): written straight to the
    # events topic with the real producer, as a pre-validation client or a bug could.
    infinite = _event("acme", "What is my card limit?", score=float("inf"))
    surrogate = _event("acme", "reset my \ud800 password")
    stream = [*good[:12], infinite, *good[12:18], surrogate, *good[18:]]

    async with running_stack(settings, broker=False, worker=True, api=True) as stack:
        stored: set[str] = set()
        stack.topology.owners.listeners.append(lambda a: stored.add(a.event_id))
        publisher = stack.publisher
        await asyncio.gather(
            *(
                publisher.publish(event_key(e.project, e.session_id), e.dumps(), e.event_id)
                for e in stream
            )
        )
        letters = DeadLetterStore(stack.store)
        await wait_until(lambda: letters.count("acme") == 2 and len(stored) == len(good), 90)
        assert stored == {e.event_id for e in good}
        await wait_until(lambda: stack.progress.lag == 0, 30)

        async with aiohttp.ClientSession(stack.api_url) as http:
            async with http.get("/v1/dead-letters", headers={"X-API-Key": acme}) as resp:
                body = await resp.json()
            assert resp.status == 200 and body["total"] == 2
            by_id = {d["event_id"]: d for d in body["dead_letters"]}
            assert "non-finite number" in by_id[infinite.event_id]["error"]
            assert "lone surrogate" in by_id[surrogate.event_id]["error"]
            # The original event comes back whole (as JSON text where JSON cannot hold it).
            assert "Infinity" in by_id[infinite.event_id]["event"]
            assert by_id[surrogate.event_id]["event"]["session_id"] == "s-acme"
            assert all(d["error"] and d["replayed_at"] is None for d in by_id.values())
            async with http.get("/v1/dead-letters", headers={"X-API-Key": other}) as resp:
                assert (await resp.json())["total"] == 0
            async with http.get("/metrics") as resp:
                metrics = await resp.text()
            assert "turret_dead_letters_total 2" in metrics
            assert "turret_pipeline_lag_events 0" in metrics

    def cli(*args: str):
        # In a thread: the command runs its own event loop.
        return asyncio.to_thread(
            CliRunner().invoke, main, ["dead-letters", *args, "--data-dir", str(settings.data_dir)]
        )

    listed = await cli("list", "--project", "acme")
    assert listed.exit_code == 0, listed.output
    assert infinite.event_id in listed.output and surrogate.event_id in listed.output
    replayed = await cli("replay", "--project", "acme")
    assert replayed.exit_code == 0 and "2 dead letter(s)" in replayed.output
    # Queued in the journal: `up` sends them through the pipeline on its next start.
    journal = Journal(settings.journal_path)
    pending = {r.event_id for r in journal.open()}
    await journal.close()
    assert {infinite.event_id, surrogate.event_id} <= pending
    again = await cli("replay", "--project", "acme")
    assert "0 dead letter(s)" in again.output  # each is replayed once unless it fails again


def test_a_failing_batch_is_retried_alone_and_only_the_bad_text_fails(tmp_path):
    settings = Settings(data_dir=tmp_path, dimensions={"overrides": {"prompt": "text"}})
    store = open_store(settings)
    try:
        owners = Owners(store, settings, 384)
        rng = np.random.default_rng(0)

        def text(n: int, dim: int = 384) -> EmbeddedText:
            v = rng.normal(size=dim).astype("float32")
            return EmbeddedText(
                event_id=f"evt_{n}",
                project="acme",
                dimension="prompt",
                text=f"text number {n} here",
                vector=encode_vector(v / np.linalg.norm(v)),
                model_id="m",
                name="p",
                metadata={},
                session_id="s",
                user_id="u",
                received_at=float(n),
            )

        # A text from another embedding model (wrong size) passes every check up front
        # and fails inside the owner, after the texts before it were learned.
        batch = [text(1), text(2), text(3, dim=8), text(4)]
        placed, failed = owners.process_isolated(batch)
        assert [item.event_id for item, _ in failed] == ["evt_3"]
        assert sorted(a.event_id for a in placed) == ["evt_1", "evt_2", "evt_4"]
        names = dimension_names("acme", "prompt")
        assert store.count(names.events) == 3
        assert owners.get("acme", "prompt").events == 3  # each good text counted once
    finally:
        store.close()
