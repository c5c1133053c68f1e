"""/v1/alerts: a project's alert rules (CRUD), a test delivery, and the delivery log.

Rules are checked before they are saved: a bad field is 400 ``INVALID_ALERT_RULE``
naming it; a URL the operator does not allow (``alerts.*`` settings) is 400
``WEBHOOK_URL_NOT_ALLOWED`` saying why; one rule too many is 400
``TOO_MANY_ALERT_RULES``. The API's own ``Deliverer`` sends test deliveries (one attempt,
answered with its outcome); the worker's alert agent sends the real ones.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from turret_stream.alerts.delivery import Deliverer, DeliveryLog
from turret_stream.alerts.rules import Rule, RuleBook, RuleError, parse_rule
from turret_stream.alerts.urls import UrlNotAllowed, check_url_resolved
from turret_stream.errors import ApiError, ErrorCode, invalid
from turret_stream.http.guards import read_body
from turret_stream.http.handlers import authenticate
from turret_stream.http.json_body import parse_json_body
from turret_stream.http.keys import SETTINGS, STORE
from turret_stream.settings import AlertSettings
from turret_stream.storage import VectorStore


class AlertApi:
    """What the handlers share: the rule book, the delivery log, a test deliverer."""

    def __init__(self, store: VectorStore, settings: AlertSettings) -> None:
        self.settings = settings
        self.rules = RuleBook(store)
        self.log = DeliveryLog(store, settings.log_keep)
        self.deliverer = Deliverer(settings, self.log)


ALERTS = web.AppKey("alerts", AlertApi)


def setup_alert_api(app: web.Application) -> None:
    app[ALERTS] = AlertApi(app[STORE], app[SETTINGS].alerts)


async def run_alert_api(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the test deliverer lives as long as the app."""
    api = app[ALERTS]
    await api.deliverer.start()
    yield
    await api.deliverer.stop()


def _rule_error(exc: RuleError) -> ApiError:
    return ApiError(400, ErrorCode.INVALID_ALERT_RULE, str(exc), field=exc.field)


async def _checked(api: AlertApi, body: Any, project: str, previous: Rule | None) -> Rule:
    try:
        rule = parse_rule(body, project, previous)
    except RuleError as exc:
        raise _rule_error(exc) from None
    try:
        await check_url_resolved(rule.url, api.settings)
    except UrlNotAllowed as exc:
        raise ApiError(
            400, ErrorCode.WEBHOOK_URL_NOT_ALLOWED, f"Webhook URL not allowed: {exc}", field="url"
        ) from None
    return rule


async def _body(request: web.Request) -> Any:
    return parse_json_body(await read_body(request))


async def _rule(request: web.Request, project: str) -> Rule:
    rule_id = request.match_info["rule_id"]
    rule = await asyncio.to_thread(request.app[ALERTS].rules.get, project, rule_id)
    if rule is None:
        raise ApiError(404, ErrorCode.NOT_FOUND, f"No alert rule '{rule_id[:64]}' in this project")
    return rule


async def list_rules(request: web.Request) -> web.Response:
    project = authenticate(request).project
    rules = await asyncio.to_thread(request.app[ALERTS].rules.list, project)
    return web.json_response({"success": True, "rules": [r.view() for r in rules]})


async def create_rule(request: web.Request) -> web.Response:
    project = authenticate(request).project
    api = request.app[ALERTS]
    rule = await _checked(api, await _body(request), project, None)
    existing = await asyncio.to_thread(api.rules.list, project)
    if len(existing) >= api.settings.max_rules_per_project:
        raise ApiError(
            400,
            ErrorCode.TOO_MANY_ALERT_RULES,
            f"This project has {len(existing)} alert rules; the limit is "
            f"{api.settings.max_rules_per_project} (alerts.max_rules_per_project)",
        )
    await asyncio.to_thread(api.rules.save, rule)
    # The secret is shown once: keep it to verify signatures.
    return web.json_response({"success": True, "rule": rule.view(with_secret=True)}, status=201)


async def get_rule(request: web.Request) -> web.Response:
    project = authenticate(request).project
    rule = await _rule(request, project)
    return web.json_response({"success": True, "rule": rule.view()})


async def update_rule(request: web.Request) -> web.Response:
    project = authenticate(request).project
    previous = await _rule(request, project)
    body = await _body(request)
    if isinstance(body, dict) and "kind" in body and body["kind"] != previous.kind:
        raise _rule_error(RuleError("kind", "cannot change; create a new rule"))
    rule = await _checked(request.app[ALERTS], body, project, previous)
    await asyncio.to_thread(request.app[ALERTS].rules.save, rule)
    return web.json_response({"success": True, "rule": rule.view()})


async def delete_rule(request: web.Request) -> web.Response:
    project = authenticate(request).project
    rule = await _rule(request, project)
    await asyncio.to_thread(request.app[ALERTS].rules.delete, project, rule.id)
    return web.json_response({"success": True, "deleted": rule.id})


def sample_event(rule: Rule) -> dict[str, Any]:
    """What a real delivery of this rule carries, with made-up values."""
    event: dict[str, Any] = {
        "kind": {"topic_spiking": "topic_spiking", "new_topic": "new_topic"}.get(
            rule.kind, "segment_share"
        ),
        "project": rule.project,
        "dimension": rule.dimension or "prompt",
        "topic": "tp_sample0000000000",
        "label": "Sample topic",
        "size": 120,
        "examples": ["an example text", "another example"],
        "this_hour": 40,
    }
    if rule.kind == "topic_spiking":
        event.update(baseline_per_hour=4.0, p_value=1e-9)
    elif rule.kind == "segment_share":
        event.update(segment=rule.segment, value=rule.value, share=rule.min_share)
    return event


async def send_test(request: web.Request) -> web.Response:
    """Send a signed sample now (one attempt) and answer with what the receiver said."""
    project = authenticate(request).project
    rule = await _rule(request, project)
    api = request.app[ALERTS]
    event = sample_event(rule)
    delivery = api.deliverer.submit(rule, event["kind"], event, test=True, max_attempts=1)
    if delivery is None or delivery.done is None:
        raise ApiError(503, ErrorCode.SERVICE_UNAVAILABLE, "Delivery queue full; try again later")
    try:
        entry = await asyncio.wait_for(asyncio.shield(delivery.done), api.settings.timeout_s + 5)
    except TimeoutError:
        entry = delivery.entry("pending", None, "still waiting for the receiver")
    return web.json_response(
        {"success": entry["status"] == "delivered", "delivery": _delivery_view(entry)}
    )


def _delivery_view(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k != "project"}


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit", "50")
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise invalid("limit", "must be an integer between 1 and 1000")
    return int(raw)


async def deliveries(request: web.Request) -> web.Response:
    """The delivery log, newest first: of one rule, or (no rule id) of the project."""
    project = authenticate(request).project
    limit = _limit(request)
    rule_id = None
    if "rule_id" in request.match_info:
        rule_id = (await _rule(request, project)).id
    entries = await asyncio.to_thread(request.app[ALERTS].log.list, project, rule_id, limit)
    return web.json_response(
        {
            "success": True,
            "deliveries": [_delivery_view(e) for e in entries],
            "as_of": time.time(),
        }
    )
