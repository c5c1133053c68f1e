"""The owner's state log: what counts toward compaction, and what a restart reads back."""

from __future__ import annotations

import numpy as np
import pytest

from tests.crash_child import event
from turret_stream.catalog import dimension_names
from turret_stream.clustering.owner_state import Changes, OwnerStateStore
from turret_stream.records import EmbeddedText
from turret_stream.storage.edge import EdgeStore


def changes(seq: int, rng: np.random.Generator) -> Changes:
    # A batch's usual shape: many moved centres (1.5 KB each), a small state change.
    centres = {seq * 1000 + i: rng.normal(size=384) for i in range(100)}
    return Changes(
        seq=seq,
        header={"events": seq * 100},
        micro_clusters=[{"id": seq, "n": 1.0}],
        centres=centres,
        seen=[f"evt_{seq}_{i}" for i in range(100)],
    )


def test_moved_centres_neither_trigger_compaction_nor_are_read_back_but_the_last(tmp_path):
    store = EdgeStore(tmp_path / "qdrant")
    try:
        names = dimension_names("acme", "prompt")
        records = OwnerStateStore(store, names, checkpoint_min_bytes=64 * 1024)
        rng = np.random.default_rng(1)
        written = [changes(seq, rng) for seq in range(1, 11)]
        total = 0
        for c in written:
            total += records.commit(c)
        # Ten batches wrote ~1.5 MB, nearly all of it centres: no compaction is due, the
        # state they logged is a few KB.
        assert total > 1_000_000
        assert records.log_bytes < 16 * 1024
        assert not records.compaction_due()

        state = OwnerStateStore(store, names, checkpoint_min_bytes=64 * 1024).load()
        assert state.seq == 10 and state.header == {"events": 1000}
        assert [seq for seq, _ in state.seen] == list(range(1, 11))
        assert set(state.micro_clusters) == set(range(1, 11))
        # Only the last batch's centres come back (its centre writes are redone), as the
        # store keeps them (float32).
        last = written[-1].centres
        assert state.last is not None and set(state.last.centres) == set(last)
        for mc, v in last.items():
            np.testing.assert_allclose(state.last.centres[mc], v.astype(np.float32))
    finally:
        store.close()


def tight_batches(n: int = 10, size: int = 30) -> list[list[EmbeddedText]]:
    """Events close to five centres (most land in a micro-cluster that exists), 400 s
    apart (33 hours: hours and days change), with an enum segment."""
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(5, 16))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = []
    for b in range(n):
        batch = []
        for j in range(size):
            i = b * size + j
            v = centres[int(rng.integers(5))] + rng.normal(scale=0.03, size=16)
            plan = {"plan": ["free", "pro"][i % 2]}
            batch.append(event(i, v, 1_700_000_000.0 + 400 * i, f"question number {i}", plan))
        out.append(batch)
    return out


@pytest.mark.parametrize("checkpoint_min_kb", [1, 100_000])  # compacted often / log only
def test_a_restart_restores_every_micro_clusters_counts_from_partial_records(
    tmp_path, checkpoint_min_kb
):
    """A batch logs only the hours, days and segment values it counted of each
    micro-cluster; read back over a checkpoint (or over the whole log), every
    micro-cluster's counts equal the live owner's. Real edge store."""
    from turret_stream.catalog import Catalog
    from turret_stream.clustering.owner import DimensionOwner
    from turret_stream.settings import Settings

    config = Settings(data_dir=tmp_path, clustering={"checkpoint_min_kb": checkpoint_min_kb})

    def open_owner() -> tuple[EdgeStore, DimensionOwner]:
        store = EdgeStore(tmp_path / "qdrant")
        return store, DimensionOwner(store, Catalog(store), "acme", "prompt", config, 16)

    store, live = open_owner()
    logged = []
    commit = live.records.commit

    def counting_commit(changes):
        logged.extend(r for r in changes.stats.values() if isinstance(r, dict))
        return commit(changes)

    live.records.commit = counting_commit
    for batch in tight_batches():
        live.process(batch)
    counts = {mc: s.to_record() for mc, s in live.stats.items()}
    store.close()
    store, again = open_owner()
    try:
        assert len(logged) > 10  # partial records were written
        assert any(len(s.hours) > 1 and len(s.days) > 1 for s in live.stats.values())
        assert {mc: s.to_record() for mc, s in again.stats.items()} == counts
    finally:
        store.close()
