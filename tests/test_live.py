"""GET /v1/live against a real broker: transitions are produced onto the transitions topic
keyed project:session_id, one Transition's JSON a message (as workers before
TransitionBatch did: the feed still reads them), or, as the sessions agent sends them now,
TransitionBatch messages."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
import uuid

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from aiokafka import AIOKafkaProducer

from turret_stream.broker import EmbeddedBroker
from turret_stream.http import create_app, live
from turret_stream.http.keys import LIVE_FEED, LIVE_HUB
from turret_stream.keys import KeyStore
from turret_stream.records import TopicEvent, Transition, TransitionBatch, event_key
from turret_stream.settings import Settings

from .conftest import free_port, make_settings

_steps = itertools.count(1)


async def always_ready() -> bool:
    return True


def transition(
    project: str = "acme",
    session_id: str = "s1",
    user_id: str = "u1",
    dimension: str = "prompt",
    step: int | None = None,
    **fields,
) -> Transition:
    step = next(_steps) if step is None else step
    values = {
        "project": project,
        "dimension": dimension,
        "session_id": session_id,
        "user_id": user_id,
        "from_topic": "tp_a" if step > 1 else None,
        "to_topic": "tp_b",
        "from_label": None,
        "to_label": "billing",
        "step": step,
        "event_id": f"evt_{uuid.uuid4().hex}",
        "at": time.time(),
        "previous_at": None,
    }
    values.update(fields)
    return Transition(**values)


async def produce(producer: AIOKafkaProducer, settings: Settings, *items: Transition) -> None:
    topic = settings.kafka.transitions_topic
    sent = [
        await producer.send(topic, key=event_key(t.project, t.session_id), value=t.dumps())
        for t in items
    ]
    await asyncio.gather(*sent)


async def next_message(ws, kind: str = "transition", timeout: float = 10.0) -> dict:
    """The next message of ``kind``; heartbeats in between are skipped."""
    async with asyncio.timeout(timeout):
        while True:
            msg = await ws.receive()
            assert msg.type is WSMsgType.TEXT, (msg.type, msg.data, msg.extra)
            data = json.loads(msg.data)
            if data["type"] == kind:
                return data
            assert data["type"] == "heartbeat", data


async def closed_with(ws, timeout: float = 10.0) -> tuple[int, str]:
    """Read until the server's close frame; its code and reason."""
    async with asyncio.timeout(timeout):
        while True:
            msg = await ws.receive()
            if msg.type is WSMsgType.CLOSE:
                return msg.data, msg.extra
            if msg.type in (WSMsgType.CLOSED, WSMsgType.ERROR):
                return ws.close_code, ""


async def until(condition, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


async def nothing_more(ws, wait: float = 0.7) -> None:
    """No transition arrives within ``wait`` seconds."""
    with pytest.raises(TimeoutError):
        await next_message(ws, timeout=wait)


@pytest.fixture
def keys(keystore: KeyStore) -> dict[str, str]:
    return {p: keystore.create(p).secret for p in ("acme", "beta")}


@pytest.fixture
async def producer(settings: Settings):
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=0)
    await producer.start()
    yield producer
    await producer.stop()


async def start_api(aiohttp_client, settings: Settings, keystore: KeyStore):
    client = await aiohttp_client(
        create_app(settings, keystore=keystore, worker_probe=always_ready)
    )
    await asyncio.wait_for(client.app[LIVE_FEED].ready.wait(), 15)
    return client


@pytest.fixture
async def api(aiohttp_client, settings: Settings, keystore: KeyStore):
    return await start_api(aiohttp_client, settings, keystore)


async def subscribe(api, key: str | None, how: str = "protocol", query: str = "", base: str = ""):
    """A socket to /v1/live on the test client ``api`` (or a session and ``base`` URL)."""
    url = f"{base}/v1/live" + (f"?{query}" if query else "")
    if how == "protocol":
        ws = await api.ws_connect(url, protocols=("turret.v1", key))
    elif how == "header":
        ws = await api.ws_connect(url, headers={"X-API-Key": key})
    else:
        ws = await api.ws_connect(url)
        await ws.send_json({"type": "auth", "api_key": key})
    return ws


@contextlib.asynccontextmanager
async def serve(settings: Settings, keystore: KeyStore):
    """The app on a real runner, as the CLI runs it; yields its URL and a client session."""
    runner = web.AppRunner(create_app(settings, keystore=keystore, worker_probe=always_ready))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    try:
        await asyncio.wait_for(runner.app[LIVE_FEED].ready.wait(), 15)
        async with aiohttp.ClientSession() as session:
            yield f"http://{host}:{port}", session
    finally:
        await runner.cleanup()


# --- auth -----------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["protocol", "header", "message"])
async def test_each_way_of_sending_the_key_subscribes(api, keys, producer, settings, how):
    ws = await subscribe(api, keys["acme"], how)
    if how == "protocol":
        # The handshake answers with turret.v1 only: the key is never echoed back.
        assert ws.protocol == "turret.v1"
    subscribed = await next_message(ws, "subscribed")
    assert subscribed == {"type": "subscribed", "project": "acme", "filters": {}}

    sent = transition(segments={"platform": "mobile"})
    await produce(producer, settings, sent)
    got = await next_message(ws)
    assert got == {"type": "transition", **sent.asdict()}
    assert "__faust" not in got
    await ws.close()


async def test_key_in_url_is_refused_and_never_logged(settings, keystore, keys, caplog):
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    key = keys["acme"]
    # Served like `turret-stream up` serves it (no handler cancellation), so a
    # WebSocket's access log line is written when it ends.
    async with serve(settings, keystore) as (url, session):
        async with session.get(f"{url}/v1/live?api_key={key}") as resp:
            body = await resp.json()
        assert resp.status == 401
        assert body["code"] == "INVALID_API_KEY" and "logs" in body["error"]
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(
                f"{url}/v1/live?session_id={key}", protocols=("turret.v1", key)
            )
        assert refused.value.status == 401

        # The accepted ways leave no trace of the key in the access log either.
        for how in ("protocol", "header", "message"):
            ws = await subscribe(session, key, how, query="dimension=prompt", base=url)
            await next_message(ws, "subscribed")
            await ws.close()
        await until(lambda: len(access_lines(caplog)) >= 5)
    lines = access_lines(caplog)
    assert not [line for line in lines if key in line]
    assert any("api_key=REDACTED" in line for line in lines)
    assert sum("dimension=prompt" in line and " 101 " in line for line in lines) == 3


def access_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]


async def test_bad_or_missing_key(api, keys, monkeypatch):
    ws = await api.ws_connect("/v1/live", protocols=("turret.v1", "tsk_nope"))
    assert await closed_with(ws) == (4001, "Invalid API key")

    resp = await api.get("/v1/live", headers={"X-API-Key": "nope", "Upgrade": "websocket"})
    assert resp.status == 401 and (await resp.json())["error"] == "Invalid API key"

    ws = await subscribe(api, "tsk_000000000000_" + "a" * 43, "message")
    assert await closed_with(ws) == (4001, "Invalid API key")

    monkeypatch.setattr(live, "AUTH_TIMEOUT_S", 0.3)
    ws = await api.ws_connect("/v1/live")  # says nothing
    assert (await closed_with(ws))[0] == 4001
    await until(lambda: api.app[LIVE_HUB].connections == 0)


async def test_plain_get_and_unknown_filters_are_refused(api, keys):
    resp = await api.get("/v1/live", headers={"X-API-Key": keys["acme"]})
    assert resp.status == 426
    resp = await api.get("/v1/live?sesion_id=s1", headers={"X-API-Key": keys["acme"]})
    body = await resp.json()
    assert resp.status == 400 and body["field"] == "sesion_id"


# --- delivery -------------------------------------------------------------------------


async def test_projects_are_isolated(api, keys, producer, settings):
    acme = await subscribe(api, keys["acme"])
    beta = await subscribe(api, keys["beta"])
    await next_message(acme, "subscribed")
    await next_message(beta, "subscribed")

    acme_sent = [transition("acme", session_id=f"s{i}") for i in range(5)]
    await produce(producer, settings, *acme_sent)
    got = [await next_message(acme) for _ in acme_sent]
    assert {t["event_id"] for t in got} == {t.event_id for t in acme_sent}

    beta_sent = transition("beta", session_id="s0")
    await produce(producer, settings, beta_sent)
    assert (await next_message(beta))["event_id"] == beta_sent.event_id
    await nothing_more(beta)
    await nothing_more(acme, 0.2)


async def test_filters(api, keys, producer, settings):
    key = keys["acme"]
    wanted = {
        "dimension=answer": lambda t: t.dimension == "answer",
        "session_id=s2": lambda t: t.session_id == "s2",
        "user_id=u3": lambda t: t.user_id == "u3",
        "dimension=prompt&user_id=u1": lambda t: t.dimension == "prompt" and t.user_id == "u1",
    }
    sockets = {q: await subscribe(api, key, "header", query=q) for q in wanted}
    for ws in sockets.values():
        await next_message(ws, "subscribed")

    sent = [
        transition(session_id=f"s{s}", user_id=f"u{u}", dimension=d)
        for s, u, d in itertools.product((1, 2, 3), (1, 2, 3), ("prompt", "answer"))
    ]
    await produce(producer, settings, *sent)
    for query, ws in sockets.items():
        expected = {t.event_id for t in sent if wanted[query](t)}
        got = {(await next_message(ws))["event_id"] for _ in expected}
        assert got == expected, query
        await nothing_more(ws, 0.3)


def topic_event(project: str = "acme", dimension: str = "prompt", **fields) -> TopicEvent:
    values = {
        "id": f"te_{uuid.uuid4().hex}",
        "kind": "topic_created",
        "project": project,
        "dimension": dimension,
        "topic": "tp_new",
        "label": None,
        "size": 12,
        "examples": ["a", "b"],
        "at": time.time(),
    }
    values.update(fields)
    return TopicEvent(**values)


async def test_topic_events_and_the_events_filter(api, keys, producer, settings):
    """Topic events reach sockets that take them (events=topics or the default, of their
    dimension); transitions-only and session-filtered sockets never see them."""
    key = keys["acme"]
    queries = [
        "",
        "events=topics",
        "events=topics&dimension=answer",
        "events=transitions",
        "session_id=s1",
    ]
    sockets = {q: await subscribe(api, key, "header", query=q) for q in queries}
    for ws in sockets.values():
        await next_message(ws, "subscribed")
    beta = await subscribe(api, keys["beta"], query="events=topics")
    await next_message(beta, "subscribed")
    spike = topic_event(kind="topic_spiking", this_hour=40, baseline_per_hour=4.0, p_value=1e-9)
    answer = topic_event(dimension="answer", kind="topic_merged", merged_into="tp_big")
    topic = settings.kafka.topic_events_topic
    for e in (spike, answer):
        await producer.send_and_wait(topic, key=f"acme:{e.dimension}".encode(), value=e.dumps())
    await produce(producer, settings, transition(session_id="s1"))
    # Order holds within a topic, not between transitions and topic events.
    got = {}
    async with asyncio.timeout(10):
        while len(got) < 3:
            msg = json.loads((await sockets[""].receive()).data)
            if msg["type"] != "heartbeat":
                got[msg["type"]] = msg
    assert got["topic_spiking"]["id"] == spike.id and got["topic_spiking"]["this_hour"] == 40
    assert got["topic_spiking"]["examples"] == ["a", "b"]
    assert got["topic_merged"]["merged_into"] == "tp_big"
    assert got["topic_merged"]["dimension"] == "answer"
    assert got["transition"]["session_id"] == "s1"
    # The two topic events are keyed by their dimensions: no order between them either.
    topics_only, seen = sockets["events=topics"], {}
    async with asyncio.timeout(10):
        while len(seen) < 2:
            msg = json.loads((await topics_only.receive()).data)
            assert msg["type"] in ("heartbeat", "topic_spiking", "topic_merged"), msg
            if msg["type"] != "heartbeat":
                seen[msg["type"]] = msg["id"]
    assert seen == {"topic_spiking": spike.id, "topic_merged": answer.id}
    assert (await next_message(sockets["events=topics&dimension=answer"], "topic_merged"))[
        "id"
    ] == answer.id
    for query in ("events=transitions", "session_id=s1"):
        assert (await next_message(sockets[query]))["session_id"] == "s1"
    # Nothing else: no transition to topics-only sockets, no topic event to the others
    # (nothing_more fails on any message but a heartbeat).
    for ws in [*sockets.values(), beta]:
        await nothing_more(ws, 0.3)
    resp = await api.get("/v1/live?events=everything", headers={"X-API-Key": key})
    assert resp.status == 400 and (await resp.json())["field"] == "events"


async def test_order_of_a_session_is_kept_and_bad_messages_skipped(api, keys, producer, settings):
    ws = await subscribe(api, keys["acme"])
    await next_message(ws, "subscribed")
    await producer.send_and_wait(settings.kafka.transitions_topic, b"not json", key=b"acme:s1")
    sent = []
    for step in range(1, 61):
        sent.append(transition(session_id="s1", step=step))
        sent.append(transition(session_id=f"other-{step % 5}"))
    await produce(producer, settings, *sent)
    got = [await next_message(ws) for _ in sent]
    steps = [t["step"] for t in got if t["session_id"] == "s1"]
    assert steps == list(range(1, 61))
    assert api.app[LIVE_FEED].skipped == 1


async def test_batched_transitions_arrive_one_by_one_in_order(api, keys, producer, settings):
    ws = await subscribe(api, keys["acme"])
    await next_message(ws, "subscribed")
    topic = settings.kafka.transitions_topic
    s1 = [transition(session_id="s1", step=step, segments={"plan": "pro"}) for step in range(1, 41)]
    # Small messages, so the session's moves span several batches, as a busy partition's do.
    batches = TransitionBatch.split(s1, 4096)
    assert len(batches) > 2 and all(len(b.items) > 1 for b in batches[:-1])
    for batch in batches:
        await producer.send_and_wait(topic, batch.dumps(), key=b"acme:s1")
    # A batch holding anything but transitions is skipped whole; a lone one still counts.
    broken = TransitionBatch.split([transition(session_id="s1", step=41)], 4096)[0]
    broken.items.append({"project": "acme"})
    await producer.send_and_wait(topic, broken.dumps(), key=b"acme:s1")
    await produce(producer, settings, transition(session_id="s1", step=42))
    got = [await next_message(ws) for _ in range(41)]
    assert [t["step"] for t in got] == [*range(1, 41), 42]
    assert [t["event_id"] for t in got[:40]] == [t.event_id for t in s1]
    assert got[0]["segments"] == {"plan": "pro"} and got[0]["to_label"] == "billing"
    assert api.app[LIVE_FEED].skipped == 1
    await nothing_more(ws, 0.3)


async def test_heartbeats(aiohttp_client, settings, keystore, keys):
    settings = settings.with_overrides(**{"live.heartbeat_s": 0.3})
    api = await start_api(aiohttp_client, settings, keystore)
    ws = await subscribe(api, keys["acme"])
    await next_message(ws, "subscribed")
    beat = await next_message(ws, "heartbeat", timeout=3)
    assert abs(beat["ts"] - time.time()) < 5


# --- flow control and limits ------------------------------------------------------------


async def test_slow_client_is_closed_and_fast_client_gets_everything(
    aiohttp_client, settings, keystore, keys, producer
):
    settings = settings.with_overrides(**{"live.queue_size": 8, "live.heartbeat_s": 60.0})
    api = await start_api(aiohttp_client, settings, keystore)
    hub = api.app[LIVE_HUB]
    fast = await subscribe(api, keys["acme"])
    slow = await subscribe(api, keys["acme"])
    await next_message(fast, "subscribed")
    await next_message(slow, "subscribed")
    # The slow client stops reading: the server's writes back up through the sockets.
    slow._conn.protocol.pause_reading()

    received: list[str] = []

    async def read_fast() -> None:
        while True:
            received.append((await next_message(fast, timeout=30))["event_id"])

    reader = asyncio.create_task(read_fast())
    blob = "x" * 64_000  # large messages fill the socket buffers sooner
    sent: list[Transition] = []
    async with asyncio.timeout(20):
        while hub.dropped_slow == 0:
            batch = [transition(segments={"blob": blob}) for _ in range(10)]
            await produce(producer, settings, *batch)
            sent.extend(batch)
            await asyncio.sleep(0.05)
    # The slow client reads again: after what was already on its way, the close frame.
    slow._conn.protocol.resume_reading()
    code, reason = await closed_with(slow)
    assert code == 4008
    assert reason.startswith("client too slow: ") and reason.endswith(" messages behind")

    extra = [transition() for _ in range(10)]
    await produce(producer, settings, *extra)
    await until(lambda: len(received) == len(sent) + len(extra), timeout=15)
    reader.cancel()
    assert received == [t.event_id for t in sent + extra]  # one session: in order
    assert hub.clients == 1


async def test_max_clients(aiohttp_client, settings, keystore, keys):
    settings = settings.with_overrides(**{"live.max_clients": 2})
    api = await start_api(aiohttp_client, settings, keystore)
    first = await subscribe(api, keys["acme"])
    second = await subscribe(api, keys["beta"])
    await next_message(first, "subscribed")
    await next_message(second, "subscribed")

    refused = await subscribe(api, keys["acme"])
    assert await closed_with(refused) == (1013, "try again later")

    await first.close()
    await until(lambda: api.app[LIVE_HUB].connections == 1)
    again = await subscribe(api, keys["acme"])
    await next_message(again, "subscribed")


async def test_200_clients_all_receive(api, keys, producer, settings):
    url = api.make_url("/v1/live")
    # The test client's session allows 100 connections; these need their own.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def connect():
            ws = await session.ws_connect(url, protocols=("turret.v1", keys["acme"]))
            await next_message(ws, "subscribed")
            return ws

        sockets = await asyncio.gather(*(connect() for _ in range(200)))
        assert api.app[LIVE_HUB].clients == 200
        sent = transition(session_id="crowd")
        await produce(producer, settings, sent)
        got = await asyncio.gather(*(next_message(ws) for ws in sockets))
        assert {t["event_id"] for t in got} == {sent.event_id}
        await asyncio.gather(*(ws.close() for ws in sockets))


# --- lifecycle --------------------------------------------------------------------------


async def test_shutdown_closes_sockets_with_1001(settings, keystore, keys):
    runner = web.AppRunner(create_app(settings, keystore=keystore, worker_probe=always_ready))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    async with aiohttp.ClientSession() as session:
        ws = await subscribe(session, keys["acme"], base=f"http://{host}:{port}")
        await next_message(ws, "subscribed")
        started = time.monotonic()
        cleanup = asyncio.create_task(runner.cleanup())
        assert await closed_with(ws) == (1001, "server shutting down")
        await cleanup
        # Not aiohttp's 60 s wait for handlers that are still running.
        assert time.monotonic() - started < 5


async def test_api_starts_while_the_broker_is_down(aiohttp_client, tmp_path, keystore, keys):
    port = free_port()
    settings = make_settings(tmp_path / "down", port)
    api = await aiohttp_client(create_app(settings, keystore=keystore, worker_probe=always_ready))
    assert (await api.get("/healthz")).status == 200
    ws = await subscribe(api, keys["acme"])
    await next_message(ws, "subscribed")
    assert not api.app[LIVE_FEED].ready.is_set()

    async with EmbeddedBroker("127.0.0.1", port):
        await asyncio.wait_for(api.app[LIVE_FEED].ready.wait(), 20)
        producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)
        await producer.start()
        try:
            sent = transition()
            await produce(producer, settings, sent)
            assert (await next_message(ws))["event_id"] == sent.event_id
        finally:
            await producer.stop()
        await api.close()
