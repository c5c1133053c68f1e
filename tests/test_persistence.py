"""State survives: a dimension's owner restored from either storage backend, and
`turret-stream up` killed with -9 after it caught up."""

from __future__ import annotations

import json
import signal
import time
import urllib.request

import numpy as np
import pytest
from qdrant_client import QdrantClient

from turret_stream.catalog import Catalog
from turret_stream.clustering.index import ExactIndex
from turret_stream.clustering.model import TopicModel
from turret_stream.clustering.owner import DimensionOwner
from turret_stream.embedding import open_embedder
from turret_stream.queries import Queries
from turret_stream.records import EmbeddedText, decode_vector, encode_vector
from turret_stream.settings import ClusteringSettings, Settings
from turret_stream.storage.edge import EdgeStore
from turret_stream.storage.server import ServerStore

from .test_pipeline import GROUPS
from .test_up import Up, _post


@pytest.fixture(scope="module")
def embedded_rows():
    embedder = open_embedder()
    rows = [(g, t) for g, texts in GROUPS.items() for t in texts]
    vectors = embedder.embed([t for _, t in rows])
    return [(g, t, v) for (g, t), v in zip(rows, vectors, strict=True)]


def item(i: int, text: str, vector: np.ndarray) -> EmbeddedText:
    return EmbeddedText(
        event_id=f"evt_{i:032x}",
        project="acme",
        dimension="prompt",
        text=text,
        vector=encode_vector(vector),
        model_id="m",
        name="p",
        metadata={"prompt": text},
        session_id="s",
        user_id="u",
        received_at=1_700_000_000.0 + i,
    )


def open_backend(kind: str, tmp_path):
    if kind == "edge":
        return EdgeStore(tmp_path / "qdrant")
    return ServerStore(QdrantClient(":memory:"))


@pytest.mark.parametrize("backend", ["edge", "server"])
def test_owner_state_survives_a_restart(backend, tmp_path, embedded_rows):
    settings = Settings(data_dir=tmp_path)
    store = open_backend(backend, tmp_path)
    owner = DimensionOwner(store, Catalog(store), "acme", "prompt", settings, 384)
    items = [item(i, t, v) for i, (_, t, v) in enumerate(embedded_rows)]
    owner.process(items[:10])
    owner.process(items[10:])
    assert owner.tick(now=time.time() + 60)  # the idle timer's recluster
    before = Queries(store).topic_map(owner.names)
    mcs = _mcs(store, owner, items)
    topics_before = {e.event_id: before.topic_of(mc) for e, mc in zip(items, mcs, strict=True)}
    assert len(set(topics_before.values()) - {None}) >= 3

    if backend == "edge":  # a new process would reopen the files
        store.close()
        store = open_backend(backend, tmp_path)
    restored = DimensionOwner(store, Catalog(store), "acme", "prompt", settings, 384)
    assert restored.events == len(items)
    # Redelivered events are recognised and not counted twice.
    assert restored.process(items[:5]) == []
    assert restored.events == len(items)
    after = Queries(store).topic_map(restored.names)
    assert after.mapping == before.mapping
    # New paraphrases join the topics that existed before the restart.
    _, text, vector = embedded_rows[0]
    [placed] = restored.process([item(999, text + " please", vector)])
    assert placed.topic == topics_before[items[0].event_id]
    store.close()


def test_topic_figures_reach_their_points_at_most_every_interval(tmp_path, embedded_rows):
    """Batches between two writes of a topic's point add to the next one; the recluster
    timer writes what is left once the interval has passed (clustering.topic_points_interval_s)."""
    settings = Settings(
        data_dir=tmp_path,
        clustering={
            "topic_points_interval_s": 30,
            "recluster_interval_s": 1e9,  # only the first batch reclusters
            "recluster_every_events": 10**6,
        },
    )
    store = EdgeStore(tmp_path / "qdrant")
    owner = DimensionOwner(store, Catalog(store), "acme", "prompt", settings, 384)
    now = [0.0]
    owner.clock = lambda: now[0]
    items = [item(i, t, v) for i, (_, t, v) in enumerate(embedded_rows)]
    twice = items + [item(i + 1000, e.text, decode_vector(e.vector)) for i, e in enumerate(items)]

    def sizes() -> int:
        got = Queries(store).clusters("acme", "prompt", limit=100, examples=0)["clusters"]
        return sum(c["size"] for c in got)

    owner.process(twice[: len(items)])  # reclustered: every topic point written
    written = sizes()
    assert 0 < written <= len(items)
    owner.process(twice[len(items) :])  # the same texts again: every topic grows
    assert sizes() == written  # not yet: the interval has not passed
    assert not owner.tick(now=time.time())
    assert sizes() == written
    now[0] += 30
    assert not owner.tick(now=time.time())  # written by the timer, not reclustered
    assert sizes() == 2 * written
    owner.process([item(i + 2000, e.text, decode_vector(e.vector)) for i, e in enumerate(items)])
    assert sizes() == 2 * written and owner.figures_pending
    owner.write_figures()  # as when the owner is let go (a rebalance, a stop)
    assert sizes() == 3 * written and not owner.figures_pending
    store.close()


def _mcs(store, owner, items):
    found = {
        r.id: r.payload["mc"]
        for r in store.retrieve(owner.names.events, [i.event_id for i in items])
    }
    return [found[i.event_id] for i in items]


def test_noise_joins_a_topic_once_its_region_becomes_dense():
    rng = np.random.default_rng(0)
    centre = rng.normal(size=16)
    centre /= np.linalg.norm(centre)

    def near() -> np.ndarray:
        v = centre + rng.normal(scale=0.05, size=16)
        return v / np.linalg.norm(v)

    model = TopicModel(ClusteringSettings(clustering_threshold=0.3), ExactIndex(16))
    first = model.learn(near(), t=0)
    model.recluster(now=0)
    assert model.topic_of(first.mc) is None  # alone: not a topic yet
    for step in range(1, 30):
        model.learn(near(), t=step)
    model.recluster(now=30)
    assert model.topic_of(first.mc) is not None


@pytest.mark.timeout(240)
def test_up_killed_after_catching_up_keeps_topics_and_ids(tmp_path):
    rows = [t for texts in GROUPS.values() for t in texts]
    up = Up(tmp_path / "data")
    try:
        key = up.read_key()
        up.wait_ready()
        for i, text in enumerate(rows):
            assert (
                _post(
                    up.url, key, {"name": "p", "metadata": {"prompt": text}, "session_id": f"s{i}"}
                )[0]
                == 200
            )
        # Idle: the owners recluster on their own and write their state.
        clusters = wait_for_events(up.url, key, len(rows), in_topics=len(rows) - 2)
        before = {c["id"]: c["size"] for c in clusters["clusters"]}
        assert len(before) >= 3
        up.stop(signal.SIGKILL)
    finally:
        up.proc.kill()

    again = Up(tmp_path / "data")
    try:
        again.wait_ready()
        after = get(again.url, key, "/v1/clusters?dimension=prompt&examples=0")
        assert {c["id"]: c["size"] for c in after["clusters"]} == before
        assert after["total_events"] == len(rows)
    finally:
        again.stop()


def get(url: str, key: str, path: str) -> dict:
    req = urllib.request.Request(url + path, headers={"X-API-Key": key})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def wait_for_events(url: str, key: str, n: int, in_topics: int = 0, timeout: float = 90) -> dict:
    """Clusters once ``n`` events are stored and at least ``in_topics`` of them in topics."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            body = get(url, key, "/v1/clusters?dimension=prompt&examples=0")
            placed = body["total_events"] - body["unassigned_events"]
            if body["total_events"] >= n and placed >= in_topics:
                return body
        except Exception:
            pass
        time.sleep(0.5)
    raise AssertionError("events were not clustered in time")
