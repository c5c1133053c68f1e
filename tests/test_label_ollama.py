"""Candidate names from Ollama: success, prompt shape, the rules enforced on answers with one
correction, time budget, and every way Ollama can fail.

No Ollama server can be installed on this machine, so these tests run ``OllamaLabeller`` (and the
real ``ollama`` client under it) against ``FakeOllama``: an aiohttp server on 127.0.0.1 that
speaks Ollama's documented HTTP API (``/api/tags`` and ``/api/chat`` with the real request and
response JSON shapes, ``{"error": ...}`` bodies and status codes) and answers from a per-test
script. It is a fake only for that reason; the scripted answers are the ones real small models
gave (copied names, one-word names, dangling words, questions as descriptions). Like Ollama on a
CPU and the shim in ``../shared/llm``, it finishes a request whose client has gone.
``test_real_ollama`` runs the labeller against a real Ollama when ``TURRET_TEST_OLLAMA_HOST`` is
set (model from ``TURRET_TEST_OLLAMA_MODEL``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web

from turret_stream.labels.ollama import (
    DEFAULT_MODEL,
    SYSTEM_PROMPT,
    OllamaLabeller,
    build_prompt,
    description_schema,
    name_schema,
)
from turret_stream.labels.rules import clean_description, clean_name

from .conftest import free_port

MODEL = "qwen2.5:0.5b-instruct"
NAMES = ["Duplicate Subscription Charges", "Double Card Billing", "Charged Twice Refunds"]
DESCRIPTION = "Users ask why they were charged twice for one subscription."
GOOD = json.dumps({"names": NAMES, "description": DESCRIPTION})
EXAMPLES = [
    "I was charged twice for my subscription this month",
    "why did my card get billed two times?",
    "refund the duplicate charge please",
]


def answer(*names: str, description: str = DESCRIPTION) -> str:
    return json.dumps({"names": list(names), "description": description})


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
        # When set, answers by the request's prompt instead (for work done in any order).
        self.respond: Callable[[str], Reply] | None = None
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
        if self.respond is not None:
            reply = self.respond(json.dumps(body.get("messages")))
        else:
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
        "min_timeout_s": 2.0,  # no pacing unless a test asks for it
        "max_concurrency": 2,
        "retries": 0,
        "backoff_s": 0.01,
        "max_prompt_chars": 2000,
    }
    options.update(overrides)
    model = options.pop("model", MODEL)
    return OllamaLabeller(host, model, **options)


def prompt_of(body: dict[str, Any]) -> str:
    return body["messages"][1]["content"]


async def test_names_a_topic(fake: FakeOllama) -> None:
    async with labeller(fake.host) as ollama:
        label = await ollama.label(EXAMPLES)
    assert label is not None
    assert label.name == NAMES[0] and label.candidates == tuple(NAMES)
    assert label.description == DESCRIPTION and label.model == MODEL
    assert not label.corrected and len(fake.requests) == 1


async def test_request_is_contrastive_with_schema_and_bounded_examples(fake: FakeOllama) -> None:
    examples = [f"example{i} " + "about invoices " * 40 for i in range(20)]
    diverse = ["diverse one: where can I download my invoice?", "diverse two " + "vat " * 300]
    neighbours = ["Invoice Download Links", "VAT Number Changes"]
    async with labeller(fake.host, max_prompt_chars=1200, candidates=3) as ollama:
        await ollama.label(
            examples, neighbours=neighbours, diverse=diverse, context="A billing assistant"
        )

    [body] = fake.requests
    assert body["model"] == MODEL
    assert body["stream"] is False
    assert body["format"] == name_schema(3)
    assert body["format"]["properties"]["names"]["minItems"] == 3
    system, user = body["messages"]
    assert system["role"] == "system"
    assert "2 to 5 words" in system["content"] and "Title Case" in system["content"]
    assert "third person" in system["content"] and "160" in system["content"]
    prompt = user["content"]
    assert len(prompt) <= 1200
    assert "A billing assistant" in prompt
    # The neighbours' names, to tell this topic apart from (before the messages).
    assert "for contrast only" in prompt
    assert "Invoice Download Links; VAT Number Changes" in prompt
    assert prompt.index("VAT Number Changes") < prompt.index("example0")
    assert body["format"]["properties"]["description"]["maxLength"] == 160
    # The most representative examples make it in, cut (each is ~600 chars) but not dropped.
    assert "example0 about invoices" in prompt and "example1 about invoices" in prompt
    assert examples[0].strip() not in prompt
    assert "…" in prompt
    assert prompt.index("example0") < prompt.index("example1")
    assert body["options"]["num_predict"] > 0


def test_the_instruction_shows_no_name_a_model_could_copy() -> None:
    # A quoted or Title Case phrase in the instruction is what small models returned for
    # unrelated topics ("Refund Requests" for an extra charge on a statement).
    instruction = SYSTEM_PROMPT.format(n=3)
    assert not re.search(r'"[^"]*"', instruction)
    assert not re.search(r"\b[A-Z][a-z]+ [A-Z][a-z]+\b", instruction.replace("Title Case", ""))


async def test_the_key_terms_come_last_as_material_for_the_names(fake: FakeOllama) -> None:
    terms = ["charged twice", "duplicate", "subscription", "charged twice", "refund"]
    async with labeller(fake.host) as ollama:
        await ollama.label(EXAMPLES, neighbours=["Card Delivery Times"], terms=terms)
    prompt = prompt_of(fake.requests[0])
    line = "Key terms of this topic, most distinctive first: "
    assert line + "charged twice, duplicate, subscription, refund\n" in prompt  # deduplicated
    # After the messages, nearest the answer: what the names are to be built from.
    assert prompt.index(EXAMPLES[-1]) < prompt.index(line)
    assert prompt.rstrip().endswith("using its key terms.")
    assert "key terms" in SYSTEM_PROMPT.format(n=3)


def test_key_terms_count_against_the_prompt_budget() -> None:
    examples = ["a message about a duplicate charge " * 4] * 12
    terms = ["a very long distinctive term number " + str(i) for i in range(8)]
    prompt = build_prompt(examples, [], "", 900, ["Card Delivery Times"], terms)
    assert prompt is not None and len(prompt) <= 900
    assert "number 7" in prompt and "a message about" in prompt


async def test_short_examples_are_sent_whole_and_diverse_ones_after(fake: FakeOllama) -> None:
    async with labeller(fake.host) as ollama:
        await ollama.label(EXAMPLES, diverse=["how do I change my billing address?"])
    prompt = prompt_of(fake.requests[0])
    for text in EXAMPLES:
        assert f"- {text}\n" in prompt
    assert prompt.index(EXAMPLES[-1]) < prompt.index("billing address")


async def test_no_examples_means_no_request(fake: FakeOllama) -> None:
    async with labeller(fake.host) as ollama:
        assert await ollama.label(["", "   "]) is None
    assert fake.requests == []


async def test_a_copied_neighbour_name_is_refused_and_corrected(fake: FakeOllama) -> None:
    neighbours = ["Refund Requests", "Card Payment Fees"]
    fake.script = [Reply(answer("refund requests", "Refund Requests.")), Reply(GOOD)]
    async with labeller(fake.host) as ollama:
        label = await ollama.label(EXAMPLES, neighbours=neighbours)
    assert label is not None and label.corrected
    assert label.candidates == tuple(NAMES)
    assert all("name of another topic" in why for _, why in label.rejected)
    # Asked afresh without the names it copied: corrected in the same conversation, a
    # 0.5B model returned the same neighbours' names again.
    first, again = (prompt_of(r) for r in fake.requests)
    assert "Card Payment Fees" in first and "Card Payment Fees" not in again
    assert EXAMPLES[0] in again
    assert [m["role"] for m in fake.requests[1]["messages"]] == ["system", "user"]
    # Sampled more freely than the first answer, which it would otherwise repeat.
    t1, t2 = (r["options"]["temperature"] for r in fake.requests)
    assert t2 > t1


async def test_copies_in_the_fresh_answer_stay_refused(fake: FakeOllama) -> None:
    neighbours = ["Refund Requests", "Card Payment Fees"]
    copy = Reply(answer("Card Payment Fees", "Refund Requests"))
    fake.script = [copy, copy]
    async with labeller(fake.host) as ollama:
        assert await ollama.label(EXAMPLES, neighbours=neighbours) is None
    assert len(fake.requests) == 2


async def test_other_broken_names_are_corrected_in_the_conversation(fake: FakeOllama) -> None:
    fake.script = [Reply(answer("Troubleshooting", "Help")), Reply(GOOD)]
    async with labeller(fake.host) as ollama:
        label = await ollama.label(EXAMPLES, neighbours=["Card Payment Fees"])
    assert label is not None and label.candidates == tuple(NAMES)
    correction = fake.requests[1]["messages"]
    assert [m["role"] for m in correction] == ["system", "user", "assistant", "user"]
    assert "'Troubleshooting' is one word" in correction[-1]["content"]


async def test_a_one_word_name_is_refused_and_corrected(fake: FakeOllama) -> None:
    fake.script = [
        Reply(answer("Troubleshooting", "Transfers")),
        Reply(answer("Failed Transfer Fees")),
    ]
    async with labeller(fake.host) as ollama:
        label = await ollama.label(EXAMPLES)
    assert label is not None and label.name == "Failed Transfer Fees"
    assert "one word" in fake.requests[1]["messages"][-1]["content"]


async def test_usable_candidates_need_no_correction(fake: FakeOllama) -> None:
    fake.script = [Reply(answer("Troubleshooting", "Declined Card Payments"))]
    async with labeller(fake.host) as ollama:
        label = await ollama.label(EXAMPLES)
    assert label is not None and label.candidates == ("Declined Card Payments",)
    assert label.rejected == (("Troubleshooting", "'Troubleshooting' is one word; use 2-5 words"),)
    assert len(fake.requests) == 1 and not label.corrected


async def test_a_broken_description_is_corrected_once(fake: FakeOllama) -> None:
    question = "Why was I charged twice for my subscription?"
    fake.script = [Reply(answer(*NAMES, description=question))] * 2
    async with labeller(fake.host) as ollama:
        label = await ollama.label(EXAMPLES)
    assert len(fake.requests) == 2  # one correction, not more
    assert "third person" in fake.requests[1]["messages"][-1]["content"]
    # The names stand; the description is left empty for the fallback's to take its place.
    assert label is not None and label.name == NAMES[0] and label.description == ""


async def test_a_description_correction_asks_for_the_description_alone(
    fake: FakeOllama,
) -> None:
    # Usable names, a description cut off by the token cap: the retry asks only for the
    # description (a fraction of the tokens), keeps the names, and takes the new sentence.
    cut = '{"names": ["Extra Fee on Statement", "Card Payment Fee"], "description": "The top'
    fake.script = [Reply(cut), Reply(json.dumps({"description": DESCRIPTION}))]
    async with labeller(fake.host) as ollama:
        label = await ollama.label(EXAMPLES)
    correction = fake.requests[1]
    assert "description is missing" in correction["messages"][-1]["content"]
    assert correction["format"] == description_schema()
    assert correction["options"]["num_predict"] < fake.requests[0]["options"]["num_predict"]
    assert correction["messages"][-2] == {"role": "assistant", "content": cut}
    assert label is not None and label.corrected
    assert label.candidates == ("Extra Fee on Statement", "Card Payment Fee")
    assert label.description == DESCRIPTION


async def test_unusable_names_are_asked_again_in_full(fake: FakeOllama) -> None:
    fake.script = [
        Reply(answer("Troubleshooting", description="Why?")),
        Reply(answer("Unrecognised Card Fees")),
    ]
    async with labeller(fake.host) as ollama:
        label = await ollama.label(EXAMPLES)
    assert fake.requests[1]["format"] == name_schema(3)
    assert label is not None and label.candidates == ("Unrecognised Card Fees",)
    assert label.description == DESCRIPTION


@pytest.mark.parametrize(
    "content",
    [
        "Billing Issues",  # not JSON
        "",
        "[]",
        '{"title": "Billing Issues", "description": "no names field"}',
        '{"names": 42, "description": "x"}',
        '{"names": [""], "description": "x"}',
        '{"names": ["Here is the name for this topic"], "description": "x"}',
        '{"names": ["Sure! The topic is billing"], "description": "x"}',
        '{"names": ["**Billing Issues**"], "description": "x"}',
        '{"names": ["# Billing"], "description": "x"}',
        '{"names": ["12 / 34 - 56"], "description": "x"}',
        '{"names": ["Unknown"], "description": "x"}',
        '{"names": ["General Customer Questions"], "description": "x"}',
        '{"names": ["users keep asking about charges on their cards and refunds"]}',
        '{"names": ["Billing\\nIssues"], "description": "x"}',
        '{"names": ["Billing Iss',  # cut off by num_predict
    ],
)
async def test_garbage_answers_give_none_after_one_correction(
    fake: FakeOllama, content: str
) -> None:
    fake.script = [Reply(content=content), Reply(content=content)]
    async with labeller(fake.host, retries=2) as ollama:
        assert await ollama.label(EXAMPLES) is None
    assert len(fake.requests) == 2  # a bad answer is corrected once, not retried


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ('"billing issues with invoices."', "Billing Issues with Invoices"),
        ("  refund   requests for orders!! ", "Refund Requests for Orders"),
        ("'password reset help'", "Password Reset Help"),
        ("“Login Problems on Android”", "Login Problems on Android"),
        ("Name: Billing Questions by Email", "Billing Questions by Email"),
        ("BILLING ISSUES ON MOBILE", "Billing Issues on Mobile"),
        ("iPhone sync problems", "iPhone Sync Problems"),
        ("API rate limits", "API Rate Limits"),
        # Dangling words: cut before a connective, never mid-phrase.
        ("China Card Replacement and New Card", "China Card Replacement"),
        ("China Card Replacement and", "China Card Replacement"),
        ("rate limits and quotas for enterprise customers", "Rate Limits and Quotas"),
        ("Top Up Limits for", "Top Up Limits"),
    ],
)
def test_clean_name(raw: str, name: str) -> None:
    assert clean_name(raw) == (name, "")


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("Troubleshooting", "one word"),
        ("Transfers and", "one word"),
        ("Card Payment Declined Abroad Again Today", "over 5 words"),
        ("How do I top up?", "sentence"),
        ("Top up by card?", "question"),
        ("General Inquiries", "too generic"),
        ("Customer Support Issues", "too generic"),
    ],
)
def test_clean_name_refuses(raw: str, why: str) -> None:
    name, reason = clean_name(raw)
    assert name is None and why in reason


@pytest.mark.parametrize(
    ("raw", "description"),
    [
        ("users ask why a card payment was declined", "Users ask why a card payment was declined."),
        (
            "Users ask about exchange rates. They compare them with banks.",
            "Users ask about exchange rates.",
        ),
    ],
)
def test_clean_description(raw: str, description: str) -> None:
    assert clean_description(raw) == (description, "")


@pytest.mark.parametrize(
    "raw",
    [
        "Why was my card declined?",
        "I want to know why my card was declined.",
        "Users ask " + "about many things " * 10 + "at once.",
        "",
        None,
    ],
)
def test_clean_description_refuses(raw: object) -> None:
    assert clean_description(raw)[0] is None


async def test_the_first_answer_sets_the_pace(fake: FakeOllama) -> None:
    async with labeller(fake.host, timeout_s=5.0, min_timeout_s=1.0, timeout_factor=3) as ollama:
        assert ollama.pace_s is None and ollama.timeout_s == 5.0  # nothing measured yet
        assert await ollama.label(EXAMPLES) is not None
        assert ollama.pace_s is not None
        # The fake answers at once: three times its pace is below the floor.
        assert ollama.timeout_s == 1.0
        fake.script = [Reply(delay_s=3.0)]
        assert await ollama.label(EXAMPLES) is None  # 3 s is far over the measured pace


async def test_a_timeout_waits_on_the_same_request_instead_of_resending(
    fake: FakeOllama,
) -> None:
    # Over one wait, within two: the retry keeps waiting for the answer being generated
    # instead of queueing a copy behind it.
    fake.script = [Reply(delay_s=0.5)]
    async with labeller(fake.host, timeout_s=0.4, min_timeout_s=0.4, retries=1) as ollama:
        label = await ollama.label(EXAMPLES)
    assert label is not None and label.name == NAMES[0]
    assert len(fake.requests) == 1


async def test_after_giving_up_the_next_request_allows_for_the_abandoned_one(
    fake: FakeOllama,
) -> None:
    # The server still works on the request we gave up on; the next one waits it out.
    fake.script = [Reply(delay_s=10), Reply(delay_s=0.55)]
    async with labeller(fake.host, timeout_s=0.4, min_timeout_s=0.4, retries=0) as ollama:
        assert await ollama.label(EXAMPLES) is None
        label = await ollama.label(EXAMPLES)
    assert label is not None  # over one wait, but the wait allowed for the abandoned one
    assert len(fake.requests) == 2


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
    assert label is not None and label.name == NAMES[0]
    assert any("works again" in r.getMessage() for r in caplog.records)


async def test_retries_server_errors_with_backoff(fake: FakeOllama) -> None:
    fake.script = [Reply(status=500), Reply(status=503), Reply()]
    async with labeller(fake.host, retries=2, backoff_s=0.1) as ollama:
        label = await ollama.label(EXAMPLES)
    assert label is not None and label.name == NAMES[0]
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
    async with OllamaLabeller(host, model, timeout_s=300.0, retries=1) as ollama:
        health = await ollama.health()
        assert health.ok, health.detail
        label = await ollama.label(EXAMPLES, neighbours=["Card Delivery Times"])
    assert label is not None, "the model gave no usable name (see the warning in the log)"
    for name in label.candidates:
        assert 2 <= len(name.split()) <= 5
    assert label.model == model
