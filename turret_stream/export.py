"""Export a project's clustered events as JSONL, read straight from the vector store.

One line per event and text dimension (an event with two text keys appears once per
dimension), in store order, not by time. Each line is the event as the read API serves it
(``GET /v1/clusters/{id}/events``) plus its ``dimension``; ``cluster_id`` is resolved
through the dimension's current micro-cluster -> topic mapping, like the API does.

The in-process store (the default "edge" backend) allows one process per data dir, so
export cannot run next to ``up``: it says so instead of waiting.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

import click

from turret_stream.catalog import CATALOG, DimensionNames, dimension_names
from turret_stream.queries import Queries
from turret_stream.settings import Settings
from turret_stream.storage import StorageLocked, VectorStore, open_store

_PAGE = 512
FIELDS = (
    "event_id",
    "name",
    "text",
    "dimension",
    "metadata",
    "session_id",
    "user_id",
    "timestamp",
    "micro_cluster",
    "cluster_id",
)


class ExportError(Exception):
    """A problem the user can fix (locked store, unknown project); printed, no traceback."""


def _projects(store: VectorStore) -> list[str]:
    found: set[str] = set()
    offset = None
    while True:
        records, offset = store.scroll(CATALOG, limit=_PAGE, offset=offset)
        found.update(r.payload.get("project", "") for r in records)
        if offset is None:
            return sorted(p for p in found if p)


def dimensions_to_export(
    queries: Queries, project: str, dimension: str | None
) -> list[DimensionNames]:
    """The project's text dimensions (or the one asked for); ExportError when unknown."""
    if not queries.catalog.dimensions(project):
        known = ", ".join(_projects(queries.store)) or "none"
        raise ExportError(f"no project '{project}' in the store (projects: {known})")
    if dimension is not None:
        dims = queries.text_dimensions(project)
        if not any(d.key == dimension for d in dims):
            known = ", ".join(d.key for d in dims) or "none yet"
            raise ExportError(
                f"no text dimension '{dimension}' in project '{project}' (text dimensions: {known})"
            )
        return [dimension_names(project, dimension)]
    return [dimension_names(project, d.key) for d in queries.text_dimensions(project)]


def iter_events(queries: Queries, names: DimensionNames) -> Iterator[dict[str, Any]]:
    """Every stored event of one dimension, as an export line (a dict in FIELDS order)."""
    store = queries.store
    if not store.has_collection(names.events):
        return
    topic_map = queries.topic_map(names)
    offset = None
    while True:
        records, offset = store.scroll(names.events, limit=_PAGE, offset=offset)
        for record in records:
            payload = record.payload
            # The API's own event view, so an export line and an API answer never differ.
            view = queries._event_view(payload, topic_map.topic_of(payload["mc"]))
            view["dimension"] = names.dimension
            yield {k: view[k] for k in FIELDS}
        if offset is None:
            return


def export_events(
    queries: Queries,
    dims: list[DimensionNames],
    out: TextIO,
    *,
    on_event: Callable[[], None] | None = None,
) -> dict[str, int]:
    """Write the events of ``dims`` as JSONL to ``out``; returns the count per dimension."""
    counts: dict[str, int] = {}
    for names in dims:
        counts[names.dimension] = 0
        for line in iter_events(queries, names):
            out.write(json.dumps(line, ensure_ascii=False) + "\n")
            counts[names.dimension] += 1
            if on_event is not None:
                on_event()
    return counts


def open_for_export(settings: Settings) -> VectorStore:
    """The store, or ExportError saying why it cannot be opened now."""
    if settings.storage.backend == "edge" and not settings.qdrant_path.exists():
        raise ExportError(
            f"no vector store in {settings.data_dir}: nothing was tracked with this data dir "
            "(check --data-dir)"
        )
    try:
        return open_store(settings)
    except StorageLocked:
        raise ExportError(
            f"the vector store in {settings.data_dir} is in use by a running turret-stream "
            "(`up` or `worker`); only one process may open it. Stop it first, or read the "
            "events through its API: GET /v1/clusters/{id}/events"
        ) from None


@contextlib.contextmanager
def _output(out: str) -> Iterator[TextIO]:
    if out == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    with Path(out).open("w", encoding="utf-8") as f:
        yield f


def run_export(settings: Settings, project: str, dimension: str | None, out: str) -> dict[str, int]:
    """The `export events` command: open the store, write ``out`` ("-": stdout)."""
    store = open_for_export(settings)
    try:
        queries = Queries(store)
        # Resolve the dimensions before opening ``out``: an error leaves no empty file.
        dims = dimensions_to_export(queries, project, dimension)
        total = sum(store.count(n.events) for n in dims if store.has_collection(n.events))
        with (
            _output(out) as stream,
            click.progressbar(length=total, label="exporting", file=sys.stderr) as bar,
        ):
            counts = export_events(queries, dims, stream, on_event=lambda: bar.update(1))
    finally:
        store.close()
    where = "stdout" if out == "-" else out
    detail = ", ".join(f"{k}: {n}" for k, n in counts.items())
    click.echo(f"exported {sum(counts.values())} events ({detail or 'none'}) to {where}", err=True)
    return counts
