"""Projects and their API keys, kept in SQLite in the data dir.

A key is ``tsk_<key id>_<secret>``: the key id (public, shown by ``keys list``) finds the
row, and only a SHA-256 of the whole key is stored. Keys carry 256 bits of randomness, so
a fast hash is enough (no password stretching needed); comparison is constant-time.
Every lookup reads the database, so a revocation by another process (the CLI) takes
effect on the next request.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from turret_stream.errors import KeyStoreError

PROJECT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_KEY_FORMAT = re.compile(r"^tsk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    key_id      TEXT PRIMARY KEY,
    project     TEXT NOT NULL,
    key_hash    TEXT NOT NULL,
    created_at  REAL NOT NULL,
    revoked_at  REAL
);
CREATE INDEX IF NOT EXISTS api_keys_project ON api_keys(project);
"""


@dataclass(frozen=True)
class ApiKeyInfo:
    key_id: str
    project: str
    created_at: float
    revoked_at: float | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True)
class NewApiKey:
    info: ApiKeyInfo
    # The only time the full key exists outside the caller's hands.
    secret: str


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def validate_project_name(name: str) -> str:
    if not PROJECT_NAME.match(name):
        raise KeyStoreError(
            f"invalid project name {name!r}: use 1-64 characters of a-z, 0-9, '-' or '_', "
            "starting with a letter or digit"
        )
    return name


# Keys answered from memory at most (a bound on what many keys can grow).
_MAX_CACHED = 10_000


class KeyStore:
    """The one owner of the keys database of a data dir."""

    def __init__(self, path: Path, cache_s: float = 0.0) -> None:
        """``cache_s``: how long ``authenticate`` may answer a key it accepted from memory
        (a revocation by another process then takes effect within that time)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self._cache_s = cache_s
        # sha256 of a key -> (its info, until when it may be answered from here).
        self._accepted: dict[str, tuple[ApiKeyInfo, float]] = {}
        # Autocommit; WAL so the CLI can write while the API reads.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def create(self, project: str, max_projects: int | None = None) -> NewApiKey:
        """A new key for ``project`` (created with its first key); a new project beyond
        ``max_projects`` (``limits.max_projects``) is refused."""
        validate_project_name(project)
        if max_projects is not None:
            known = {row[0] for row in self._db.execute("SELECT DISTINCT project FROM api_keys")}
            if project not in known and len(known) >= max_projects:
                raise KeyStoreError(
                    f"this instance already has {len(known)} projects "
                    f"(limits.max_projects = {max_projects}); use an existing project"
                )
        key_id = secrets.token_hex(6)
        secret = f"tsk_{key_id}_{secrets.token_urlsafe(32)}"
        now = time.time()
        self._db.execute(
            "INSERT INTO api_keys(key_id, project, key_hash, created_at) VALUES (?, ?, ?, ?)",
            (key_id, project, _hash(secret), now),
        )
        return NewApiKey(ApiKeyInfo(key_id, project, now, None), secret)

    def list(self, project: str | None = None) -> list[ApiKeyInfo]:
        query = "SELECT key_id, project, created_at, revoked_at FROM api_keys"
        args: tuple[str, ...] = ()
        if project is not None:
            query += " WHERE project = ?"
            args = (project,)
        rows = self._db.execute(query + " ORDER BY created_at", args).fetchall()
        return [ApiKeyInfo(*row) for row in rows]

    def revoke(self, key_id: str) -> ApiKeyInfo:
        cur = self._db.execute(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE key_id = ?",
            (time.time(), key_id),
        )
        self._accepted.clear()
        if cur.rowcount == 0:
            raise KeyStoreError(f"no API key with id {key_id!r}")
        row = self._db.execute(
            "SELECT key_id, project, created_at, revoked_at FROM api_keys WHERE key_id = ?",
            (key_id,),
        ).fetchone()
        return ApiKeyInfo(*row)

    def authenticate(self, key: str | None) -> ApiKeyInfo | None:
        """The active key's info, or None for a missing, malformed, unknown or revoked key."""
        match = _KEY_FORMAT.match(key or "")
        if match is None:
            return None
        digest = _hash(key or "")
        now = time.monotonic()
        cached = self._accepted.get(digest)
        if cached is not None and cached[1] > now:
            return cached[0]
        # One indexed query, but the /track path's largest cost: kept briefly in memory.
        row = self._db.execute(
            "SELECT key_id, project, created_at, revoked_at, key_hash FROM api_keys "
            "WHERE key_id = ?",
            (match.group(1),),
        ).fetchone()
        if row is None or not hmac.compare_digest(row[4], digest):
            return None
        info = ApiKeyInfo(*row[:4])
        if not info.active:
            return None
        if self._cache_s > 0:
            if len(self._accepted) >= _MAX_CACHED:
                self._accepted.clear()
            self._accepted[digest] = (info, now + self._cache_s)
        return info

    def revoked(self, key_ids: Iterable[str]) -> set[str]:
        """Those of ``key_ids`` that are revoked or no longer exist: one indexed query, so
        a process can re-check the keys of its open connections every fraction of a second
        and see a revocation made by another process (the CLI)."""
        wanted = sorted(set(key_ids))
        gone: set[str] = set()
        # SQLite binds at most 999 variables per statement in older builds.
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            active = {
                row[0]
                for row in self._db.execute(
                    f"SELECT key_id FROM api_keys WHERE key_id IN ({marks}) AND revoked_at IS NULL",
                    chunk,
                )
            }
            gone.update(k for k in chunk if k not in active)
        return gone

    def is_empty(self) -> bool:
        return self._db.execute("SELECT 1 FROM api_keys LIMIT 1").fetchone() is None
