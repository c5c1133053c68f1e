"""One bad event never stops the line: an event the embed or cluster agent cannot
process is retried alone, then set aside in the dead-letter store, while every good event
of its batch, of its project and of another project, lands."""

from __future__ import annotations

import asyncio
import time
import uuid

import aiohttp
import pytest
from click.testing import CliRunner

from turret_stream.cli import main
from turret_stream.dead_letters import DeadLetterStore
from turret_stream.journal import Journal
from turret_stream.keys import KeyStore
from turret_stream.records import TrackedEvent, event_key
from turret_stream.stack import running_stack

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
