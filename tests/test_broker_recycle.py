"""`up` replaces its embedded broker in place once the broker's memory passes
``kafka.embedded_recycle_bytes`` (broker_recycle.py): /track keeps answering 200 into the
journal meanwhile, and every event answered 200 is stored exactly once."""

from __future__ import annotations

import asyncio
import functools
import json
import urllib.request

import aiohttp
import faust
import pytest

from turret_stream.broker import EmbeddedBroker, free_port
from turret_stream.errors import PipelineBehind
from turret_stream.faust_app import quiet_cancelled_sends
from turret_stream.journal import Journal
from turret_stream.producer import EventPublisher
from turret_stream.progress import PipelineProgress
from turret_stream.settings import PipelineSettings
from turret_stream.storage import open_store
from turret_stream.worker_process import WorkerProcess

from .conftest import consume, make_settings
from .durability_driver import (
    ENV,
    Stream,
    counted_events,
    post,
    stored_ids,
    tally,
    wait,
)
from .test_up import Up, _get


def _event(i: int, session: str) -> tuple[bytes, bytes, str]:
    event_id = f"evt_{i}"
    value = json.dumps({"event_id": event_id, "session_id": session, "n": i}).encode()
    return session.encode(), value, event_id


async def test_held_events_are_journaled_then_written_to_the_new_broker_in_order(tmp_path):
    broker = EmbeddedBroker("127.0.0.1", free_port())
    await broker.start()
    settings = make_settings(tmp_path / "data", broker.port)
    journal = Journal(tmp_path / "journal")
    journal.open()
    progress = PipelineProgress()
    publisher = EventPublisher(
        settings.bootstrap_servers,
        settings.kafka,
        journal=journal,
        progress=progress,
        pipeline=PipelineSettings(max_lag_events=7),
    )
    try:
        for i in range(3):
            await publisher.publish(*_event(i, "s1")[:2], event_id=f"evt_{i}")
        assert len(await consume(settings, 3)) == 3

        hold_seq = journal.last_seq + 1
        await publisher.hold()
        assert publisher.holding
        for i in range(3, 7):
            key, value, event_id = _event(i, f"s{i % 2}")
            await publisher.publish(key, value, event_id)
            # Answered: on disk in the journal, not on the broker.
            assert event_id in {r.event_id for r in journal.records()}
        assert publisher.held == 4
        assert publisher.backlog == 7  # three open, four held: back-pressure counts both
        with pytest.raises(PipelineBehind):
            publisher.check_capacity()
        assert len(await consume(settings, 4, timeout=2.0)) == 3  # nothing held was sent

        # The broker is replaced: a fresh one on the same port, its log empty.
        await broker.stop()
        await broker.start()
        still_open = progress.forget_open()
        assert still_open == {1, 2, 3}  # their journal sequence numbers
        unconfirmed = await asyncio.to_thread(journal.unconfirmed, hold_seq)
        assert [r.event_id for r in unconfirmed] == ["evt_0", "evt_1", "evt_2"]
        assert await publisher.release(unconfirmed, still_open) == 7
        assert not publisher.holding and publisher.held == 0

        await publisher.publish(*_event(7, "s1")[:2], event_id="evt_7")
        messages = await consume(settings, 8)
        order = [json.loads(m.value)["n"] for m in messages]
        assert sorted(order) == list(range(8))
        for session in (b"s0", b"s1"):  # each session's events in the order accepted
            mine = [json.loads(m.value)["n"] for m in messages if m.key == session]
            assert mine == sorted(mine)
        # Counted once each: the three written again were counted when first accepted.
        assert progress.accepted == 8 and progress.lag == 8
        assert publisher.held_total == 4 and publisher.holds == 1
    finally:
        await publisher.close()
        await journal.close()
        await broker.stop()


@pytest.mark.timeout(180)
async def test_the_next_worker_loads_the_model_without_the_store_then_starts_on_go(
    tmp_path, broker
):
    settings = make_settings(tmp_path / "data", broker.port)
    store = open_store(settings)  # the current worker's store: one process may hold it
    try:
        worker = WorkerProcess(settings, PipelineProgress())
        await worker.start(prepare_only=True)  # would fail if it opened the store
        discarded = WorkerProcess(settings, PipelineProgress())
        await discarded.start(prepare_only=True)
        await discarded.stop()  # a recycle that failed before it needed this one
        assert discarded.exit_description() == "exited with status 0"
    finally:
        store.close()
    try:
        await worker.proceed()
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{worker.url}/healthz") as resp,
        ):
            assert resp.status == 200
    finally:
        await worker.stop()
    assert worker.exit_description() == "exited with status 0"


def test_events_written_again_after_a_recycle_are_counted_once():
    progress = PipelineProgress()
    for seq in (1, 2, 3):
        progress.opened(f"evt_{seq}", seq)
    progress.embedded("evt_1", 1)
    progress.clustered("evt_1")  # processed, not yet confirmed in the journal
    assert progress.processed == 1

    still_open = progress.forget_open()
    assert still_open == {2, 3} and progress.lag == 0
    for seq in (1, 2, 3):  # the journal's unconfirmed records, written again
        progress.opened(f"evt_{seq}", seq, accepted=False, done=seq not in still_open)
    assert progress.confirmed_seq() == 0
    for seq in (1, 2, 3):
        progress.embedded(f"evt_{seq}", 1)
        progress.clustered(f"evt_{seq}")
    assert (progress.accepted, progress.processed, progress.lag) == (3, 3, 0)
    assert progress.confirmed_seq() == 3


async def test_a_send_cancelled_by_a_stopping_worker_logs_no_traceback(caplog):
    # faust-streaming reads a cancelled send's result in a done callback (faust_app.py).
    loop = asyncio.get_running_loop()
    quiet_cancelled_sends(loop)
    topic = faust.App("quiet-test", broker="kafka://127.0.0.1:1").topic("t")
    cancelled = loop.create_future()
    cancelled.add_done_callback(
        functools.partial(topic._on_published, message=None, state=None, producer=None)
    )
    cancelled.cancel()
    other = loop.create_future()
    other.add_done_callback(lambda f: f.result())  # not Faust's: still reported
    other.cancel()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "lambda" in errors[0].getMessage()


def _metrics(url: str) -> dict[str, float]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
        lines = resp.read().decode().splitlines()
    return {line.split()[0]: float(line.split()[1]) for line in lines if not line.startswith("#")}


def _metric(url: str, name: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"no {name} in /metrics")


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_up_replaces_its_broker_under_load_and_loses_nothing(tmp_path):
    # Recycled once the broker has grown by about a thousand events past its start (18-20
    # MB), so every few seconds while the stream runs and no more once it stops; no drain,
    # so what the old worker had not finished is written again from the journal and
    # deduplicated.
    env = {
        "TURRET_KAFKA__EMBEDDED_RECYCLE_BYTES": str(26 * 1024 * 1024),
        "TURRET_KAFKA__EMBEDDED_RECYCLE_CHECK_S": "3",
        "TURRET_PIPELINE__DRAIN_TIMEOUT_S": "0",
        "TURRET_RATE_LIMIT__ENABLED": "false",
    }
    data_dir = tmp_path / "data"
    up = Up(data_dir, {**ENV, **env})
    key = up.read_key()
    up.wait_ready(timeout=120)
    first_brokers = up.broker_pids()
    stream = Stream(up.url, key, "r1", threads=2)
    during: list[str] = []
    extra: set[str] = set()
    try:
        stream.start()

        def restarting() -> bool:
            status, body = _get(f"{up.url}/readyz")
            return status == 503 and body.get("checks", {}).get("broker") == "restarting"

        def accepted_while_restarting() -> bool:
            # The stream may hold the backlog at its bound (503): try until one is taken.
            if not restarting():
                return False
            body = {"name": "p", "metadata": {"prompt": "during the recycle"}, "session_id": "x"}
            status, answer = post(up.url, key, body)
            if status == 200:
                extra.add(answer["event_id"])
                if restarting():  # answered 200 while the broker was being replaced
                    during.append(answer["event_id"])
                    return True
            return False

        wait(accepted_while_restarting, timeout=180, every=0.05)
        wait(lambda: _metric(up.url, "turret_broker_recycles_total") >= 2, timeout=180)
        stream.stop()
        assert _metric(up.url, "turret_track_held_total") >= 1
        assert not set(up.broker_pids()) & set(first_brokers), "the broker was not replaced"
        # Everything accepted gets through, each counted once.
        try:
            wait(
                lambda: (
                    _metric(up.url, "turret_events_processed_total")
                    == _metric(up.url, "turret_events_accepted_total")
                ),
                timeout=120,
            )
        except AssertionError:
            raise AssertionError(f"{_metrics(up.url)}\n{up.log_tail(80)}") from None
        counted = counted_events(up.url, key)
    finally:
        stream.stop()
        code = up.stop()
    log = up.log_tail(200)
    assert code == 0, log
    assert "Traceback" not in log, log
    # Workers stopped while busy let their store calls end before the store closed.
    assert "is closed" not in log, log
    assert set(stream.statuses) <= {200, 503}, stream.statuses  # 503: back-pressure

    # Every event answered 200 is processed (above): the store is listed as it is.
    result = tally(stream.acked | extra, stored_ids(data_dir), counted)
    assert result["acked"] >= 100, result
    assert result["lost"] == 0, result
    assert result["duplicated"] == 0, result
