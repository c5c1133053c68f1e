"""API keys: the store and the `turret-stream keys` commands."""

from __future__ import annotations

import sqlite3

import pytest
from click.testing import CliRunner

from turret_stream.cli import main
from turret_stream.errors import KeyStoreError
from turret_stream.keys import KeyStore

from .conftest import wait_until


def test_keys_are_high_entropy_and_stored_only_as_hashes(tmp_path):
    store = KeyStore(tmp_path / "k.db")
    a, b = store.create("acme"), store.create("acme")
    assert a.secret != b.secret and len(a.secret) > 50
    assert store.authenticate(a.secret).project == "acme"
    dump = "\n".join(sqlite3.connect(tmp_path / "k.db").iterdump())
    # The random part may itself hold "_" (URL-safe base64): split at the first two only.
    assert a.secret not in dump and a.secret.split("_", 2)[2] not in dump


def test_unknown_tampered_and_revoked_keys_fail(tmp_path):
    store = KeyStore(tmp_path / "k.db")
    key = store.create("acme")
    tampered = key.secret[:-1] + ("A" if key.secret[-1] != "A" else "B")
    assert store.authenticate(tampered) is None
    assert store.authenticate(None) is None
    store.revoke(key.info.key_id)
    assert store.authenticate(key.secret) is None
    with pytest.raises(KeyStoreError):
        store.revoke("000000000000")


@pytest.mark.parametrize("name", ["", "Acme", "a b", "-x", "x" * 65, "a:b"])
def test_project_names_are_checked(tmp_path, name):
    with pytest.raises(KeyStoreError, match="invalid project name"):
        KeyStore(tmp_path / "k.db").create(name)


def test_revocation_by_another_process_is_seen_at_once(tmp_path):
    api_side, cli_side = KeyStore(tmp_path / "k.db"), KeyStore(tmp_path / "k.db")
    key = cli_side.create("acme")
    assert api_side.authenticate(key.secret) is not None
    cli_side.revoke(key.info.key_id)
    assert api_side.authenticate(key.secret) is None


async def test_remembered_keys_are_refused_once_revoked_elsewhere(tmp_path):
    # The API answers an accepted key from memory for http.auth_cache_s; a revocation by
    # another process is seen when that runs out, a tampered key never rides on it, and
    # a revocation through the same store applies at once.
    api_side = KeyStore(tmp_path / "k.db", cache_s=0.3)
    cli_side = KeyStore(tmp_path / "k.db")
    a, b = cli_side.create("acme"), cli_side.create("acme")
    assert api_side.authenticate(a.secret).key_id == a.info.key_id
    assert api_side.authenticate(a.secret[:-1] + ("A" if a.secret[-1] != "A" else "B")) is None
    cli_side.revoke(a.info.key_id)
    await wait_until(lambda: api_side.authenticate(a.secret) is None, timeout=5)
    assert api_side.authenticate(b.secret) is not None
    api_side.revoke(b.info.key_id)
    assert api_side.authenticate(b.secret) is None


def test_cli_create_list_revoke(tmp_path):
    runner = CliRunner()
    data = ["--data-dir", str(tmp_path)]
    created = runner.invoke(main, ["keys", "create", "--project", "acme", *data])
    assert created.exit_code == 0, created.output
    secret = created.output.strip().splitlines()[-1]
    assert secret.startswith("tsk_")
    key_id = secret.split("_")[1]

    listed = runner.invoke(main, ["keys", "list", *data])
    assert key_id in listed.output and "acme" in listed.output and "active" in listed.output
    assert secret not in listed.output

    revoked = runner.invoke(main, ["keys", "revoke", key_id, *data])
    assert revoked.exit_code == 0
    assert "revoked" in runner.invoke(main, ["keys", "list", *data]).output
    assert KeyStore(tmp_path / "keys.sqlite3").authenticate(secret) is None


def test_cli_errors_are_clear(tmp_path):
    runner = CliRunner()
    bad = runner.invoke(main, ["keys", "create", "--project", "Bad Name", "--data-dir", tmp_path])
    assert bad.exit_code == 1 and "invalid project name" in bad.output
    assert "Traceback" not in bad.output
    unknown = runner.invoke(main, ["keys", "revoke", "abc", "--data-dir", str(tmp_path)])
    assert unknown.exit_code == 1 and "no API key with id 'abc'" in unknown.output
