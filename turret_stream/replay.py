"""Replay a .jsonl or .csv file through the real pipeline, as if an app were tracking it.

Every row is POSTed to /track with TurretClient (retries with backoff, one Idempotency-Key
per row), so it is embedded and clustered exactly like live traffic: nothing is written
around the API. The file is read twice: a first pass validates it (bad JSON lines, missing
columns) and counts the rows, so a broken row 9,000 stops the replay before anything is
sent rather than half-way through.

Order: the rows of one session always go to the same sender thread (picked by a stable hash
of the session id), which sends them one by one, each after the previous one was
acknowledged. They thus reach Kafka, and the topic owner, in file order; different sessions
go out in parallel.

The key decides the project. With no key given, replay makes a temporary key for
``--project`` in the local data dir (the one the running ``up`` reads) and revokes it at the
end.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import json
import queue
import sys
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import httpx

from turret_stream.client import TrackError, TurretClient
from turret_stream.errors import KeyStoreError
from turret_stream.keys import KeyStore

JSONL_SUFFIXES = (".jsonl", ".ndjson")
CSV_SUFFIXES = (".csv",)
# Beyond these, every further row would fail the same way: stop the whole replay.
FATAL_CODES = frozenset({"INVALID_API_KEY", "CONNECTION_ERROR"})
_SCALARS = (str, int, float, bool)
_LANE_DEPTH = 256  # rows queued per sender thread: bounds memory on large files


class ReplayError(Exception):
    """A problem the user can fix (file, columns, key, URL); the CLI prints it, no traceback."""


@dataclass(frozen=True)
class Columns:
    text: str = "text"
    session: str | None = None
    user: str | None = None
    # Columns not sent at all (ids, timestamps: free-form strings would otherwise become
    # text dimensions of their own once the pipeline has seen enough distinct values).
    exclude: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ReplayOptions:
    path: Path
    project: str
    url: str
    columns: Columns = Columns()
    name: str = "user_prompt"
    dimension: str = "prompt"
    concurrency: int = 8
    limit: int | None = None


@dataclass(frozen=True)
class Event:
    line: int
    name: str
    metadata: dict[str, Any]
    session_id: str | None
    user_id: str | None


@dataclass
class ReplayStats:
    rows: int = 0
    sent: int = 0
    skipped: int = 0  # rows with no text in the text column
    failed: Counter[str] = field(default_factory=Counter)
    first_error: dict[str, str] = field(default_factory=dict)
    elapsed: float = 0.0
    aborted: str | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def failed_total(self) -> int:
        return sum(self.failed.values())

    @property
    def rate(self) -> float:
        seconds = self.elapsed or (time.monotonic() - self.started)
        return (self.sent + self.failed_total) / seconds if seconds > 0 else 0.0

    def record(self, code: str | None, message: str | None) -> None:
        if code is None:
            self.sent += 1
            return
        self.failed[code] += 1
        self.first_error.setdefault(code, message or code)

    def summary(self) -> str:
        failed = ", ".join(f"{code}: {n}" for code, n in self.failed.most_common())
        return (
            f"read {self.rows} rows: sent {self.sent}, "
            f"failed {self.failed_total}{f' ({failed})' if failed else ''}, "
            f"skipped {self.skipped} (no text), "
            f"{self.elapsed:.1f} s, {self.rate:.1f} events/s"
        )


# -- reading ------------------------------------------------------------------------------


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ReplayError(f"{path}: line {number}: invalid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                kind = type(row).__name__
                raise ReplayError(f"{path}: line {number}: expected a JSON object, got {kind}")
            yield number, row


def _read_csv(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    # utf-8-sig: spreadsheets often start CSV files with a byte-order mark.
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        for row in reader:
            # CSV has no null: an empty cell is a missing value. Cells beyond the header
            # (key None) have no column name to send them under.
            yield reader.line_num, {k: v for k, v in row.items() if k is not None and v}


def _csv_header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        return next(csv.reader(f), [])


class ReplaySource:
    """A validated input file; ``rows`` and ``events`` are known before anything is sent."""

    def __init__(self, options: ReplayOptions) -> None:
        self.options = options
        path = options.path
        if not path.exists():
            raise ReplayError(f"{path}: no such file")
        if not path.is_file():
            raise ReplayError(f"{path}: not a file")
        suffix = path.suffix.lower()
        if suffix not in JSONL_SUFFIXES + CSV_SUFFIXES:
            known = ", ".join(JSONL_SUFFIXES + CSV_SUFFIXES)
            raise ReplayError(f"{path}: unknown file type {suffix or '(none)'!r}; use {known}")
        self._read = _read_csv if suffix in CSV_SUFFIXES else _read_jsonl
        self.rows = 0
        self.events = 0
        try:
            self._scan(_csv_header(path) if suffix in CSV_SUFFIXES else None)
        except UnicodeDecodeError as exc:
            raise ReplayError(f"{path}: not UTF-8 text ({exc.reason})") from None

    def _rows(self) -> Iterator[tuple[int, dict[str, Any]]]:
        # islice stops before reading row limit+1: a bad row after the limit is no error.
        yield from itertools.islice(self._read(self.options.path), self.options.limit)

    def _scan(self, header: list[str] | None) -> None:
        seen: dict[str, None] = dict.fromkeys(header or [])
        for _, row in self._rows():
            self.rows += 1
            if header is None:
                seen.update(dict.fromkeys(row))
            if self._event(0, row) is not None:
                self.events += 1
        cols = self.options.columns
        available = ", ".join(seen) or "none"
        wanted = [("text", cols.text), ("session", cols.session), ("user", cols.user)]
        for role, column in wanted:
            if column is not None and column not in seen and (header is not None or self.rows):
                raise ReplayError(
                    f"{self.options.path}: no {role} column {column!r}; "
                    f"available columns: {available}"
                )

    def _event(self, line: int, row: dict[str, Any]) -> Event | None:
        o, cols = self.options, self.options.columns
        text = row.get(cols.text)
        if not isinstance(text, _SCALARS) or isinstance(text, bool) or not str(text).strip():
            return None
        metadata = {
            key: value
            for key, value in row.items()
            if key not in (cols.text, cols.session, cols.user)
            and key not in cols.exclude
            # /track takes only flat values; nested ones would fail the whole row.
            and (value is None or isinstance(value, _SCALARS))
        }
        metadata[o.dimension] = str(text)  # set last: the text wins a name clash
        return Event(line, o.name, metadata, _id(row, cols.session), _id(row, cols.user))

    def __iter__(self) -> Iterator[Event | None]:
        """Every row as an Event, or None for a row without text (skipped)."""
        for line, row in self._rows():
            yield self._event(line, row)


def _id(row: dict[str, Any], column: str | None) -> str | None:
    value = row.get(column) if column else None
    if value is None or isinstance(value, dict | list) or str(value) == "":
        return None  # the API generates one
    return str(value)


# -- the key ------------------------------------------------------------------------------


@contextlib.contextmanager
def replay_key(
    api_key: str | None, project: str, keys_db: Path, note: Callable[[str], None]
) -> Iterator[str]:
    """The key to send with: ``api_key`` if given, else a temporary key for ``project`` in
    the local keys database, revoked on exit."""
    if api_key:
        # The key decides the project; when it is a local key, catch a mismatch early.
        if keys_db.exists():
            store = KeyStore(keys_db)
            try:
                info = store.authenticate(api_key)
            finally:
                store.close()
            if info is not None and info.project != project:
                raise ReplayError(
                    f"the API key belongs to project {info.project!r}, not {project!r}"
                )
        yield api_key
        return
    if not keys_db.exists():
        raise ReplayError(
            "no API key: pass --api-key (or set TURRET_API_KEY), or point --data-dir at the "
            "data dir of the running `turret-stream up` so replay can make a temporary key"
        )
    store = KeyStore(keys_db)
    try:
        known = {k.project for k in store.list()}
        try:
            temporary = store.create(project)
        except KeyStoreError as exc:
            raise ReplayError(str(exc)) from None
        new = "" if project in known else " (a new project)"
        note(f"using a temporary key for project '{project}'{new}; revoked when done")
        try:
            yield temporary.secret
        finally:
            store.revoke(temporary.info.key_id)
    finally:
        store.close()


def check_api(url: str) -> str | None:
    """Raise ReplayError when nothing answers at ``url``; a warning when it is not ready."""
    try:
        response = httpx.get(f"{url}/readyz", timeout=5.0)
    except httpx.HTTPError as exc:
        raise ReplayError(
            f"API unreachable at {url} ({exc}); is `turret-stream up` running?"
        ) from None
    if response.status_code == 503:
        try:
            checks = response.json().get("checks")
        except ValueError:
            checks = None
        # Accepted events wait in Kafka until the worker runs: worth saying, not fatal.
        return f"the API is not ready ({checks}); events are processed once the worker runs"
    # Anything else answered (Turret itself has no /readyz): /track decides from here.
    return None


# -- sending ------------------------------------------------------------------------------


def send_events(
    source: ReplaySource,
    api_key: str,
    url: str,
    *,
    concurrency: int = 8,
    on_event: Callable[[ReplayStats], None] | None = None,
) -> ReplayStats:
    """POST every event of ``source``; per-session order kept (see the module docstring)."""
    stats = ReplayStats()
    lock = threading.Lock()
    stop = threading.Event()
    lanes: list[queue.Queue[Event | None]] = [
        queue.Queue(maxsize=_LANE_DEPTH) for _ in range(concurrency)
    ]

    def lane(inbox: queue.Queue[Event | None]) -> None:
        # One client per thread; its backoff sleeps end early once the replay stops.
        with TurretClient(api_key, url, max_retries=6, backoff_max=10.0, sleep=stop.wait) as c:
            while (event := inbox.get()) is not None:
                if stop.is_set():
                    continue  # drain, so the dispatcher never blocks on a full lane
                code = message = None
                try:
                    c.track(
                        event.name,
                        event.metadata,
                        session_id=event.session_id,
                        user_id=event.user_id,
                    )
                except TrackError as exc:
                    code, message = exc.code or "ERROR", f"line {event.line}: {exc}"
                with lock:  # also serialises the progress callback
                    stats.record(code, message)
                    if code in FATAL_CODES and stats.aborted is None:
                        stats.aborted = _fatal_message(code, message or "", url)
                        stop.set()
                    if on_event is not None:
                        on_event(stats)

    threads = [threading.Thread(target=lane, args=(q,), daemon=True) for q in lanes]
    for t in threads:
        t.start()

    def finish() -> None:
        for q in lanes:
            q.put(None)
        for t in threads:
            t.join()

    try:
        for index, event in enumerate(source):
            stats.rows += 1
            if event is None:
                stats.skipped += 1
                continue
            if stop.is_set():
                break
            # crc32, not hash(): str hashes differ between processes and runs.
            key = event.session_id
            slot = zlib.crc32(key.encode()) if key is not None else index
            lanes[slot % concurrency].put(event)
        finish()
    except KeyboardInterrupt:
        # Ctrl-C (while reading or waiting for the senders): let the in-flight requests
        # finish, drop the queued rows, and still report. A second Ctrl-C ends it at once
        # (the senders are daemon threads).
        stop.set()
        stats.aborted = "interrupted: the rows not counted as sent or failed were not sent"
        finish()
    except BaseException:
        stop.set()
        finish()
        raise
    finally:
        stats.elapsed = time.monotonic() - stats.started
    return stats


def _fatal_message(code: str, message: str, url: str) -> str:
    if code == "INVALID_API_KEY":
        return (
            f"the API at {url} refused the key ({message}); without --api-key the temporary "
            "key is made in --data-dir, which must be the data dir of that API's `up`"
        )
    return f"API unreachable at {url} ({message}); stopped the replay"


# -- the command --------------------------------------------------------------------------


def replay(
    options: ReplayOptions,
    *,
    api_key: str | None,
    keys_db: Path,
    show_progress: bool = True,
) -> ReplayStats:
    """Validate the file, get a key, check the API, send every row. Raises ReplayError."""
    source = ReplaySource(options)

    def note(message: str) -> None:
        click.echo(message, err=True)

    with replay_key(api_key, options.project, keys_db, note) as key:
        warning = check_api(options.url)
        if warning:
            note(f"warning: {warning}")
        if not show_progress:
            return send_events(source, key, options.url, concurrency=options.concurrency)
        with click.progressbar(
            length=source.events,
            label=f"replaying {options.path.name}",
            file=sys.stderr,
            item_show_func=lambda s: f"{s.rate:.0f} events/s" if s else None,
        ) as bar:
            return send_events(
                source,
                key,
                options.url,
                concurrency=options.concurrency,
                on_event=lambda s: bar.update(1, s),
            )
