"""A kill at any write boundary of a batch leaves state that restarts cleanly, with
nothing lost or counted twice: the owner is killed (``os._exit``, like kill -9) at each
boundary, restarted, fed the whole stream again (Kafka redelivers what was not
acknowledged, the dedupe window skips what was learned), and ends exactly where an
owner that never crashed ends."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from turret_stream.catalog import Catalog
from turret_stream.clustering.owner_state import WRITE_BOUNDARIES
from turret_stream.faults import ENV, EXIT_CODE
from turret_stream.queries import Queries

from .crash_child import batches, open_owner

ROOT = Path(__file__).resolve().parents[1]


def outcome(data_dir: Path) -> dict:
    """Learn the whole stream (again) and describe the state it leaves."""
    store, owner = open_owner(data_dir)
    try:
        # What readers see of the count agrees with the restored owner.
        entry = Catalog(store).dimension("acme", "prompt")
        assert entry is None or entry["events"] == owner.events
        stream = batches()
        for batch in stream:
            owner.process(batch)
        model = owner.model
        assert model is not None
        live = model.engine.micro_clusters
        ids = [e.event_id for batch in stream for e in batch]
        stored = {r.id: r.payload["mc"] for r in store.retrieve(owner.names.events, ids)}
        # Every stored centre belongs to a micro-cluster the model knows, and back.
        centres = set()
        offset = None
        while True:
            records, offset = store.scroll(owner.names.mc, limit=1000, offset=offset)
            centres |= {int(r.id[3:]) for r in records}
            if offset is None:
                break
        assert centres == set(live)
        topic_map = Queries(store).topic_map(owner.names)
        assert dict(topic_map.mapping) == model.registry.mapping
        # A new event finds its neighbours (the KeyError of an unknown micro-cluster).
        extra = batches(12)[-1][:3]
        owner.process(extra)
        return {
            "events": owner.events,
            "counted": sum(m.count for m in live.values())
            + sum(1 for mc in stored.values() if model.engine.resolve(mc) is None),
            "event_mcs": [stored[i] for i in ids],
            "counts": {mc: m.count for mc, m in live.items()},
            "topics": sorted(sorted(m) for m in model.topics().values()),
            "stored_topics": len(stored),
        }
    finally:
        store.close()


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    return outcome(tmp_path_factory.mktemp("reference"))


def test_stream_exercises_every_kind_of_write(tmp_path):
    """The fixed stream reclusters and absorbs micro-clusters within its batches, so the
    kills below hit batches that write every kind of record."""
    store, owner = open_owner(tmp_path)
    reclusters, checkpoints = 0, set()
    for batch in batches():
        owner.process(batch)
        reclusters += owner.last_persist.reclustered
        checkpoints.add(owner.records.checkpoint_version)
    absorbed = len(owner.model.engine.absorbed)
    store.close()
    assert reclusters >= 3 and absorbed >= 1 and len(checkpoints - {0}) >= 3


@pytest.mark.slow  # one process per boundary
@pytest.mark.parametrize("boundary", WRITE_BOUNDARIES)
def test_killed_at_a_write_boundary_restarts_with_nothing_lost_or_counted_twice(
    boundary, tmp_path, reference
):
    # Mid-stream: the 4th batch (a reclustering one), or the 2nd compaction.
    nth = 2 if boundary.startswith(("checkpoint", "compacted")) else 4
    env = {**os.environ, ENV: f"{boundary}:{nth}"}
    run = subprocess.run(
        [sys.executable, "-m", "tests.crash_child", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == EXIT_CODE, run.stderr[-2000:]
    after = outcome(tmp_path)
    total = sum(len(b) for b in batches())
    assert after["events"] == total + 3
    assert after == reference
