"""The `turret-stream` command line: up, api, worker, keys, replay, export, dead-letters,
alerts."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from turret_stream import __version__
from turret_stream.dead_letters import DeadLetterStore, replay_dead_letters
from turret_stream.errors import TurretError
from turret_stream.export import ExportError, run_export
from turret_stream.gc_tuning import tune_gc
from turret_stream.journal import JournalError
from turret_stream.keys import KeyStore
from turret_stream.logging_setup import setup_logging
from turret_stream.replay import Columns, ReplayError, ReplayOptions, replay
from turret_stream.settings import Settings, load_settings
from turret_stream.stack import running_split_stack, running_stack, wait_for_stop_signal
from turret_stream.storage import StorageLocked, VectorStore, open_store

DEFAULT_PROJECT = "default"


def _settings(ctx: click.Context, **overrides: Any) -> Settings:
    base: Settings = ctx.obj
    changes = {k: v for k, v in overrides.items() if v is not None}
    return base.with_overrides(**changes) if changes else base


def _setup_logging(settings: Settings) -> None:
    setup_logging(settings)
    tune_gc(settings.worker.gc_young_threshold)


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def data_dir_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Where all state lives [default: data_dir setting, ./turret-data].",
    )(fn)


def workers_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--workers",
        type=click.IntRange(min=1),
        default=None,
        help="Processes that run the embedding model [default: worker.embed_processes "
        "setting; 0 there = one per core, at most 8].",
    )(fn)


@click.group()
@click.version_option(__version__, prog_name="turret-stream")
@click.pass_context
def main(ctx: click.Context) -> None:
    """turret-stream: real-time semantic analytics for AI products."""
    try:
        ctx.obj = load_settings()
    except Exception as exc:  # bad YAML, bad env value: say which, no traceback
        _fail(f"invalid configuration: {exc}")


def _print_banner(stack: Any, new_key: str | None) -> None:
    s = stack.settings
    kafka = f"{s.bootstrap_servers} ({'embedded' if stack.broker else 'external'})"
    click.echo("turret-stream is up")
    if stack.api_url:
        click.echo(f"  API:    {stack.api_url}   (POST /track, GET /readyz, /openapi.json)")
        click.echo(f"  Dashboard: {stack.api_url}/   (sign in with the project's API key)")
    click.echo(f"  Kafka:  {kafka}")
    click.echo(f"  Data:   {s.data_dir.resolve()}")
    processes = getattr(stack.embedder, "processes", 1) if stack.embedder else 0
    processes = processes or stack.model_processes
    if processes:
        click.echo(f"  Model:  {processes} embedding process{'es' if processes > 1 else ''}")
    if new_key:
        click.echo(f"  API key for project '{DEFAULT_PROJECT}' (shown once; keep it):")
        click.echo(new_key)
    click.echo("Press Ctrl-C to stop.", err=True)


def _run(settings: Settings, *, broker: bool, worker: bool, api: bool) -> None:
    _setup_logging(settings)

    split = worker and api and settings.worker.separate_process

    async def run() -> str | None:
        running = (
            running_split_stack(settings, broker=broker)
            if split
            else running_stack(settings, broker=broker, worker=worker, api=api)
        )
        async with running as stack:
            new_key = None
            if stack.keystore is not None and stack.keystore.is_empty():
                new_key = stack.keystore.create(DEFAULT_PROJECT).secret
            _print_banner(stack, new_key)
            sys.stdout.flush()
            failure = await wait_for_stop_signal(stack.failure)
            click.echo("stopping...", err=True)
        return failure

    try:
        failure = asyncio.run(run())
        if failure:
            _fail(
                f"{failure}; `up` stopped (events it had accepted and not finished are in "
                "the journal and are replayed on the next start)"
            )
    except TurretError as exc:
        _fail(str(exc))
    except OSError as exc:  # e.g. the HTTP port is taken
        _fail(str(exc))
    except KeyboardInterrupt:
        pass


@main.command()
@click.option("--port", type=int, default=None, help="HTTP port [default: 8000].")
@click.option("--host", default=None, help="HTTP bind address [default: 127.0.0.1].")
@click.option("--kafka-port", type=int, default=None, help="Embedded broker port [default: 9092].")
@workers_option
@data_dir_option
@click.pass_context
def up(
    ctx: click.Context,
    port: int | None,
    host: str | None,
    kafka_port: int | None,
    workers: int | None,
    data_dir: Path | None,
) -> None:
    """Run everything: broker (unless Kafka is configured), API, and the worker (in a child
    process)."""
    settings = _settings(
        ctx,
        **{
            "http.port": port,
            "http.host": host,
            "kafka.embedded_port": kafka_port,
            "worker.embed_processes": workers,
        },
        data_dir=data_dir,
    )
    _run(settings, broker=settings.embedded_broker, worker=True, api=True)


@main.command()
@click.option("--port", type=int, default=None, help="HTTP port [default: 8000].")
@click.option("--host", default=None, help="HTTP bind address [default: 127.0.0.1].")
@data_dir_option
@click.pass_context
def api(ctx: click.Context, port: int | None, host: str | None, data_dir: Path | None) -> None:
    """Run only the HTTP API, against the configured Kafka."""
    settings = _settings(ctx, **{"http.port": port, "http.host": host}, data_dir=data_dir)
    _run(settings, broker=False, worker=False, api=True)


@main.command()
@workers_option
@data_dir_option
@click.pass_context
def worker(ctx: click.Context, workers: int | None, data_dir: Path | None) -> None:
    """Run only the stream worker (Faust agents), against the configured Kafka."""
    settings = _settings(ctx, **{"worker.embed_processes": workers}, data_dir=data_dir)
    _run(settings, broker=False, worker=True, api=False)


@main.group()
def keys() -> None:
    """Create, list and revoke API keys."""


def _keystore(ctx: click.Context, data_dir: Path | None) -> KeyStore:
    return KeyStore(_settings(ctx, data_dir=data_dir).keys_db_path)


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@keys.command("create")
@click.option("--project", required=True, help="Project the key belongs to (created if new).")
@data_dir_option
@click.pass_context
def keys_create(ctx: click.Context, project: str, data_dir: Path | None) -> None:
    """Create a key; it is printed once, as the last line of stdout."""
    store = _keystore(ctx, data_dir)
    try:
        new = store.create(project, _settings(ctx).limits.max_projects)
    except TurretError as exc:
        _fail(str(exc))
    finally:
        store.close()
    click.echo(f"Created key {new.info.key_id} for project '{project}'. Store it now:")
    click.echo(new.secret)


@keys.command("list")
@click.option("--project", default=None, help="Only this project's keys.")
@data_dir_option
@click.pass_context
def keys_list(ctx: click.Context, project: str | None, data_dir: Path | None) -> None:
    """List keys (ids and projects; never the secrets)."""
    store = _keystore(ctx, data_dir)
    try:
        rows = store.list(project)
    finally:
        store.close()
    click.echo(f"{'KEY ID':<14}{'PROJECT':<24}{'CREATED':<22}{'STATUS'}")
    for key in rows:
        status = "active" if key.active else f"revoked {_when(key.revoked_at)}"
        click.echo(f"{key.key_id:<14}{key.project:<24}{_when(key.created_at):<22}{status}")


@keys.command("revoke")
@click.argument("key_id")
@data_dir_option
@click.pass_context
def keys_revoke(ctx: click.Context, key_id: str, data_dir: Path | None) -> None:
    """Revoke a key by id; it stops working on the next request."""
    store = _keystore(ctx, data_dir)
    try:
        info = store.revoke(key_id)
    except TurretError as exc:
        _fail(str(exc))
    finally:
        store.close()
    click.echo(f"Revoked key {info.key_id} of project '{info.project}'.")


def _local_url(settings: Settings) -> str:
    # A wildcard bind address is reachable on loopback.
    host = settings.http.host
    host = "127.0.0.1" if host in ("", "0.0.0.0") else "[::1]" if host == "::" else host
    return f"http://{host}:{settings.http.port}"


@main.command("replay")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--project", required=True, help="Project to replay into (the key's project).")
@click.option("--text-column", default="text", show_default=True, help="Column with the text.")
@click.option("--session-column", default=None, help="Column with the session id.")
@click.option("--user-column", default=None, help="Column with the user id.")
@click.option(
    "--exclude-column", multiple=True, help="A column not to send (repeatable), e.g. ids."
)
@click.option("--name", default="user_prompt", show_default=True, help="Event name.")
@click.option("--dimension", default="prompt", show_default=True, help="Metadata key of the text.")
@click.option(
    "--url", default=None, help="API base URL [default: from http.host/http.port settings]."
)
@click.option(
    "--api-key",
    envvar="TURRET_API_KEY",
    default=None,
    help="Key to send with (it decides the project) [env TURRET_API_KEY; default: a "
    "temporary key for --project in --data-dir, revoked at the end].",
)
@click.option("--concurrency", type=click.IntRange(1, 64), default=8, show_default=True)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N rows.")
@data_dir_option
@click.pass_context
def replay_cmd(
    ctx: click.Context,
    file: Path,
    project: str,
    text_column: str,
    session_column: str | None,
    user_column: str | None,
    exclude_column: tuple[str, ...],
    name: str,
    dimension: str,
    url: str | None,
    api_key: str | None,
    concurrency: int,
    limit: int | None,
    data_dir: Path | None,
) -> None:
    """Send a .jsonl or .csv file through /track, row by row, like live traffic."""
    settings = _settings(ctx, data_dir=data_dir)
    options = ReplayOptions(
        path=file,
        project=project,
        url=(url or _local_url(settings)).rstrip("/"),
        columns=Columns(text_column, session_column, user_column, frozenset(exclude_column)),
        name=name,
        dimension=dimension,
        concurrency=concurrency,
        limit=limit,
    )
    try:
        stats = replay(options, api_key=api_key, keys_db=settings.keys_db_path)
    except ReplayError as exc:
        _fail(str(exc))
    click.echo(stats.summary())
    if stats.aborted:
        _fail(stats.aborted)
    if stats.failed:
        for code, message in stats.first_error.items():
            click.echo(f"  {code}, e.g. {message}", err=True)
        sys.exit(1)


@main.group("export")
def export_group() -> None:
    """Export data from the store (the edge store opens in one process: stop `up` first)."""


@export_group.command("events")
@click.option("--project", required=True, help="Project whose events to export.")
@click.option("--dimension", default=None, help="Only this text dimension [default: all].")
@click.option(
    "--out",
    default="-",
    show_default=True,
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Output file; - for stdout.",
)
@data_dir_option
@click.pass_context
def export_events_cmd(
    ctx: click.Context, project: str, dimension: str | None, out: str, data_dir: Path | None
) -> None:
    """Write a project's events as JSONL, one event per line, with their cluster_id."""
    try:
        run_export(_settings(ctx, data_dir=data_dir), project, dimension, out)
    except (ExportError, TurretError, OSError) as exc:
        _fail(str(exc))


@main.group("dead-letters")
def dead_letters_group() -> None:
    """Events the pipeline set aside after they failed twice (stop `up` first: the
    in-process store opens in one process)."""


def _open_store_or_fail(settings: Settings) -> VectorStore:
    try:
        return open_store(settings)
    except StorageLocked:
        _fail(f"the store in {settings.data_dir} is in use: stop `turret-stream up` first")
        raise  # _fail exits


@dead_letters_group.command("list")
@click.option("--project", required=True, help="Project whose dead letters to list.")
@click.option("--limit", type=click.IntRange(1), default=100, show_default=True)
@data_dir_option
@click.pass_context
def dead_letters_list(ctx: click.Context, project: str, limit: int, data_dir: Path | None) -> None:
    """List a project's dead letters, most recent first."""
    settings = _settings(ctx, data_dir=data_dir)
    store = _open_store_or_fail(settings)
    try:
        letters = DeadLetterStore(store)
        found = letters.list(project, limit)
        total = letters.count(project)
    finally:
        store.close()
    click.echo(f"{'FAILED AT':<22}{'STAGE':<9}{'EVENT ID':<38}{'REPLAYED':<10}ERROR")
    for d in found:
        replayed = "yes" if d.replayed_at else "no"
        error = d.error.replace("\n", " ")[:100]
        click.echo(f"{_when(d.failed_at):<22}{d.stage:<9}{d.event_id:<38}{replayed:<10}{error}")
    click.echo(f"{total} dead letter(s) in project '{project}'", err=True)


@dead_letters_group.command("replay")
@click.option("--project", required=True, help="Project whose dead letters to replay.")
@click.option(
    "--event-id",
    "event_ids",
    multiple=True,
    help="Only this event (repeatable) [default: every one not replayed yet].",
)
@data_dir_option
@click.pass_context
def dead_letters_replay(
    ctx: click.Context, project: str, event_ids: tuple[str, ...], data_dir: Path | None
) -> None:
    """Send dead letters through the pipeline again (e.g. after an upgrade that fixes
    their failure); one that fails again is a dead letter again."""
    settings = _settings(ctx, data_dir=data_dir)
    store = _open_store_or_fail(settings)
    try:
        count = asyncio.run(replay_dead_letters(settings, store, project, event_ids))
    except (JournalError, TurretError) as exc:
        _fail(str(exc))
    finally:
        store.close()
    where = (
        "journaled: processed on the next start of `up`"
        if settings.journal_enabled
        else "written to the events topic"
    )
    click.echo(f"{count} dead letter(s) of project '{project}' {where}.")


@main.group("labels")
def labels_group() -> None:
    """Topic labels."""


@labels_group.command("relabel")
@click.option("--dimension", required=True, help="Text dimension (metadata key) to relabel.")
@click.option("--project", default=DEFAULT_PROJECT, show_default=True)
@click.option("--ollama-host", default=None, help="Ollama to ask [default: labels.ollama_host].")
@click.option("--ollama-model", default=None, help="Model [default: labels.ollama_model].")
@click.option("--offline", is_flag=True, help="Only the offline labeller, even with Ollama set.")
@data_dir_option
@click.pass_context
def labels_relabel_cmd(
    ctx: click.Context,
    dimension: str,
    project: str,
    ollama_host: str | None,
    ollama_model: str | None,
    offline: bool,
    data_dir: Path | None,
) -> None:
    """Rename every topic of a dimension now, largest first, with a progress bar.

    Offline labels at once; then, with Ollama, an LLM round per topic whose name is kept
    only where it identifies the topic at least as well. A person's labels stay. Stop the
    worker first when the store is the in-process one.
    """
    from turret_stream.labels.relabel import run_relabel

    settings = _settings(
        ctx,
        data_dir=data_dir,
        **{"labels.ollama_host": "" if offline else ollama_host},
        **{"labels.ollama_model": ollama_model},
    )
    bar: Any = None

    def start(total: int) -> None:
        nonlocal bar
        bar = click.progressbar(length=total, label="LLM labels", file=sys.stderr)
        bar.__enter__()

    def done(job: Any, decision: Any) -> None:
        if bar is not None:
            bar.update(1)

    try:
        summary = run_relabel(settings, project, dimension, on_start=start, on_done=done)
    except TurretError as exc:
        _fail(str(exc))
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    click.echo(summary.line())


def _register_alerts() -> None:
    from turret_stream.alerts_cli import alerts_group

    main.add_command(alerts_group)


_register_alerts()
