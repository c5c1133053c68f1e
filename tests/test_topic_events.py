"""Topic events end to end: real broker, model, store and owner; events on /v1/live and an
alert rule delivered to a real local webhook receiver.

Events are produced onto the events topic with chosen times (as the API writes them), so
the owner sees five quiet hours of a topic and then a burst in the current hour: the
spike test (trends.py) runs on event time, not on how fast the test sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from aiokafka import AIOKafkaProducer

from turret_stream.alerts.delivery import SIGNATURE_HEADER, verify
from turret_stream.clustering.topic_events import TopicAnnouncer, TopicView
from turret_stream.clustering.topics import TopicChange
from turret_stream.keys import KeyStore
from turret_stream.records import TrackedEvent, event_key
from turret_stream.stack import running_stack
from turret_stream.trends import HOUR

from .conftest import make_settings, wait_until

CARD = [
    "My card has not arrived yet",
    "When will my new card be delivered?",
    "Still waiting for my debit card",
    "How long does card delivery take?",
    "The card you sent never came",
    "Where is my card? It hasn't shown up",
]
PASSWORD = [
    "How do I reset my password?",
    "I forgot my login credentials",
    "Can't log in, forgot my password",
    "Password reset link not working",
    "I need to recover my account password",
    "How can I change my password?",
]

PREFIXES = ["Hi, ", "Hello! ", "Please help: ", "Question: ", "Quick one: "]


def tracked(text: str, at: float, session: str) -> TrackedEvent:
    return TrackedEvent(
        event_id=f"evt_{uuid.uuid4().hex}",
        project="acme",
        name="user_prompt",
        metadata={"prompt": text, "platform": "ios"},
        session_id=session,
        user_id="u1",
        received_at=at,
    )


async def produce(settings, events: list[TrackedEvent]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=5)
    await producer.start()
    try:
        sent = [
            await producer.send(
                settings.kafka.events_topic,
                key=event_key(e.project, e.session_id),
                value=e.dumps(),
            )
            for e in events
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


class Receiver:
    """A real webhook receiver: an aiohttp server on 127.0.0.1 keeping what it got."""

    def __init__(self) -> None:
        self.got: list[tuple[dict, bytes, str]] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.got.append((dict(request.headers), body, request.headers.get(SIGNATURE_HEADER, "")))
        return web.json_response({"ok": True})

    async def __aenter__(self) -> str:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}/hook"

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()


async def read_until(ws, messages: list[dict], predicate, timeout: float = 90.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            msg = await ws.receive()
            assert msg.type is WSMsgType.TEXT, (msg.type, msg.data)
            messages.append(json.loads(msg.data))


def kinds(messages: list[dict], kind: str) -> list[dict]:
    return [m for m in messages if m["type"] == kind]


def announced(messages: list[dict], group: list[str]) -> bool:
    """A text of ``group`` (with a prefix) among the examples of a topic born, split off
    or named."""
    starts = tuple(p + text[:15] for p in PREFIXES for text in group)
    return any(
        x.startswith(starts)
        for e in messages
        if e["type"] in ("topic_created", "topic_split", "topic_labelled")
        for x in e["examples"]
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory, broker):
    tmp_path = tmp_path_factory.mktemp("topic-events")
    settings = make_settings(
        tmp_path,
        broker.port,
        **{
            "alerts.allowed_networks": ["127.0.0.1/32"],
            "alerts.check_interval_s": 1.0,
            "labels.interval_s": 1.0,
        },
    )
    keys = KeyStore(settings.keys_db_path)
    key = keys.create("acme").secret
    result: dict = {}
    hour = int(time.time() // HOUR)

    async def main() -> None:
        receiver = Receiver()
        async with (
            receiver as hook,
            running_stack(settings, broker=False, worker=True, api=True) as stack,
            aiohttp.ClientSession(stack.api_url, headers={"X-API-Key": key}) as http,
        ):
            rules = {}
            for body in (
                {"name": "spikes", "kind": "topic_spiking", "url": hook},
                {"name": "new", "kind": "new_topic", "url": hook, "min_events_per_hour": 3},
            ):
                r = await http.post("/v1/alerts", json=body)
                assert r.status == 201, await r.text()
                rules[body["kind"]] = (await r.json())["rule"]
            topics_ws = await http.ws_connect("/v1/live?events=topics")
            session_ws = await http.ws_connect("/v1/live?session_id=q0")
            messages: list[dict] = []
            session_messages: list[dict] = []
            await read_until(topics_ws, messages, lambda: kinds(messages, "subscribed"))
            await read_until(
                session_ws, session_messages, lambda: kinds(session_messages, "subscribed")
            )
            # Five quiet hours: 6 card and 6 password texts an hour.
            # Distinct texts: a key with few distinct values is typed a segment (enum).
            quiet = [
                tracked(PREFIXES[h] + texts[i], (hour - 5 + h) * HOUR + 60 * (i + 1), f"q{h}")
                for h in range(5)
                for texts in (CARD, PASSWORD)
                for i in range(6)
            ]
            await produce(settings, quiet)
            # Both groups become topics and are announced: born (or split off) as the
            # partition settles, or named by the labeller, in whatever order they come.
            await read_until(
                topics_ws,
                messages,
                lambda: (
                    len(kinds(messages, "topic_labelled")) >= 2
                    and announced(messages, CARD)
                    and announced(messages, PASSWORD)
                ),
            )
            # The current hour: a burst of card texts, sent in two halves.
            for half in range(2):
                burst = [
                    tracked(
                        f"{PREFIXES[i % 5]}{CARD[i % 6]} ({half}.{i})", hour * HOUR + i, f"b{i}"
                    )
                    for i in range(40)
                ]
                await produce(settings, burst)
                await read_until(topics_ws, messages, lambda: kinds(messages, "topic_spiking"))
                await wait_until(
                    lambda n=half: stack.topology.alerts.deliverer.delivered >= 3, timeout=30
                )
            # Let anything else that would come arrive (a second spike would be a storm:
            # the test below counts them).
            with contextlib.suppress(TimeoutError):
                await read_until(
                    topics_ws, messages, lambda: len(kinds(messages, "topic_spiking")) > 1, 5
                )
            # Every spike announced is delivered to the spike rule's webhook too.
            deliverer = stack.topology.alerts.deliverer

            def spikes_delivered() -> bool:
                got = [json.loads(body)["kind"] for _, body, _ in receiver.got]
                announced = len(kinds(messages, "topic_spiking"))
                return got.count("topic_spiking") >= announced and not deliverer.outstanding

            await wait_until(spikes_delivered, timeout=30)
            await deliverer.flush_log()
            log = await (await http.get("/v1/alerts/deliveries")).json()
            result.update(
                messages=messages,
                session_messages=session_messages,
                got=list(receiver.got),
                rules=rules,
                log=log,
            )
            await topics_ws.close()
            await session_ws.close()

    asyncio.run(main())
    keys.close()
    return result


@pytest.mark.slow
def test_topics_are_announced_with_label_size_and_examples(run):
    # Born, or split off a topic born before (the partition settles as events come).
    born = [e for e in run["messages"] if e["type"] in ("topic_created", "topic_split")]
    assert kinds(run["messages"], "topic_created")
    for event in born:
        assert event["project"] == "acme" and event["dimension"] == "prompt"
        assert event["topic"].startswith("tp_") and event["size"] >= 3
        assert 1 <= len(event["examples"]) <= 3
        if event["type"] == "topic_split":
            assert event["split_from"] in {e["topic"] for e in born}
    labelled = kinds(run["messages"], "topic_labelled")
    # Both groups of texts were announced, born or named (in 2 of ~20 local runs no
    # birth showed a password text), with the texts sent (with a prefix).
    assert announced(run["messages"], CARD) and announced(run["messages"], PASSWORD)
    assert len({e["topic"] for e in labelled}) >= 2
    assert all(isinstance(e["label"], str) and e["label"] and e["examples"] for e in labelled)


def spiking_topics(run) -> list[dict]:
    """The spike announcements. Once per topic and episode: the burst's card texts make
    one topic, or two where the partition settled them in two before the burst (then
    each part spikes on its own, once); a part split off after the spike shares its
    episode and is not announced again."""
    spikes = kinds(run["messages"], "topic_spiking")
    assert 1 <= len(spikes) <= 2
    assert len({s["topic"] for s in spikes}) == len(spikes)  # never twice for one topic
    return spikes


@pytest.mark.slow
def test_a_burst_is_announced_spiking_once_per_episode(run):
    spikes = spiking_topics(run)
    for spike in spikes:
        assert "card" in " ".join(spike["examples"])
        assert spike["p_value"] < 1e-6 and spike["this_hour"] >= 5
        # The baseline is the topic's own rate before this hour: its quiet events over
        # the ~5 hours it was observed (6 card texts an hour, or fewer where the
        # partition put some of them in another topic).
        quiet = spike["size"] - spike["this_hour"]
        assert spike["baseline_per_hour"] == pytest.approx(quiet / 5, rel=0.1)
        assert spike["baseline_per_hour"] <= 7.5
        assert spike["label"] and spike["examples"]
    # The card topic (its larger part) carried at least half of the quiet card texts.
    assert max(s["baseline_per_hour"] for s in spikes) >= 2


@pytest.mark.slow
def test_a_session_filtered_socket_gets_no_topic_events(run):
    assert not [m for m in run["session_messages"] if m["type"].startswith("topic_")]


@pytest.mark.slow
def test_rules_deliver_signed_webhooks_and_log_them(run):
    secrets = {k: r["secret"] for k, r in run["rules"].items()}
    bodies = []
    for headers, body, signature in run["got"]:
        data = json.loads(body)
        assert verify(secrets[data["rule"]["kind"]], signature, body)
        assert headers["X-Turret-Event"] == data["kind"]
        bodies.append(data)
    by_kind = {}
    for data in bodies:
        by_kind.setdefault(data["kind"], []).append(data)
    # One delivery per spike announced; one new_topic delivery per topic (never twice).
    delivered = sorted(d["event"]["topic"] for d in by_kind["topic_spiking"])
    assert delivered == sorted(s["topic"] for s in spiking_topics(run))
    new_topics = [d["event"]["topic"] for d in by_kind["new_topic"]]
    assert len(new_topics) == len(set(new_topics)) >= 2
    log = run["log"]["deliveries"]
    assert len(log) == len(bodies)
    assert all(e["status"] == "delivered" and e["attempts"] == 1 for e in log)


def _view(size: int, label: str | None = None) -> TopicView:
    return TopicView(size=size, label=label, examples=["a", "b", "c", "d"], hours={}, first_seen=0)


def test_announcer_names_births_splits_and_merges():
    announcer = TopicAnnouncer("acme", "prompt")
    views = {
        "tp_new": _view(5),
        "tp_part": _view(4),
        "tp_gone": _view(9, "old"),
        "tp_big": _view(30, "big"),
    }
    events = announcer.changes(
        [
            TopicChange("born", "tp_new", 1.0),
            TopicChange("split", "tp_part", 1.0, other="tp_big"),
            TopicChange("merged", "tp_gone", 1.0, other="tp_big"),
            TopicChange("retired", "tp_old", 1.0),
        ],
        lambda topics: {t: views[t] for t in topics if t in views},
        event_time=10.0,
    )
    by_kind = {e.kind: e for e in events}
    assert set(by_kind) == {"topic_created", "topic_split", "topic_merged"}
    assert by_kind["topic_split"].split_from == "tp_big" and by_kind["topic_split"].size == 4
    merged = by_kind["topic_merged"]
    # The gone topic's name, the size of the topic it went into.
    assert merged.merged_into == "tp_big" and merged.label == "old" and merged.size == 30
    assert all(len(e.examples) == 3 for e in events)


def test_spiking_is_announced_once_per_episode_and_again_after_a_quiet_hour():
    announcer = TopicAnnouncer("acme", "prompt")
    h = 1000
    baseline = {h - k: 6 for k in range(1, 6)}

    def at(hour: int, count: int) -> list:
        hours = {**baseline, hour: count}
        return announcer.counts({"tp": (hours, (h - 5) * HOUR)}, hour * HOUR + 1, lambda t: {})

    assert at(h, 10) == []  # within chance
    assert len(at(h, 40)) == 1
    assert at(h, 60) == []  # the same hour: the same episode
    assert at(h + 1, 80) == []  # still spiking the next hour: the same episode
    # A part split off the spiking topic shares its episode.
    split = announcer.changes(
        [TopicChange("split", "tp_part", 1.0, other="tp")], lambda t: {}, (h + 1) * HOUR
    )
    assert split[0].split_from == "tp"
    part = {"tp_part": ({h + 1: 30}, (h - 5) * HOUR)}
    assert announcer.counts(part, (h + 1) * HOUR, lambda t: {}) == []
    assert len(at(h + 3, 90)) == 1  # after an hour without a spike: a new episode
