"""Alert rules and webhooks: the API (real app, store and key store), deliveries to real
local receivers (aiohttp servers), and the guards on where requests may go."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket

import pytest
from aiohttp import web

from turret_stream.alerts.delivery import SIGNATURE_HEADER, Deliverer, DeliveryLog, verify
from turret_stream.alerts.rules import Rule
from turret_stream.alerts.urls import (
    UrlNotAllowed,
    check_url,
    check_url_resolved,
    resolve_allowed,
)
from turret_stream.http import create_app
from turret_stream.keys import KeyStore
from turret_stream.settings import AlertSettings, Settings
from turret_stream.storage import open_store

from .conftest import wait_until

LOCAL = AlertSettings(allowed_networks=["127.0.0.1/32"])


async def always_ready() -> bool:
    return True


class Receiver:
    """A webhook receiver on 127.0.0.1 whose answers the test scripts (status codes in
    order, then 200; ``hang`` never answers)."""

    def __init__(self, answers: list[int | str] | None = None) -> None:
        self.answers = list(answers or [])
        self.got: list[tuple[str, bytes, dict]] = []
        self.runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.got.append((request.path, body, dict(request.headers)))
        answer = self.answers.pop(0) if self.answers else 200
        if answer == "hang":
            await asyncio.Event().wait()
        return web.json_response({}, status=int(answer))

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/{name}", self.handle)
        self.runner = web.AppRunner(app, handler_cancellation=True)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def receiver():
    r = Receiver()
    base = await r.start()
    yield r, base
    await r.stop()


@pytest.fixture
async def api(aiohttp_client, settings: Settings, keystore: KeyStore):
    local = settings.with_overrides(**{"alerts.allowed_networks": ["127.0.0.1/32"]})
    client = await aiohttp_client(create_app(local, keystore=keystore, worker_probe=always_ready))
    keys = {p: keystore.create(p).secret for p in ("acme", "beta")}
    return client, keys


# --- where requests may go ----------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/hook",  # loopback
        "http://localhost/hook",
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata (link-local)
        "http://[fd00:ec2::254]/",  # AWS metadata over IPv6 (private)
        "http://10.1.2.3/",
        "http://192.168.0.10/",
        "http://100.64.0.1/",  # shared address space
        "http://[::ffff:127.0.0.1]/",  # IPv4-mapped loopback
        "http://0.0.0.0/",
        "http://[::1]/",
    ],
)
async def test_internal_addresses_are_refused_by_default(url):
    with pytest.raises(UrlNotAllowed):
        await check_url_resolved(url, AlertSettings())


async def test_allow_list_settings():
    await check_url_resolved("http://127.0.0.1:9/x", LOCAL)
    # Not the rest of the loopback network, nor other private addresses.
    with pytest.raises(UrlNotAllowed):
        await check_url_resolved("http://127.0.0.2/x", LOCAL)
    with pytest.raises(UrlNotAllowed, match="scheme"):
        check_url("http://example.com/", AlertSettings(allow_http=False))
    with pytest.raises(UrlNotAllowed, match="user or password"):
        check_url("https://u:p@example.com/", AlertSettings())
    with pytest.raises(UrlNotAllowed, match="allowed_hosts"):
        check_url("https://evil.com/", AlertSettings(allowed_hosts=["*.example.com"]))
    assert check_url("https://hooks.example.com/x", AlertSettings(allowed_hosts=["*.example.com"]))
    with pytest.raises(UrlNotAllowed):
        check_url("ftp://example.com/", AlertSettings())
    with pytest.raises(ValueError):
        AlertSettings(allowed_networks=["not-a-network"])


# --- the API --------------------------------------------------------------------------------


async def test_rule_crud_and_project_isolation(api, receiver):
    client, keys = api
    _, base = receiver
    acme = {"X-API-Key": keys["acme"]}
    body = {
        "name": "mobile share",
        "kind": "segment_share",
        "url": f"{base}/a",
        "segment": "platform",
        "value": "mobile",
        "min_share": 0.5,
    }
    r = await client.post("/v1/alerts", json=body, headers=acme)
    assert r.status == 201, await r.text()
    rule = (await r.json())["rule"]
    assert rule["secret"].startswith("whsec_") and rule["min_events"] == 20
    rule_id = rule["id"]
    listed = await (await client.get("/v1/alerts", headers=acme)).json()
    assert [x["id"] for x in listed["rules"]] == [rule_id]
    assert "secret" not in listed["rules"][0] and listed["rules"][0]["secret_hint"]
    r = await client.patch(
        f"/v1/alerts/{rule_id}", json={"min_share": 0.8, "enabled": False}, headers=acme
    )
    changed = (await r.json())["rule"]
    assert r.status == 200 and changed["min_share"] == 0.8 and changed["enabled"] is False
    assert changed["segment"] == "platform"
    # Another project sees nothing of it.
    beta = {"X-API-Key": keys["beta"]}
    assert (await client.get(f"/v1/alerts/{rule_id}", headers=beta)).status == 404
    assert (await (await client.get("/v1/alerts", headers=beta)).json())["rules"] == []
    assert (await client.delete(f"/v1/alerts/{rule_id}", headers=beta)).status == 404
    assert (await client.delete(f"/v1/alerts/{rule_id}", headers=acme)).status == 200
    assert (await client.get(f"/v1/alerts/{rule_id}", headers=acme)).status == 404
    assert (await client.get("/v1/alerts")).status == 401


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"name": "x", "kind": "nope", "url": "U"}, "INVALID_ALERT_RULE", "kind"),
        ({"kind": "topic_spiking", "url": "U"}, "INVALID_ALERT_RULE", "name"),
        (
            {"name": "x", "kind": "new_topic", "url": "U"},
            "INVALID_ALERT_RULE",
            "min_events_per_hour",
        ),
        (
            {"name": "x", "kind": "new_topic", "url": "U", "min_events_per_hour": 0},
            "INVALID_ALERT_RULE",
            "min_events_per_hour",
        ),
        (
            {
                "name": "x",
                "kind": "segment_share",
                "url": "U",
                "segment": "p",
                "value": "m",
                "min_share": 1.5,
            },
            "INVALID_ALERT_RULE",
            "min_share",
        ),
        (
            {"name": "x", "kind": "topic_spiking", "url": "U", "min_share": 0.5},
            "INVALID_ALERT_RULE",
            "min_share",
        ),
        (
            {"name": "x", "kind": "topic_spiking", "url": "http://169.254.169.254/"},
            "WEBHOOK_URL_NOT_ALLOWED",
            "url",
        ),
        (
            {"name": "x", "kind": "topic_spiking", "url": "http://10.0.0.1/"},
            "WEBHOOK_URL_NOT_ALLOWED",
            "url",
        ),
        (
            {"name": "x", "kind": "topic_spiking", "url": "file:///etc/passwd"},
            "WEBHOOK_URL_NOT_ALLOWED",
            "url",
        ),
        ([1, 2], "INVALID_ALERT_RULE", "body"),
    ],
)
async def test_bad_rules_are_400_with_a_code(api, receiver, body, code, field):
    client, keys = api
    _, base = receiver
    if isinstance(body, dict) and body.get("url") == "U":
        body = {**body, "url": f"{base}/x"}
    r = await client.post("/v1/alerts", json=body, headers={"X-API-Key": keys["acme"]})
    assert r.status == 400
    answer = await r.json()
    assert answer["code"] == code and answer["field"] == field, answer
    assert (await (await client.get("/v1/alerts", headers={"X-API-Key": keys["acme"]})).json())[
        "rules"
    ] == []


async def test_test_button_sends_a_signed_sample_and_logs_it(api, receiver):
    client, keys = api
    hook, base = receiver
    acme = {"X-API-Key": keys["acme"]}
    r = await client.post(
        "/v1/alerts",
        json={"name": "spikes", "kind": "topic_spiking", "url": f"{base}/spikes"},
        headers=acme,
    )
    rule = (await r.json())["rule"]
    r = await client.post(f"/v1/alerts/{rule['id']}/test", headers=acme)
    result = await r.json()
    assert r.status == 200 and result["success"] is True
    assert result["delivery"]["status"] == "delivered" and result["delivery"]["status_code"] == 200
    path, body, headers = hook.got[0]
    assert path == "/spikes" and headers["X-Turret-Event"] == "test"
    assert verify(rule["secret"], headers[SIGNATURE_HEADER], body)
    assert not verify(rule["secret"], headers[SIGNATURE_HEADER], body + b" ")
    sent = json.loads(body)
    assert sent["test"] is True and sent["rule"]["id"] == rule["id"]
    assert sent["event"]["kind"] == "topic_spiking" and sent["project"] == "acme"
    # A receiver answering 500: the test says so (one attempt, no retry).
    hook.answers = [500]
    result = await (await client.post(f"/v1/alerts/{rule['id']}/test", headers=acme)).json()
    assert result["success"] is False and result["delivery"]["status_code"] == 500

    async def logged() -> list:
        r = await client.get(f"/v1/alerts/{rule['id']}/deliveries", headers=acme)
        return (await r.json())["deliveries"]

    entries: list = []

    async def poll() -> bool:
        entries[:] = await logged()
        return [e["status"] for e in entries] == ["failed", "delivered"]

    async with asyncio.timeout(10):
        while not await poll():
            await asyncio.sleep(0.1)
    assert entries[0]["error"] == "HTTP 500"
    everything = await (await client.get("/v1/alerts/deliveries", headers=acme)).json()
    assert len(everything["deliveries"]) == 2
    assert (await client.get("/v1/alerts/deliveries?limit=0", headers=acme)).status == 400


# --- the deliverer ------------------------------------------------------------------------


def _rule(url: str, name: str = "r") -> Rule:
    return Rule(
        id=f"al_{name}",
        project="acme",
        name=name,
        kind="topic_spiking",
        url=url,
        secret="whsec_test",
    )


@pytest.fixture
def delivery_log(tmp_path):
    store = open_store(Settings(data_dir=tmp_path))
    yield DeliveryLog(store, keep=100)
    store.close()


async def test_retries_with_backoff_until_the_receiver_recovers(receiver, delivery_log):
    hook, base = receiver
    hook.answers = [500, 503, 200]
    settings = LOCAL.model_copy(update={"backoff_s": 0.05, "max_attempts": 5})
    deliverer = Deliverer(settings, delivery_log)
    await deliverer.start()
    try:
        d = deliverer.submit(_rule(f"{base}/h"), "topic_spiking", {"topic": "tp_1"})
        entry = await asyncio.wait_for(d.done, 10)
        assert entry["status"] == "delivered" and entry["attempts"] == 3
        # One delivery id on every attempt (receivers deduplicate on it).
        assert len({h["X-Turret-Delivery"] for _, _, h in hook.got}) == 1
        await deliverer.flush_log()
        assert delivery_log.list("acme", "al_r")[0]["status"] == "delivered"
    finally:
        await deliverer.stop()


async def test_a_hanging_receiver_holds_up_no_one_and_the_queue_is_bounded(delivery_log):
    hanging, healthy = Receiver(["hang"] * 10), Receiver()
    slow_base, ok_base = await hanging.start(), await healthy.start()
    settings = LOCAL.model_copy(
        update={
            "timeout_s": 0.5,
            "max_attempts": 2,
            "backoff_s": 0.05,
            "concurrency": 2,
            "queue_size": 3,
        }
    )
    deliverer = Deliverer(settings, delivery_log)
    await deliverer.start()
    try:
        stuck = deliverer.submit(_rule(f"{slow_base}/h", "slow"), "topic_spiking", {})
        ok = deliverer.submit(_rule(f"{ok_base}/h", "ok"), "topic_spiking", {})
        assert (await asyncio.wait_for(ok.done, 5))["status"] == "delivered"
        third = deliverer.submit(_rule(f"{ok_base}/h", "ok"), "topic_spiking", {})
        fourth = deliverer.submit(_rule(f"{slow_base}/h", "slow"), "topic_spiking", {})
        # Outstanding: stuck, third, fourth = queue_size; one more is dropped, not waited on.
        assert third is not None and fourth is not None
        assert deliverer.submit(_rule(f"{ok_base}/h", "ok"), "topic_spiking", {}) is None
        assert deliverer.dropped == 1
        entry = await asyncio.wait_for(stuck.done, 10)
        assert entry["status"] == "failed" and entry["attempts"] == 2
        assert "Timeout" in entry["error"]
        await asyncio.wait_for(third.done, 5)
        await asyncio.wait_for(deliverer.flush_log(), 10)
        statuses = [e["status"] for e in delivery_log.list("acme", None)]
        assert "dropped" in statuses
    finally:
        await deliverer.stop()
        await hanging.stop()
        await healthy.stop()


async def test_a_url_refused_at_delivery_fails_without_retrying(delivery_log):
    deliverer = Deliverer(AlertSettings(backoff_s=0.05), delivery_log)
    await deliverer.start()
    try:
        d = deliverer.submit(_rule("http://127.0.0.1:9/x"), "topic_spiking", {})
        entry = await asyncio.wait_for(d.done, 5)
        assert entry["status"] == "failed" and entry["attempts"] == 1
        assert "not allowed" in entry["error"]
    finally:
        await deliverer.stop()


async def test_the_log_keeps_the_newest_entries(receiver, delivery_log):
    _, base = receiver
    delivery_log.keep = 10
    deliverer = Deliverer(LOCAL, delivery_log)
    await deliverer.start()
    try:
        done = [deliverer.submit(_rule(f"{base}/h"), "topic_spiking", {}) for _ in range(25)]
        await asyncio.wait_for(asyncio.gather(*(d.done for d in done)), 20)
        await deliverer.flush_log()
        await wait_until(lambda: len(delivery_log.list("acme", None, None)) <= 12, 5)
    finally:
        await deliverer.stop()


async def test_cli_manages_rules_through_the_api(settings, keystore, receiver):
    from click.testing import CliRunner

    from turret_stream.cli import main

    hook, base = receiver
    local = settings.with_overrides(**{"alerts.allowed_networks": ["127.0.0.1/32"]})
    key = keystore.create("acme").secret
    runner = web.AppRunner(create_app(local, keystore=keystore, worker_probe=always_ready))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    prefix = ["alerts", "--url", f"http://{host}:{port}", "--api-key", key]

    def cli(*args: str):
        return CliRunner().invoke(main, [*prefix, *args])

    try:
        made = await asyncio.to_thread(
            cli,
            "create",
            "--name",
            "new",
            "--kind",
            "new_topic",
            "--webhook",
            f"{base}/n",
            "--min-events-per-hour",
            "50",
        )
        assert made.exit_code == 0, made.output
        rule = json.loads(made.output)
        assert rule["secret"].startswith("whsec_") and rule["min_events_per_hour"] == 50
        listed = await asyncio.to_thread(cli, "list")
        assert rule["id"] in listed.output and "new_topic" in listed.output
        sent = await asyncio.to_thread(cli, "test", rule["id"])
        assert sent.exit_code == 0 and hook.got[0][0] == "/n"
        bad = await asyncio.to_thread(
            cli,
            "create",
            "--name",
            "x",
            "--kind",
            "topic_spiking",
            "--webhook",
            "http://169.254.169.254/",
        )
        assert bad.exit_code == 1 and "WEBHOOK_URL_NOT_ALLOWED" in bad.output
        off = await asyncio.to_thread(cli, "enable", rule["id"], "--off")
        assert json.loads(off.output)["enabled"] is False
        gone = await asyncio.to_thread(cli, "delete", rule["id"])
        assert gone.exit_code == 0
        assert rule["id"] not in (await asyncio.to_thread(cli, "list")).output
    finally:
        await runner.cleanup()


async def test_a_cancelled_address_check_stays_cancelled(monkeypatch):
    # Cancelled just as the lookup completes: asyncio.wait_for on Python 3.11 returned the
    # lookup's result instead (a cancellation lost), and a webhook sender that lost its
    # cancellation at shutdown waited on its queue for ever: the worker never stopped.
    loop = asyncio.get_running_loop()
    answer: asyncio.Future = loop.create_future()
    asked = asyncio.Event()

    async def lookup(*args, **kwargs):
        asked.set()
        return await answer

    monkeypatch.setattr(loop, "getaddrinfo", lookup)
    check = asyncio.create_task(resolve_allowed("127.0.0.1", 80, LOCAL))
    await asked.wait()
    # The lookup's answer and the cancellation arrive together (the same loop iteration).
    answer.set_result([(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 80))])
    check.cancel()
    with pytest.raises(asyncio.CancelledError):
        await check


async def test_stop_returns_when_a_sender_misses_its_cancellation(delivery_log, monkeypatch):
    # A sender that lets one cancellation pass (as above, or any library that swallows
    # one) must not hold up the shutdown: stop() cancels again until the tasks end.
    started = asyncio.Event()

    async def attempt(self, d):
        started.set()
        with contextlib.suppress(asyncio.CancelledError):  # the lost cancellation
            await asyncio.Event().wait()
        self._finish(d, "failed", None, "interrupted")

    monkeypatch.setattr(Deliverer, "_attempt", attempt)
    deliverer = Deliverer(LOCAL, delivery_log)
    await deliverer.start()
    deliverer.submit(_rule("http://127.0.0.1:9/x"), "topic_spiking", {})
    await started.wait()
    await asyncio.wait_for(deliverer.stop(), 30)
