"""Session actors on the real pipeline: live transitions A -> B -> A, in event order."""

from __future__ import annotations

import asyncio

import pytest

from turret_stream.agents.sessions import IdleSessions, advance
from turret_stream.client import TurretClient
from turret_stream.keys import KeyStore
from turret_stream.labels.book import LabelBook
from turret_stream.records import TopicAssignment
from turret_stream.stack import running_stack

from .conftest import make_settings, wait_until
from .test_pipeline import GROUPS

# Two groups of paraphrases (close enough to form one topic each).
A_TEXTS = GROUPS["password"]
B_TEXTS = GROUPS["card"]


def assignment(topic, event="e", at=0.0):
    return TopicAssignment(
        event_id=event,
        project="p",
        dimension="prompt",
        session_id="s",
        user_id="u",
        mc=0,
        topic=topic,
        received_at=at,
    )


def test_switch_needs_min_switch_events_in_a_row():
    state: dict = {}
    moves = [
        advance(state, assignment(t, f"e{i}", i), 2)
        for i, t in enumerate(["A", "A", "B", "A", None, "B", "B", "A", "A"])
    ]
    made = [(m.from_topic, m.to_topic, m.step, m.event_id) for m in moves if m]
    # The lone B at e2 is not a switch; B,None,B is (noise neither counts nor breaks);
    # each switch is dated at the first event of its run.
    assert made == [(None, "A", 1, "e0"), ("A", "B", 2, "e5"), ("B", "A", 3, "e7")]


def test_every_change_counts_with_min_switch_1():
    state: dict = {}
    moves = [advance(state, assignment(t, f"e{i}", i), 1) for i, t in enumerate("AABA")]
    assert [(m.from_topic, m.to_topic) for m in moves if m] == [(None, "A"), ("A", "B"), ("B", "A")]


@pytest.mark.timeout(180)
async def test_live_transitions_follow_a_journey(tmp_path, broker):
    settings = make_settings(tmp_path, broker.port, **{"labels.interval_s": 0.5})
    key = KeyStore(settings.keys_db_path).create("acme").secret
    async with running_stack(settings, broker=False, worker=True, api=True) as stack:
        seen, moves = [], []
        stack.topology.owners.listeners.append(seen.append)
        stack.topology.transition_listeners.append(moves.append)
        client = TurretClient(key, stack.api_url)

        def track(text: str, session: str) -> None:
            client.track("prompt", {"prompt": text}, session_id=session, user_id="u1")

        # Other sessions make the two topics exist first.
        for i, text in enumerate(A_TEXTS + B_TEXTS):
            await asyncio.to_thread(track, text, f"seed{i}")
        await wait_until(lambda: len(seen) >= 12)
        owner = stack.topology.owners.get("acme", "prompt")
        await wait_until(lambda: owner.model is not None and len(owner.model.topics()) >= 2)
        book = LabelBook(stack.store)
        await wait_until(
            lambda: len(book.labels(owner.names, list(owner.model.topics()))) >= 2, timeout=30
        )

        journey = [A_TEXTS[0], A_TEXTS[1], B_TEXTS[0], B_TEXTS[1], A_TEXTS[2], A_TEXTS[3]]
        for text in journey:
            await asyncio.to_thread(track, text, "journey")
        await wait_until(lambda: len([m for m in moves if m.session_id == "journey"]) >= 3)
        mine = [m for m in moves if m.session_id == "journey"]
        topic_a, topic_b = mine[0].to_topic, mine[1].to_topic
        assert [(m.from_topic, m.to_topic, m.step) for m in mine] == [
            (None, topic_a, 1),
            (topic_a, topic_b, 2),
            (topic_b, topic_a, 3),
        ]
        assert topic_a != topic_b
        assert mine[1].previous_at == mine[0].at and mine[2].at > mine[1].at
        assert all(m.user_id == "u1" and m.project == "acme" for m in mine)
        # Transitions carry the topics' labels (the offline labeller's, here).
        # (A topic renamed or split by a recluster during the journey may be unnamed for a
        # moment, so not every transition is checked.)
        assert any(m.to_label for m in mine)
        named = [m for m in mine if m.from_label and m.to_label]
        assert all(m.from_label != m.to_label for m in named)

        # A burst of sessions interleaved: each session's transitions stay in order.
        def burst() -> None:
            for round_ in range(4):
                for s in range(5):
                    text = (A_TEXTS if round_ < 2 else B_TEXTS)[(s + round_) % 6]
                    track(text, f"burst{s}")

        await asyncio.to_thread(burst)
        await wait_until(
            lambda: all(
                len([m for m in moves if m.session_id == f"burst{s}"]) >= 2 for s in range(5)
            )
        )
        for s in range(5):
            steps = [m.step for m in moves if m.session_id == f"burst{s}"]
            assert steps == sorted(steps) and steps[:2] == [1, 2]


def test_idle_session_rows_expire_after_the_dropoff_timeout():
    idle = IdleSessions(idle_after_s=60)
    assert idle.touch(0, "a", 0.0) == []
    assert idle.touch(0, "b", 30.0) == []
    assert idle.touch(1, "c", 0.0) == []
    # "a" is idle past the timeout by partition 0's clock; "b" is not yet.
    assert idle.touch(0, "b", 70.0) == ["a"]
    # Partition 1's rows go only with an event of partition 1 (its changelog partition).
    assert idle.touch(1, "d", 100.0) == ["c"]
    # Activity keeps a row: "b" was active at 70.
    assert idle.touch(0, "e", 125.0) == []
    assert idle.touch(0, "e", 131.0) == ["b"]
    assert len(idle) == 2


def test_a_restarted_worker_expires_the_rows_it_got_back():
    idle = IdleSessions(idle_after_s=60)
    idle.index(
        [
            ("old", {"": 0, "prompt": {"last_at": 10.0}}),
            ("new", {"": 0, "prompt": {"last_at": 100.0}, "title": {"last_at": 5.0}}),
        ]
    )
    assert idle.touch(0, "x", 120.0) == ["old"]
