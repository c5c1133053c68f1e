"""The owner's state log: what counts toward compaction, and what a restart reads back."""

from __future__ import annotations

import numpy as np

from turret_stream.catalog import dimension_names
from turret_stream.clustering.owner_state import Changes, OwnerStateStore
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
