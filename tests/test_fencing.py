"""A dimension taken over by another worker's owner: the stale owner's writes are refused,
nothing it held is lost (redelivered to the new owner) or counted twice. Both owners share
one real store (Qdrant's engine, as two workers share a Qdrant server)."""

from __future__ import annotations

import numpy as np
import pytest

from turret_stream.agents.cluster import Owners
from turret_stream.catalog import dimension_names
from turret_stream.fencing import FencedStore, Lease, StaleOwner
from turret_stream.records import EmbeddedText, encode_vector
from turret_stream.settings import Settings
from turret_stream.storage import Point
from turret_stream.storage.edge import EdgeStore

DIM = 384


def _items(start: int, n: int) -> list[EmbeddedText]:
    rng = np.random.default_rng(start)
    centre = rng.standard_normal(DIM)
    out = []
    for i in range(start, start + n):
        v = centre + 0.05 * rng.standard_normal(DIM)
        out.append(
            EmbeddedText(
                event_id=f"evt_{i:032x}",
                project="acme",
                dimension="prompt",
                text=f"how do I reset the password of my account number {i}",
                vector=encode_vector((v / np.linalg.norm(v)).astype(np.float32)),
                model_id="m",
                name="p",
                metadata={"prompt": f"how do I reset the password of my account number {i}"},
                session_id=f"s{i % 4}",
                user_id="u",
                received_at=1_700_000_000.0 + i,
            )
        )
    return out


def _stored_ids(store: EdgeStore) -> list[str]:
    names = dimension_names("acme", "prompt")
    ids, offset = [], None
    while True:
        records, offset = store.scroll(names.events, limit=256, offset=offset)
        ids.extend(r.payload.get("event_id", r.id) for r in records)
        if offset is None:
            return ids


@pytest.fixture
def store(tmp_path):
    with EdgeStore(tmp_path / "qdrant") as s:
        yield s


def test_a_stale_owner_is_refused_and_the_new_owner_gets_everything_once(store, tmp_path):
    settings = Settings(data_dir=tmp_path)
    worker_a, worker_b = Owners(store, settings, DIM), Owners(store, settings, DIM)

    assert len(worker_a.process(_items(0, 20))) == 20
    # Worker B is given the partition (A missed its eviction) and takes the dimension over.
    assert len(worker_b.process(_items(20, 20))) == 20
    # A's next batch is refused: nothing written, its owner dropped.
    assert worker_a.process(_items(40, 20)) == []
    assert worker_a.stale_refused == 1
    assert sorted(_stored_ids(store)) == sorted(i.event_id for i in _items(0, 40))
    # The batch A held is redelivered to B: stored once, with the rest.
    assert len(worker_b.process(_items(40, 20))) == 20
    ids = _stored_ids(store)
    assert len(ids) == len(set(ids)) == 60


def test_every_kind_of_write_is_checked(store):
    first = Lease(store, "acme.prompt")
    first.acquire()
    fenced = FencedStore(store, first)
    fenced.create_collection("c", 2, "cosine")
    fenced.upsert("c", [Point("p1", [1.0, 0.0], {"n": 1})])
    second = Lease(store, "acme.prompt")
    assert second.acquire() == first.epoch + 1
    for write in (
        lambda: fenced.upsert("c", [Point("p2", [0.0, 1.0], {})]),
        lambda: fenced.set_payload("c", ["p1"], {"n": 2}),
        lambda: fenced.delete("c", ["p1"]),
        lambda: fenced.create_collection("d", 2, "cosine"),
        lambda: fenced.drop_collection("c"),
    ):
        with pytest.raises(StaleOwner):
            write()
    # Reads still work, and nothing changed.
    [p1] = fenced.retrieve("c", ["p1"])
    assert p1.payload["n"] == 1 and fenced.retrieve("c", ["p2"]) == []
