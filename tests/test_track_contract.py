"""POST /track: every row of Turret's public contract, against a real broker."""

from __future__ import annotations

import json
import re
import uuid

import pytest

from turret_stream.http import create_app
from turret_stream.keys import KeyStore
from turret_stream.settings import Settings

from .conftest import consume, decode


async def always_ready() -> bool:
    return True


@pytest.fixture
def api_key(keystore: KeyStore) -> str:
    return keystore.create("acme").secret


@pytest.fixture
async def client(aiohttp_client, settings: Settings, keystore: KeyStore):
    return await aiohttp_client(create_app(settings, keystore=keystore, worker_probe=always_ready))


def event(**fields):
    body = {"name": "user_prompt", "metadata": {"prompt": "How do I reset my password?"}}
    body.update(fields)
    return body


async def post(client, body, key=None, header="X-API-Key", **kwargs):
    headers = kwargs.pop("headers", {})
    if key is not None:
        headers[header] = key
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    resp = await client.post("/track", data=data, headers=headers, **kwargs)
    return resp, await resp.json()


async def test_success_generates_missing_ids(client, api_key):
    resp, body = await post(client, event(), api_key)
    assert resp.status == 200
    assert body["success"] is True
    assert body["message"] == "Event tracked successfully"
    assert re.fullmatch(r"evt_[0-9a-f]{32}", body["event_id"])
    assert uuid.UUID(body["session_id"]).version == 4
    assert uuid.UUID(body["user_id"]).version == 4


async def test_given_ids_are_returned_as_is(client, api_key):
    resp, body = await post(client, event(session_id="sess 1/ä", user_id="u-42"), api_key)
    assert resp.status == 200
    assert (body["session_id"], body["user_id"]) == ("sess 1/ä", "u-42")


@pytest.mark.parametrize("header", ["X-API-Key", "x-api-key", "X-API-KEY", "x-Api-kEy"])
async def test_api_key_header_is_case_insensitive(client, api_key, header):
    resp, _ = await post(client, event(), api_key, header=header)
    assert resp.status == 200


@pytest.mark.parametrize("key", [None, "", "nope", "tsk_000000000000_" + "a" * 43])
async def test_missing_or_unknown_key_is_401(client, key):
    resp, body = await post(client, event(), key)
    assert resp.status == 401
    assert body == {"success": False, "error": "Invalid API key", "code": "INVALID_API_KEY"}


async def test_revoked_key_is_refused_on_next_request(client, keystore, api_key):
    assert (await post(client, event(), api_key))[0].status == 200
    keystore.revoke(api_key.split("_")[1])
    resp, body = await post(client, event(), api_key)
    assert resp.status == 401 and body["code"] == "INVALID_API_KEY"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"metadata": {}}, "name"),
        ({"name": "x"}, "metadata"),
        ({}, "name"),
        ({"name": None, "metadata": {}}, "name"),
        ({"name": "x", "metadata": None}, "metadata"),
    ],
)
async def test_missing_required_field(client, api_key, body, field):
    resp, out = await post(client, body, api_key)
    assert resp.status == 400
    assert out["code"] == "MISSING_REQUIRED_FIELD"
    assert out["error"] == f"Missing required field: {field}"
    assert out["success"] is False


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (event(name=7), "name"),
        (event(name=""), "name"),
        (event(name="   "), "name"),
        (event(name="n" * 256), "name"),
        (event(metadata=["prompt"]), "metadata"),
        (event(metadata="prompt"), "metadata"),
        (event(metadata={"prompt": {"nested": 1}}), "metadata.prompt"),
        (event(metadata={"tags": ["a"]}), "metadata.tags"),
        (event(session_id=12), "session_id"),
        (event(session_id=""), "session_id"),
        (event(session_id="s" * 256), "session_id"),
        (event(user_id=["u"]), "user_id"),
        (event(user_id="u" * 256), "user_id"),
    ],
)
async def test_invalid_field_is_named(client, api_key, body, field):
    resp, out = await post(client, body, api_key)
    assert resp.status == 400
    assert out["code"] == "INVALID_REQUEST"
    assert f"'{field}'" in out["error"]
    assert out["field"] == field


@pytest.mark.parametrize(
    "raw", [b"{not json", b"", b"[1, 2]", b'"text"', b"\xff\xfe", b'{"name": NaN}']
)
async def test_unparseable_or_non_object_body(client, api_key, raw):
    resp, out = await post(client, raw, api_key)
    assert resp.status == 400
    assert out["code"] == "INVALID_REQUEST"


async def test_text_too_long_boundary(client, api_key):
    ok, _ = await post(client, event(metadata={"prompt": "a" * 10_000}), api_key)
    assert ok.status == 200
    resp, out = await post(client, event(metadata={"prompt": "a" * 10_001}), api_key)
    assert resp.status == 400
    assert out["code"] == "TEXT_TOO_LONG"
    assert "metadata.prompt" in out["error"] and "10000" in out["error"]


async def test_missing_field_wins_over_text_too_long(client, api_key):
    resp, out = await post(client, {"metadata": {"prompt": "a" * 20_000}}, api_key)
    assert resp.status == 400
    assert out["code"] == "MISSING_REQUIRED_FIELD"


async def test_body_over_byte_limit_is_413(aiohttp_client, settings, keystore, api_key):
    small = settings.with_overrides(**{"http.max_body_bytes": 2048})
    client = await aiohttp_client(create_app(small, keystore=keystore, worker_probe=always_ready))
    body = json.dumps(event(metadata={"prompt": "a" * 4000}))
    resp, out = await post(client, body, api_key)
    assert resp.status == 413
    assert out["code"] == "PAYLOAD_TOO_LARGE"
    assert "2048" in out["error"]
    # Just under the limit still goes through.
    fits = json.dumps(event(metadata={"prompt": "a" * 1900}))
    assert len(fits) <= 2048
    assert (await post(client, fits, api_key))[0].status == 200


async def test_rate_limit_per_key_with_retry_after(aiohttp_client, settings, keystore):
    limited = settings.with_overrides(
        **{"rate_limit.events": 2, "rate_limit.window_s": 60, "rate_limit.burst": 3}
    )
    client = await aiohttp_client(create_app(limited, keystore=keystore, worker_probe=always_ready))
    key_a, key_b = keystore.create("a").secret, keystore.create("b").secret
    for _ in range(3):
        assert (await post(client, event(), key_a))[0].status == 200
    resp, out = await post(client, event(), key_a)
    assert resp.status == 429
    assert out["code"] == "RATE_LIMIT_EXCEEDED"
    # 2 events a minute: one token takes 30 s to come back.
    assert out["retry_after"] == 30
    assert out["error"] == "Rate limit exceeded. Try again in 30 seconds."
    assert resp.headers["Retry-After"] == "30"
    # Another key has its own bucket.
    assert (await post(client, event(), key_b))[0].status == 200


async def test_unknown_route_and_method_are_json(client):
    resp = await client.get("/nope")
    assert resp.status == 404 and (await resp.json())["code"] == "NOT_FOUND"
    resp = await client.get("/track")
    assert resp.status == 405 and (await resp.json())["code"] == "METHOD_NOT_ALLOWED"


async def test_accepted_event_is_on_the_topic(client, settings, api_key):
    resp, body = await post(
        client,
        event(session_id="s-1", user_id="u-1", metadata={"prompt": "hi", "plan": "pro", "n": 3}),
        api_key,
    )
    assert resp.status == 200
    [message] = await consume(settings, 1)
    assert message.key == b"acme:s-1"
    value = decode(message)
    assert value["event_id"] == body["event_id"]
    assert value["project"] == "acme"
    assert value["metadata"] == {"prompt": "hi", "plan": "pro", "n": 3}
    assert (value["session_id"], value["user_id"]) == ("s-1", "u-1")
    assert value["session_generated"] is False


async def test_order_per_session_is_preserved(client, settings, api_key):
    sessions = [f"s{i}" for i in range(5)]
    sent: dict[str, list[str]] = {s: [] for s in sessions}
    for step in range(8):
        for s in sessions:
            _, body = await post(
                client, event(session_id=s, metadata={"prompt": f"{s} step {step}"}), api_key
            )
            sent[s].append(body["event_id"])
    messages = await consume(settings, 40)
    assert len(messages) == 40
    seen: dict[str, list[str]] = {s: [] for s in sessions}
    partitions: dict[str, set[int]] = {s: set() for s in sessions}
    for m in sorted(messages, key=lambda m: (m.partition, m.offset)):
        value = decode(m)
        seen[value["session_id"]].append(value["event_id"])
        partitions[value["session_id"]].add(m.partition)
    assert seen == sent
    assert all(len(p) == 1 for p in partitions.values())


async def test_idempotency_key_names_the_same_event(client, api_key):
    headers = {"Idempotency-Key": "retry-me"}
    _, first = await post(client, event(), api_key, headers=dict(headers))
    _, again = await post(client, event(), api_key, headers=dict(headers))
    assert first["event_id"] == again["event_id"]
    assert first["session_id"] == again["session_id"]
    _, other = await post(client, event(), api_key, headers={"Idempotency-Key": "another"})
    assert other["event_id"] != first["event_id"]


async def test_health_and_openapi(client):
    assert (await (await client.get("/healthz")).json()) == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status == 200
    assert (await ready.json())["checks"] == {"broker": "ok", "worker": "ok"}
    doc = await (await client.get("/openapi.json")).json()
    assert doc["paths"]["/track"]["post"]["responses"].keys() >= {"200", "400", "401", "413"}


async def test_events_carry_their_keys_project_only(client, settings, keystore):
    key_a, key_b = keystore.create("alpha").secret, keystore.create("beta").secret
    # A body cannot claim another project.
    await post(client, event(session_id="x", project="beta"), key_a)
    await post(client, event(session_id="x"), key_b)
    messages = await consume(settings, 2)
    projects = sorted((m.key, decode(m)["project"]) for m in messages)
    assert projects == [(b"alpha:x", "alpha"), (b"beta:x", "beta")]
