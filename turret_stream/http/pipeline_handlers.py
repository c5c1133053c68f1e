"""Handlers that show the pipeline's health: ``GET /metrics`` (Prometheus text),
``GET /v1/dead-letters`` (the key's project's events the pipeline set aside) and
``GET /v1/dimensions`` (the project's metadata keys, with the text keys over the cap)."""

from __future__ import annotations

from aiohttp import web

from turret_stream.dead_letters import DeadLetterStore
from turret_stream.errors import invalid
from turret_stream.http.handlers import authenticate
from turret_stream.http.keys import PUBLISHER, QUERIES, SETTINGS, STACK_PROCESSES, STORE
from turret_stream.process_figures import ProcessFigures, read_figures, role_figures

DEAD_LETTERS = web.AppKey("dead_letters", DeadLetterStore)
MAX_DEAD_LETTERS = 1000


def _letters(app: web.Application) -> DeadLetterStore:
    letters = app.get(DEAD_LETTERS)
    if letters is None:
        letters = app[DEAD_LETTERS] = DeadLetterStore(app[STORE])
    return letters


async def dead_letters(request: web.Request) -> web.Response:
    key = authenticate(request)
    raw = request.query.get("limit", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_DEAD_LETTERS:
        raise invalid("limit", f"must be an integer from 1 to {MAX_DEAD_LETTERS}")
    letters = _letters(request.app)
    found = letters.list(key.project, int(raw))
    return web.json_response(
        {
            "success": True,
            "project": key.project,
            "total": letters.count(key.project),
            "dead_letters": [d.as_json() for d in found],
        }
    )


async def dimensions(request: web.Request) -> web.Response:
    key = authenticate(request)
    found = request.app[QUERIES].catalog.dimensions(key.project)
    return web.json_response(
        {
            "success": True,
            "project": key.project,
            "max_text_dimensions": request.app[SETTINGS].limits.max_text_dimensions,
            "dimensions": [
                {"key": d.key, "type": d.type, "events": d.events, "decided": d.decided}
                for d in found
                if d.type != "capped"
            ],
            # Text keys over limits.max_text_dimensions: kept on events as context only.
            "capped": sorted(d.key for d in found if d.type == "capped"),
        }
    )


def _number(value: float) -> str:
    # Counts and bytes in full: "{:g}" keeps 6 digits, and a counter read as 1.23457e+06
    # for a while gives rate() nothing but steps.
    return str(value) if isinstance(value, int) else f"{value:g}"


def _metric(lines: list[str], name: str, kind: str, help_: str, value: float) -> None:
    lines += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}", f"{name} {_number(value)}"]


def _per_role(lines: list[str], name: str, help_: str, values: dict[str, int]) -> None:
    lines += [f"# HELP {name} {help_}", f"# TYPE {name} gauge"]
    lines += [f'{name}{{role="{role}"}} {_number(value)}' for role, value in values.items()]


async def metrics(request: web.Request) -> web.Response:
    publisher = request.app[PUBLISHER]
    lines: list[str] = []
    progress = publisher.progress
    if progress is not None:
        _metric(
            lines,
            "turret_pipeline_lag_events",
            "gauge",
            "Events accepted by this process and not yet through the worker.",
            publisher.backlog,
        )
        _metric(
            lines,
            "turret_pipeline_max_lag_events",
            "gauge",
            "Lag at which /track answers 503 (pipeline.max_lag_events).",
            publisher.pipeline.max_lag_events,
        )
        _metric(
            lines,
            "turret_events_accepted_total",
            "counter",
            "Events written to the events topic by this process.",
            progress.accepted,
        )
        _metric(
            lines,
            "turret_events_processed_total",
            "counter",
            "Accepted events the worker is done with.",
            progress.processed,
        )
        _metric(
            lines,
            "turret_dead_letters_total",
            "counter",
            "Events or texts set aside in the dead-letter store.",
            progress.dead_letters,
        )
    _metric(
        lines,
        "turret_track_shed_total",
        "counter",
        "/track requests answered 503 because the pipeline was behind.",
        publisher.refused_behind,
    )
    journal = publisher.journal
    if journal is not None:
        _metric(
            lines,
            "turret_track_held_events",
            "gauge",
            "Events journaled while the embedded broker is replaced, not yet written to it.",
            publisher.held,
        )
        _metric(
            lines,
            "turret_track_held_total",
            "counter",
            "Events accepted into the journal alone while the embedded broker was replaced.",
            publisher.held_total,
        )
        _metric(
            lines,
            "turret_broker_recycles_total",
            "counter",
            "Times `up` replaced its embedded broker (kafka.embedded_recycle_bytes).",
            publisher.holds,
        )
        _metric(
            lines,
            "turret_journal_unconfirmed_events",
            "gauge",
            "Journaled events not yet confirmed as stored.",
            journal.last_seq - journal.confirmed,
        )
        _metric(
            lines, "turret_journal_bytes", "gauge", "Journal size on disk.", journal.size_bytes()
        )
        _metric(
            lines,
            "turret_journal_fsyncs_total",
            "counter",
            "Group commits (one fsync each).",
            journal.fsyncs,
        )
    process = read_figures() or ProcessFigures(0, 0)
    _metric(
        lines, "turret_process_threads", "gauge", "OS threads of this process.", process.threads
    )
    _metric(
        lines,
        "turret_process_resident_memory_bytes",
        "gauge",
        "Resident memory of this process.",
        process.resident_bytes,
    )
    processes = request.app.get(STACK_PROCESSES)
    if processes is not None:  # `up`: every process it runs, by role
        roles = role_figures(processes)
        _per_role(
            lines,
            "turret_stack_processes",
            "Live processes of this stack in each role (main, broker, worker, model).",
            {role: count for role, (count, _) in roles.items()},
        )
        _per_role(
            lines,
            "turret_stack_threads",
            "OS threads of this stack's processes in each role.",
            {role: figures.threads for role, (_, figures) in roles.items()},
        )
        _per_role(
            lines,
            "turret_stack_resident_memory_bytes",
            "Resident memory of this stack's processes in each role (add them for the whole).",
            {role: figures.resident_bytes for role, (_, figures) in roles.items()},
        )
    return web.Response(
        text="\n".join(lines) + "\n",
        content_type="text/plain",
        charset="utf-8",
        headers={"X-Content-Type-Options": "nosniff"},
    )
