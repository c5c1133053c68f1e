"""`turret-stream alerts ...`: manage alert rules through the running API (the store is
the API process's; the CLI never opens it), with an API key of the project."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
import httpx

from turret_stream.alerts.rules import KINDS

KEY_HELP = "API key of the project [env TURRET_API_KEY]."


def _call(ctx: click.Context, method: str, path: str, body: Any = None) -> dict[str, Any]:
    url, key = ctx.obj["alerts_url"], ctx.obj["alerts_key"]
    try:
        response = httpx.request(
            method, f"{url}{path}", json=body, headers={"X-API-Key": key}, timeout=30
        )
    except httpx.HTTPError as exc:
        click.echo(f"error: cannot reach the API at {url}: {exc}", err=True)
        sys.exit(1)
    try:
        data = response.json()
    except ValueError:
        data = {"error": response.text[:200]}
    if response.status_code >= 400:
        code = data.get("code", response.status_code)
        click.echo(f"error: {code}: {data.get('error')}", err=True)
        sys.exit(1)
    return data


@click.group("alerts")
@click.option("--url", default=None, help="API base URL [default: from http.host/http.port].")
@click.option("--api-key", envvar="TURRET_API_KEY", required=True, help=KEY_HELP)
@click.pass_context
def alerts_group(ctx: click.Context, url: str | None, api_key: str) -> None:
    """Alert rules and their webhook deliveries (through the running API)."""
    from turret_stream.cli import _local_url

    settings = ctx.obj
    ctx.obj = {"alerts_url": (url or _local_url(settings)).rstrip("/"), "alerts_key": api_key}


def _print(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))


@alerts_group.command("list")
@click.pass_context
def alerts_list(ctx: click.Context) -> None:
    """The project's rules."""
    for rule in _call(ctx, "GET", "/v1/alerts")["rules"]:
        state = "on " if rule["enabled"] else "off"
        click.echo(f"{rule['id']}  {state}  {rule['kind']:<14} {rule['name']}  -> {rule['url']}")


@alerts_group.command("create")
@click.option("--name", required=True)
@click.option("--kind", required=True, type=click.Choice(KINDS))
@click.option("--webhook", "url", required=True, help="The URL deliveries are POSTed to.")
@click.option("--dimension", default=None, help="Only this text dimension.")
@click.option("--min-events-per-hour", type=int, default=None, help="new_topic: threshold.")
@click.option("--segment", default=None, help="segment_share: the metadata key.")
@click.option("--value", default=None, help="segment_share: the segment value.")
@click.option("--min-share", type=float, default=None, help="segment_share: 0-1.")
@click.option("--min-events", type=int, default=None, help="segment_share: events first.")
@click.pass_context
def alerts_create(ctx: click.Context, **fields: Any) -> None:
    """Create a rule; prints it with its signing secret (shown this once)."""
    body = {k: v for k, v in fields.items() if v is not None}
    _print(_call(ctx, "POST", "/v1/alerts", body)["rule"])


@alerts_group.command("enable")
@click.argument("rule_id")
@click.option("--off", is_flag=True, help="Disable instead.")
@click.pass_context
def alerts_enable(ctx: click.Context, rule_id: str, off: bool) -> None:
    """Enable (or --off disable) a rule."""
    _print(_call(ctx, "PATCH", f"/v1/alerts/{rule_id}", {"enabled": not off})["rule"])


@alerts_group.command("delete")
@click.argument("rule_id")
@click.pass_context
def alerts_delete(ctx: click.Context, rule_id: str) -> None:
    _call(ctx, "DELETE", f"/v1/alerts/{rule_id}")
    click.echo(f"deleted {rule_id}")


@alerts_group.command("test")
@click.argument("rule_id")
@click.pass_context
def alerts_test(ctx: click.Context, rule_id: str) -> None:
    """Send a signed sample to the rule's webhook now; exit 1 if it was not accepted."""
    data = _call(ctx, "POST", f"/v1/alerts/{rule_id}/test")
    _print(data["delivery"])
    if not data["success"]:
        sys.exit(1)


@alerts_group.command("deliveries")
@click.argument("rule_id", required=False)
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.pass_context
def alerts_deliveries(ctx: click.Context, rule_id: str | None, limit: int) -> None:
    """The delivery log, newest first (of one rule, or of the project)."""
    path = f"/v1/alerts/{rule_id}/deliveries" if rule_id else "/v1/alerts/deliveries"
    for e in _call(ctx, "GET", f"{path}?limit={limit}")["deliveries"]:
        code = e.get("status_code") or "-"
        click.echo(
            f"{e['id']}  {e['status']:<9} attempts={e['attempts']} http={code} "
            f"{e['kind']} {e.get('topic') or ''} {e.get('error') or ''}".rstrip()
        )
