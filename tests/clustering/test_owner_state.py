"""The owner's state log: what counts toward compaction, and what a restart reads back."""

from __future__ import annotations

import numpy as np
import pytest

from tests.crash_child import event
from turret_stream.catalog import dimension_names
from turret_stream.clustering.owner_state import (
    COLLECTION,
    Changes,
    OwnerStateStore,
    State,
    pack,
    unpack,
)
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


def test_checkpoints_share_the_dedupe_windows_ids_instead_of_copying_them(tmp_path):
    """A checkpoint writes only the event ids of the batches since the previous one (a
    ``seen`` record) and lists the records the window spans: a restart reads the window
    back exactly, and records out of the window are deleted."""
    store = EdgeStore(tmp_path / "qdrant")
    try:
        names = dimension_names("acme", "prompt")
        records = OwnerStateStore(store, names)
        window: list[tuple[int, list[str]]] = []  # the owner's window: the last 12 batches
        at_checkpoint: list[tuple[int, list[str]]] = []
        ids_written = 0
        for seq in range(1, 61):
            ids = [f"evt_{seq}_{i}" for i in range(20)]
            records.commit(Changes(seq=seq, header={"events": seq}, seen=ids))
            window = [*window, (seq, ids)][-12:]
            if seq % 7 == 0:  # compactions at other times than the window's edges
                before = {r.id for r in records._scan("seen", fields=())}
                records.checkpoint(State(seq=seq, header={"events": seq}, seen=list(window)))
                at_checkpoint = list(window)
                new = [r for r in records._scan("seen", fields=("blob",)) if r.id not in before]
                # Only the batches since the previous checkpoint were written.
                (record,) = new
                batches = [s for s, _ in unpack(record.payload["blob"])]
                assert batches == [s for s, _ in window if s > seq - 7]
                ids_written += 20 * len(batches)
            state = OwnerStateStore(store, names).load()
            since = [(s, i) for s, i in window if s > (seq // 7) * 7]
            assert state.seen == (at_checkpoint + since if at_checkpoint else window)
        # Each id went into one seen record, not into every checkpoint while in the window.
        assert ids_written == 20 * 56
        # Records whose batches all left the window are gone: 12 batches span 2 or 3.
        assert len(list(records._scan("seen", fields=()))) <= 3
    finally:
        store.close()


def test_a_checkpoint_of_the_previous_layout_still_restores_its_window(tmp_path):
    """Checkpoints written before the ``seen`` records held the window's ids in part 0;
    they are read as they are, and the next checkpoint moves the ids to a record."""
    store = EdgeStore(tmp_path / "qdrant")
    try:
        names = dimension_names("acme", "prompt")
        records = OwnerStateStore(store, names)
        window = [(s, [f"evt_{s}_{i}" for i in range(5)]) for s in range(1, 4)]
        part = {
            "micro_clusters": [],
            "stats": [],
            "header": {"events": 15},
            "absorbed": [],
            "seen": window,
            "communities": [],
            "assigned": [],
            "absorbed_since": [],
        }
        store.upsert(
            COLLECTION,
            [
                records._point("part", f"{names.slug}:checkpoint@3:0", blob=pack(part)),
                records._point(
                    "pointer", f"{names.slug}:checkpoint", version=3, parts=1, seq=3, bytes=100
                ),
            ],
        )
        reopened = OwnerStateStore(store, names)
        state = reopened.load()
        assert state.seq == 3 and state.seen == window
        ids = [f"evt_4_{i}" for i in range(5)]
        reopened.commit(Changes(seq=4, header={"events": 20}, seen=ids))
        reopened.checkpoint(State(seq=4, header={"events": 20}, seen=[*window, (4, ids)]))
        assert OwnerStateStore(store, names).load().seen == [*window, (4, ids)]
    finally:
        store.close()
