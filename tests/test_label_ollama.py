"""Topic names from Ollama: success, prompt shape, cleaning, and every way Ollama can fail.

No Ollama server can be installed on this machine, so these tests run ``OllamaLabeller`` (and the
real ``ollama`` client under it) against ``FakeOllama``: an aiohttp server on 127.0.0.1 that
speaks Ollama's documented HTTP API (``/api/tags`` and ``/api/chat`` with the real request and
response JSON shapes, ``{"error": ...}`` bodies and status codes) and answers from a per-test
script. It is a fake only for that reason. ``test_real_ollama`` runs the labeller against a real
Ollama when ``TURRET_TEST_OLLAMA_HOST`` is set (model from ``TURRET_TEST_OLLAMA_MODEL``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web

from turret_stream.labels.ollama import (
    DEFAULT_MODEL,
    NAME_SCHEMA,
    OllamaLabel,
    OllamaLabeller,
    clean_name,
)

from .conftest import free_port

MODEL = "qwen2.5:0.5b-instruct"
GOOD = json.dumps(
    {"name": "Billing Issues", "description": "Users ask why they were charged twice."}
)
EXAMPLES = [
    "I was charged twice for my subscription this month",
    "why did my card get billed two times?",
    "refund the duplicate charge please",
]


@dataclass
class Reply:
    """One scripted answer to ``/api/chat``."""

    content: str = GOOD
    status: int = 200
    delay_s: float = 0.0


class FakeOllama:
    """Ollama's ``/api/tags`` and ``/api/chat`` on 127.0.0.1, answering from ``script``."""

    def __init__(self, models: tuple[str, ...] = (MODEL,)) -> None:
        self.models = list(models)
        self.script: list[Reply] = []  # consumed in order; then every answer is Reply()
        self.requests: list[dict[str, Any]] = []
        self.request_times: list[float] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def host(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, port: int = 0) -> FakeOllama:
        app = web.Application()
        app.router.add_get("/api/tags", self._tags)
        app.router.add_post("/api/chat", self._chat)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        self._stopping.set()  # wakes handlers still "thinking" so shutdown is quick
        if self._runner is not None:
            await self._runner.cleanup()

    async def _tags(self, request: web.Request) -> web.Response:
        models = [
            {
                "name": name,
                "model": name,
                "modified_at": "2025-01-10T12:00:00.000000+00:00",
                "size": 397821319,
                "digest": "a8b0c5157701" + "0" * 52,
                "details": {
                    "parent_model": "",
                    "format": "gguf",
                    "family": "qwen2",
                    "families": ["qwen2"],
                    "parameter_size": "494.03M",
                    "quantization_level": "Q4_K_M",
                },
            }
            for name in self.models
        ]
        return web.json_response({"models": models})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        self.request_times.append(time.monotonic())
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._answer(request)
        finally:
            self.in_flight -= 1

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "invalid character looking for beginning of value")
        self.requests.append(body)
        reply = self.script.pop(0) if self.script else Reply()
        if reply.delay_s:
            # "Thinking" until the delay is up, or until the server stops.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), reply.delay_s)
        # The checks real Ollama makes before it runs a model.
        if not body.get("model"):
            return _error(400, "model is required")
        if body["model"] not in self.models:
            return _error(404, f'model "{body["model"]}" not found, try pulling it first')
        if not isinstance(body.get("messages"), list):
            return _error(400, "messages must be a list")
        if reply.status != 200:
            return _error(reply.status, "llama runner process has terminated: exit status 2")
        done = {
            "model": body["model"],
            "created_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "message": {"role": "assistant", "content": reply.content},
            "done": True,
            "done_reason": "stop",
            "total_duration": 5_191_566_416,
            "load_duration": 2_154_458,
            "prompt_eval_count": 26,
            "prompt_eval_duration": 383_809_000,
            "eval_count": 29,
            "eval_duration": 4_799_921_000,
        }
        if body.get("stream", True) is not False:
            # Ollama streams NDJSON unless told "stream": false.
            first = {**done, "message": {"role": "assistant", "content": reply.content}}
            first.update(done=False)
            lines = [first, {**done, "message": {"role": "assistant", "content": ""}}]
            text = "".join(json.dumps(line) + "\n" for line in lines)
            return web.Response(text=text, content_type="application/x-ndjson")
        return web.json_response(done)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@pytest.fixture
async def fake() -> AsyncIterator[FakeOllama]:
    server = await FakeOllama().start()
    yield server
    await server.stop()


def labeller(host: str, **overrides: Any) -> OllamaLabeller:
    # Fast settings for tests; the defaults are sized for a CPU model and would be far too slow.
    options: dict[str, Any] = {
        "timeout_s": 2.0,
        "max_concurrency": 2,
        "retries": 0,
        "backoff_s": 0.01,
        "max_prompt_chars": 2000,
    }
    options.update(overrides)
    model = options.pop("model", MODEL)
    return OllamaLabeller(host, model, **options)


async def test_names_a_topic(fake: FakeOllama) -> None:
    async with labeller(fake.host) as ollama:
        label = await ollama.label(EXAMPLES)
    assert label == OllamaLabel("Billing Issues", "Users ask why they were charged twice.", MODEL)


async def test_request_has_schema_instruction_and_bounded_examples(fake: FakeOllama) -> None:
    examples = [f"example{i} " + "about invoices " * 40 for i in range(20)]
    diverse = ["diverse one: where can I download my invoice?", "diverse two " + "vat " * 300]
    async with labeller(fake.host, max_prompt_chars=1200) as ollama:
        await ollama.label(examples, diverse=diverse, context="A billing assistant")

    [body] = fake.requests
    assert body["model"] == MODEL
    assert body["stream"] is False
    assert body["format"] == NAME_SCHEMA
    assert set(body["format"]["required"]) == {"name", "description"}
    system, user = body["messages"]
    assert system["role"] == "system"
    assert "2-5 word" in system["content"] and "Title Case" in system["content"]
    assert "one sentence" in system["content"]
    assert user["role"] == "user"
    prompt = user["content"]
    assert len(prompt) <= 1200
    assert "A billing assistant" in prompt
    # The most representative examples make it in, cut (each is ~600 chars) but not dropped.
    assert "example0 about invoices" in prompt and "example1 about invoices" in prompt
    assert examples[0].strip() not in prompt
    assert "…" in prompt
    # Cut to fit: later examples are dropped before the leading ones lose their text.
    assert prompt.index("example0") < prompt.index("example1")
    assert body["options"]["num_predict"] > 0


async def test_short_examples_are_sent_whole_and_diverse_ones_after(fake: FakeOllama) -> None:
    async with labeller(fake.host) as ollama:
        await ollama.label(EXAMPLES, diverse=["how do I change my billing address?"])
    prompt = fake.requests[0]["messages"][1]["content"]
    for text in EXAMPLES:
        assert f"- {text}\n" in prompt
    assert prompt.index(EXAMPLES[-1]) < prompt.index("billing address")


async def test_no_examples_means_no_request(fake: FakeOllama) -> None:
    async with labeller(fake.host) as ollama:
        assert await ollama.label(["", "   "]) is None
    assert fake.requests == []


async def test_timeout_gives_none_within_budget(fake: FakeOllama) -> None:
    fake.script = [Reply(delay_s=10), Reply(delay_s=10)]
    timeout_s, retries, backoff_s = 0.3, 1, 0.05
    budget = (retries + 1) * timeout_s + backoff_s
    started = time.monotonic()
    async with labeller(
        fake.host, timeout_s=timeout_s, retries=retries, backoff_s=backoff_s
    ) as ollama:
        assert await ollama.label(EXAMPLES) is None
    elapsed = time.monotonic() - started
    assert budget * 0.9 <= elapsed < budget + 0.5
    assert len(fake.requests) == 2  # timeouts are retried


@pytest.mark.parametrize(
    "content",
    [
        "Billing Issues",  # not JSON
        "",
        "[]",
        '{"title": "Billing Issues", "description": "no name field"}',
        '{"name": 42, "description": "x"}',
        '{"name": "", "description": "x"}',
        '{"name": "Here is the name for this topic", "description": "x"}',
        '{"name": "Sure! The topic is billing", "description": "x"}',
        '{"name": "**Billing Issues**", "description": "x"}',
        '{"name": "# Billing", "description": "x"}',
        '{"name": "{\\"name\\": \\"Billing\\"}", "description": "x"}',
        '{"name": "12 / 34 - 56", "description": "x"}',
        '{"name": "Unknown", "description": "x"}',
        '{"name": "users keep asking about charges on their cards and refunds", "description": ""}',
        '{"name": "Billing\\nIssues", "description": "x"}',
        '{"name": "Billing Iss',  # cut off by num_predict
    ],
)
async def test_garbage_answer_gives_none(fake: FakeOllama, content: str) -> None:
    fake.script = [Reply(content=content)]
    async with labeller(fake.host, retries=2) as ollama:
        assert await ollama.label(EXAMPLES) is None
    assert len(fake.requests) == 1  # a bad answer is not retried


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ('"billing issues."', "Billing Issues"),
        ("  refund   requests!! ", "Refund Requests"),
        ("'password reset help'", "Password Reset Help"),
        ("“Login Problems”", "Login Problems"),
        ("Name: Billing Questions", "Billing Questions"),
        ("BILLING ISSUES", "Billing Issues"),
        ("iPhone sync problems", "iPhone Sync Problems"),
        ("API rate limits", "API Rate Limits"),
        ("the cost of GPU time", "The Cost of GPU Time"),
        ("export data to csv files every night", "Export Data to Csv Files"),
        ("rate limits and quotas for enterprise customers", "Rate Limits and Quotas"),
    ],
)
def test_clean_name(raw: str, name: str) -> None:
    assert clean_name(raw) == name


async def test_answer_is_cleaned(fake: FakeOllama) -> None:
    answer = {"name": '"slow   export of large reports to excel sheets."', "description": " A. "}
    fake.script = [Reply(content=json.dumps(answer))]
    async with labeller(fake.host) as ollama:
        label = await ollama.label(EXAMPLES)
    assert label is not None
    assert label.name == "Slow Export of Large Reports"
    assert label.description == "A."


async def test_server_down_gives_none_quickly_and_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    host = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    caplog.set_level(logging.DEBUG, logger="turret_stream.labels.ollama")
    started = time.monotonic()
    async with labeller(host, retries=2, backoff_s=0.05) as ollama:
        assert await ollama.label(EXAMPLES) is None
        assert await ollama.label(EXAMPLES) is None
        health = await ollama.health()
    assert time.monotonic() - started < 1.5
    assert not health.reachable and not health.ok
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "unreachable" in warnings[0].getMessage()


async def test_recovers_when_ollama_comes_up(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    caplog.set_level(logging.INFO, logger="turret_stream.labels.ollama")
    async with labeller(f"http://127.0.0.1:{port}", retries=0) as ollama:
        assert await ollama.label(EXAMPLES) is None
        server = await FakeOllama().start(port)
        try:
            label = await ollama.label(EXAMPLES)
            assert (await ollama.health()).ok
        finally:
            await server.stop()
    assert label is not None and label.name == "Billing Issues"
    assert any("works again" in r.getMessage() for r in caplog.records)


async def test_retries_server_errors_with_backoff(fake: FakeOllama) -> None:
    fake.script = [Reply(status=500), Reply(status=503), Reply()]
    async with labeller(fake.host, retries=2, backoff_s=0.1) as ollama:
        label = await ollama.label(EXAMPLES)
    assert label is not None and label.name == "Billing Issues"
    first, second, third = fake.request_times
    assert second - first >= 0.09
    assert third - second >= 0.19  # exponential: backoff_s, then 2 * backoff_s


async def test_gives_up_after_retries(fake: FakeOllama) -> None:
    fake.script = [Reply(status=500)] * 3
    async with labeller(fake.host, retries=2, backoff_s=0.01) as ollama:
        assert await ollama.label(EXAMPLES) is None
    assert len(fake.requests) == 3


async def test_missing_model_is_not_retried(fake: FakeOllama) -> None:
    async with labeller(fake.host, model="llama3.2:1b", retries=2) as ollama:
        assert await ollama.label(EXAMPLES) is None
        health = await ollama.health()
    assert len(fake.requests) == 1
    assert health.reachable and not health.model_available
    assert "llama3.2:1b" in health.detail


async def test_health_matches_untagged_model_names(fake: FakeOllama) -> None:
    fake.models = [MODEL, "llama3.2:latest"]
    async with labeller(fake.host) as ollama:
        assert (await ollama.health()).ok
    async with labeller(fake.host, model="llama3.2") as ollama:
        assert (await ollama.health()).ok


async def test_concurrency_is_bounded(fake: FakeOllama) -> None:
    fake.script = [Reply(delay_s=0.15) for _ in range(6)]
    async with labeller(fake.host, max_concurrency=2) as ollama:
        labels = await asyncio.gather(*(ollama.label(EXAMPLES) for _ in range(6)))
    assert all(label is not None for label in labels)
    assert fake.max_in_flight == 2


@pytest.mark.skipif(
    not os.environ.get("TURRET_TEST_OLLAMA_HOST"),
    reason="set TURRET_TEST_OLLAMA_HOST (and optionally TURRET_TEST_OLLAMA_MODEL) "
    "to test against a real Ollama server",
)
async def test_real_ollama() -> None:
    host = os.environ["TURRET_TEST_OLLAMA_HOST"]
    model = os.environ.get("TURRET_TEST_OLLAMA_MODEL", DEFAULT_MODEL)
    async with OllamaLabeller(host, model, timeout_s=120.0, retries=1) as ollama:
        health = await ollama.health()
        assert health.ok, health.detail
        label = await ollama.label(EXAMPLES, diverse=["can I get an invoice for the refund?"])
    assert label is not None, "the model gave no usable name (see the warning in the log)"
    assert 1 <= len(label.name.split()) <= 5
    assert label.model == model
