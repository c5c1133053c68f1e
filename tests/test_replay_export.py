"""`replay` sends files through the real pipeline; `export events` reads them back."""

from __future__ import annotations

import asyncio
import csv
import json
from collections import Counter
from datetime import datetime
from pathlib import Path

from click.testing import CliRunner

from turret_stream.cli import main
from turret_stream.client import TurretClient
from turret_stream.keys import KeyStore
from turret_stream.replay import Columns, ReplayOptions, replay
from turret_stream.stack import running_stack
from turret_stream.storage.edge import EdgeStore

from .conftest import free_port, make_settings, wait_until

GROUPS = {
    "password": [
        "How do I reset my password?",
        "I forgot my password, how can I change it?",
        "Can you help me reset the password for my account?",
        "What is the way to recover a forgotten password?",
        "My password does not work anymore, how do I set a new one?",
        "How can I change my account password?",
        "I need to reset my login password",
        "Where do I go to reset a lost password?",
        "Please send me a password reset link",
        "I can't remember my password, what should I do?",
        "How do I get a new password for my account?",
        "Password reset is not working for me",
        "Steps to change a forgotten password",
        "How to recover access after forgetting my password?",
        "Reset my password please",
    ],
    "card": [
        "When will my new card be delivered?",
        "My bank card has not arrived yet",
        "How long does card delivery take?",
        "I am still waiting for my card to arrive in the mail",
        "Can I track the delivery of my card?",
        "Where is my new debit card?",
        "The card you sent me has not been delivered",
        "How many days until my card arrives?",
        "Has my replacement card been shipped?",
        "My card delivery is late",
        "What is the status of my card shipment?",
        "I ordered a card two weeks ago and it is not here",
        "Is my credit card on its way?",
        "When does the physical card arrive by post?",
        "Card delivery is taking too long",
    ],
    "weather": [
        "What is the weather like today?",
        "Will it rain tomorrow?",
        "How hot will it be this afternoon?",
        "Is it going to snow this weekend?",
        "What is the forecast for tomorrow morning?",
        "Should I take an umbrella today?",
        "How cold is it outside right now?",
        "Will it be sunny on Saturday?",
        "What temperature is it going to be tonight?",
        "Is there a storm coming this week?",
        "Weather forecast for the next few days",
        "Is it windy outside today?",
        "Will the weather be nice for a picnic tomorrow?",
        "How much rain is expected tonight?",
        "Tell me today's weather forecast",
    ],
}
GROUP_OF = {text: group for group, texts in GROUPS.items() for text in texts}


def interleaved(start: int, stop: int) -> list[str]:
    """Rows start..stop of each group, mixed so every session sees every group."""
    return [GROUPS[g][i] for i in range(start, stop) for g in GROUPS]


def write_csv(path: Path, texts: list[str]) -> list[dict]:
    rows = [
        {"question": t, "conversation": f"c{i % 2}", "user": f"u{i % 2}", "platform": "web"}
        for i, t in enumerate(texts)
    ]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows


def write_jsonl(path: Path, texts: list[str]) -> list[dict]:
    rows = [
        {"question": t, "conversation": f"j{i % 2}", "user": "u9", "n": i, "extra": {"x": 1}}
        for i, t in enumerate(texts)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def invoke(*args: str):
    result = CliRunner().invoke(main, list(args))
    assert "Traceback" not in result.output
    return result


async def test_replay_through_the_pipeline_then_export(tmp_path: Path, broker):
    # Reclustering runs when a batch arrives at least this long after the last one.
    settings = make_settings(
        tmp_path / "data", broker.port, **{"clustering.recluster_interval_s": 0.5}
    )
    csv_rows = write_csv(tmp_path / "prompts.csv", interleaved(0, 10))
    jsonl_rows = write_jsonl(tmp_path / "prompts.jsonl", interleaved(10, 15))
    columns = Columns("question", "conversation", "user")
    placed: list = []  # assignments, in the order the topic owner processed them

    async with running_stack(settings, broker=False, worker=True, api=True) as stack:
        stack.topology.owners.listeners.append(placed.append)
        # No key: a temporary one for the project, made in the data dir and revoked after.
        options = ReplayOptions(tmp_path / "prompts.csv", "acme", stack.api_url, columns)
        stats = await asyncio.to_thread(
            replay, options, api_key=None, keys_db=settings.keys_db_path, show_progress=False
        )
        assert (stats.rows, stats.sent, stats.failed_total, stats.skipped) == (30, 30, 0, 0)
        keys = KeyStore(settings.keys_db_path)
        assert [k.active for k in keys.list("acme")] == [False]

        # With a key (the key decides the project), through the CLI, fewer senders.
        key = keys.create("acme").secret
        keys.close()
        result = await asyncio.to_thread(
            invoke,
            "replay", str(tmp_path / "prompts.jsonl"), "--project", "acme",
            "--text-column", "question", "--session-column", "conversation",
            "--user-column", "user", "--url", stack.api_url, "--api-key", key,
            "--concurrency", "2",
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert "read 15 rows: sent 15, failed 0" in result.stdout
        await wait_until(lambda: len(placed) >= 45, timeout=20.0)

        # Events learned since the last recluster keep a provisional topic (or none) until
        # the next one, which only a new batch triggers: one more event once it is due.
        await asyncio.sleep(0.6)
        client = TurretClient(key, stack.api_url)
        await asyncio.to_thread(client.track, "user_prompt", {"prompt": "Reset password help"})
        await wait_until(lambda: len(placed) >= 46, timeout=20.0)
        await asyncio.to_thread(client.close)

    out = tmp_path / "events.jsonl"
    result = invoke("export", "events", "--project", "acme", "--data-dir", str(settings.data_dir),
                    "--out", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "exported 46 events (prompt: 46)" in result.stderr
    events = [json.loads(line) for line in out.read_text().splitlines()]
    by_text = {e["text"]: e for e in events}

    # Every replayed row once, with its text, dimension, ids and the other columns.
    sent = [r["question"] for r in csv_rows + jsonl_rows]
    assert Counter(e["text"] for e in events if e["text"] in GROUP_OF) == Counter(sent)
    assert {e["dimension"] for e in events} == {"prompt"}
    first = by_text[csv_rows[0]["question"]]
    assert (first["session_id"], first["user_id"], first["name"]) == ("c0", "u0", "user_prompt")
    assert first["metadata"] == {"prompt": csv_rows[0]["question"], "platform": "web"}
    assert by_text[jsonl_rows[3]["question"]]["metadata"]["n"] == 3  # nested "extra" dropped
    assert "extra" not in by_text[jsonl_rows[3]["question"]]["metadata"]

    # Paraphrases share a topic; the three groups get three different ones.
    majority = {}
    for group, texts in GROUPS.items():
        topic, n = Counter(by_text[t]["cluster_id"] for t in texts).most_common(1)[0]
        assert topic is not None and n >= 0.6 * len(texts), (group, n)
        majority[group] = topic
    assert len(set(majority.values())) == 3

    # Per session, the topic owner saw the events in file order, at rising timestamps.
    text_of = {e["event_id"]: e["text"] for e in events}
    for session in ("c0", "c1", "j0", "j1"):
        in_file = [r["question"] for r in csv_rows + jsonl_rows if r["conversation"] == session]
        seen = [text_of[a.event_id] for a in placed if a.session_id == session]
        assert seen == in_file, session
        stamps = [datetime.fromisoformat(by_text[t]["timestamp"]) for t in in_file]
        assert stamps == sorted(stamps)

    # An unknown project or dimension is named, with what exists.
    result = invoke("export", "events", "--project", "nope", "--data-dir", str(settings.data_dir))
    assert result.exit_code == 1 and "projects: acme" in result.stderr
    result = invoke("export", "events", "--project", "acme", "--dimension", "platform",
                    "--data-dir", str(settings.data_dir))  # fmt: skip
    assert result.exit_code == 1 and "text dimensions: prompt" in result.stderr


def test_replay_reports_file_errors_clearly(tmp_path: Path):
    def run(path: Path, *extra: str):
        return invoke("replay", str(path), "--project", "acme", "--data-dir",
                      str(tmp_path / "data"), *extra)  # fmt: skip

    result = run(tmp_path / "missing.csv")
    assert result.exit_code == 1 and "no such file" in result.stderr

    (tmp_path / "rows.txt").write_text("hello\n")
    result = run(tmp_path / "rows.txt")
    assert result.exit_code == 1 and "unknown file type '.txt'" in result.stderr

    write_csv(tmp_path / "rows.csv", ["How do I reset my password?"])
    result = run(tmp_path / "rows.csv")
    assert result.exit_code == 1
    assert "no text column 'text'" in result.stderr
    assert "available columns: question, conversation, user, platform" in result.stderr
    result = run(tmp_path / "rows.csv", "--text-column", "question", "--session-column", "sid")
    assert result.exit_code == 1 and "no session column 'sid'" in result.stderr

    lines = ['{"text": "one two three"}', "", '{"text": "four"', '{"text": "five"}']
    (tmp_path / "rows.jsonl").write_text("\n".join(lines) + "\n")
    result = run(tmp_path / "rows.jsonl")
    assert result.exit_code == 1 and "line 3: invalid JSON" in result.stderr

    (tmp_path / "rows.jsonl").write_text('{"prompt": "hi there you"}\n[1, 2]\n')
    result = run(tmp_path / "rows.jsonl")
    assert result.exit_code == 1 and "line 2: expected a JSON object" in result.stderr
    result = run(tmp_path / "rows.jsonl", "--limit", "1")
    assert result.exit_code == 1 and "available columns: prompt" in result.stderr


def test_replay_reports_key_and_api_errors_clearly(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("TURRET_API_KEY", raising=False)
    (tmp_path / "rows.jsonl").write_text('{"text": "How do I reset my password?"}\n')
    args = ["replay", str(tmp_path / "rows.jsonl"), "--project", "acme"]
    data = ["--data-dir", str(tmp_path / "data")]
    url = f"http://127.0.0.1:{free_port()}"

    result = invoke(*args, *data, "--url", url)
    assert result.exit_code == 1 and "no API key" in result.stderr

    result = invoke(*args, *data, "--url", url, "--api-key", "tsk_whatever")
    assert result.exit_code == 1 and f"API unreachable at {url}" in result.stderr

    keys = KeyStore(tmp_path / "data" / "keys.sqlite3")
    other = keys.create("other").secret
    result = invoke(*args, *data, "--url", url, "--api-key", other)
    assert result.exit_code == 1 and "belongs to project 'other'" in result.stderr

    # The temporary key is revoked even when the API cannot be reached.
    result = invoke(*args, *data, "--url", url)
    assert result.exit_code == 1 and "API unreachable" in result.stderr
    assert [k.active for k in keys.list("acme")] == [False]
    keys.close()


def test_export_refuses_a_store_locked_by_a_running_up(tmp_path: Path):
    settings = make_settings(tmp_path / "data", 9)
    held = EdgeStore(settings.qdrant_path)  # what a running `up` holds
    try:
        result = invoke("export", "events", "--project", "acme", "--data-dir",
                        str(settings.data_dir))  # fmt: skip
    finally:
        held.close()
    assert result.exit_code == 1
    assert "in use by a running turret-stream" in result.stderr
    assert "Stop it first" in result.stderr and "GET /v1/clusters/{id}/events" in result.stderr

    result = invoke("export", "events", "--project", "acme", "--data-dir", str(tmp_path / "no"))
    assert result.exit_code == 1 and "no vector store" in result.stderr
