"""A dimension owner fed a fixed stream, as a process the crash test can kill.

``python -m tests.crash_child DATA_DIR`` learns every batch of ``batches()`` in order,
like a worker that Kafka redelivers unacknowledged batches to. With
``TURRET_CRASH_AT=<boundary>:<n>`` set, it dies at that write boundary (``faults.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from turret_stream.catalog import Catalog
from turret_stream.clustering.owner import DimensionOwner
from turret_stream.records import EmbeddedText, encode_vector
from turret_stream.settings import Settings
from turret_stream.storage.edge import EdgeStore

DIM = 16
BATCH = 30


def settings(data_dir: Path) -> Settings:
    # Reclustering by event count only (deterministic), every other batch: not paced by the
    # wall time the last one took (recluster_max_share 1), which a slow machine stretches.
    # Fast fading and frequent cleanups so micro-clusters get absorbed within the stream.
    return Settings(
        data_dir=data_dir,
        clustering={
            "clustering_threshold": 0.35,
            "recluster_every_events": 50,
            "recluster_interval_s": 1e9,
            "recluster_max_share": 1.0,
            "half_life_s": 20.0,
            "cleanup_interval_s": 15.0,
            "weak_after_s": 10.0,
            "min_topic_events": 3,
            # Compact the state log into a checkpoint every few batches.
            "checkpoint_min_kb": 1,
        },
        journeys={"neutral_min_sessions": 5, "neutral_min_topic_sessions": 2},
    )


def batches(n: int = 10) -> list[list[EmbeddedText]]:
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(5, DIM))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = []
    for b in range(n):
        batch = []
        for j in range(BATCH):
            i = b * BATCH + j
            # Topic 4 stops after the first third, so its micro-clusters fade and go.
            c = int(rng.integers(5 if b < n // 3 else 4))
            v = centres[c] + rng.normal(scale=0.12, size=DIM)
            batch.append(event(i, v, 1_700_000_000.0 + i, f"question number {i} about subject {c}"))
        out.append(batch)
    return out


def event(
    i: int, v: np.ndarray, received_at: float, text: str, metadata: dict | None = None
) -> EmbeddedText:
    """Event ``i`` of the test stream: ``v`` normalised, session ``s{i % 17}``."""
    return EmbeddedText(
        event_id=f"evt_{i:032x}",
        project="acme",
        dimension="prompt",
        text=text,
        vector=encode_vector(v / np.linalg.norm(v)),
        model_id="m",
        name="p",
        metadata=metadata or {},
        session_id=f"s{i % 17}",
        user_id="u",
        received_at=received_at,
    )


def open_owner(data_dir: Path) -> tuple[EdgeStore, DimensionOwner]:
    store = EdgeStore(data_dir / "qdrant")
    owner = DimensionOwner(store, Catalog(store), "acme", "prompt", settings(data_dir), DIM)
    return store, owner


def main(data_dir: Path) -> None:
    store, owner = open_owner(data_dir)
    for batch in batches():
        owner.process(batch)
    store.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
