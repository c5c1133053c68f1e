"""The label book's writes, on the real in-process store."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from turret_stream.catalog import dimension_names
from turret_stream.labels.book import HISTORY_LIMIT, Label, LabelBook, auto_collection
from turret_stream.storage import Point
from turret_stream.storage.edge import EdgeStore


def test_a_scan_writes_every_topic_at_once_and_each_keeps_its_history(tmp_path: Path):
    store = EdgeStore(tmp_path / "qdrant")
    try:
        book = LabelBook(store)
        names = dimension_names("acme", "prompt")
        first = [
            ("t1", Label("Card Arrival", "", "fallback", 1.0), {"size": 10}),
            ("t2", Label("Exchange Rate", "", "fallback", 1.0), {"size": 20}),
        ]
        book.set_automatic_many(names, first)
        book.set_automatic_many(
            names,
            [
                ("t1", Label("Card Delivery", "", "fallback", 2.0), {"size": 15}),
                # A topic named twice in one write keeps both names, in order.
                ("t3", Label("Refund", "", "fallback", 2.0), {"size": 5}),
                ("t3", Label("Refund Status", "", "llm", 3.0), {"size": 6}),
            ],
        )
        shown = book.labels(names, ["t1", "t2", "t3"])
        assert {t: label.name for t, label in shown.items()} == {
            "t1": "Card Delivery",
            "t2": "Exchange Rate",
            "t3": "Refund Status",
        }
        assert [e["name"] for e in book.history(names, "t1")] == ["Card Arrival", "Card Delivery"]
        assert [e["name"] for e in book.history(names, "t3")] == ["Refund", "Refund Status"]
        assert book.automatic(names, ["t1"])["t1"]["basis"] == {"size": 15}
        # A person's label is kept apart and shown first; the history stays bounded.
        book.set_manual(names, "t2", "FX", "")
        assert book.labels(names, ["t2"])["t2"].name == "FX"
        for i in range(HISTORY_LIMIT + 5):
            book.set_automatic(names, "t1", Label(f"n{i}", "", "fallback", 10.0 + i), {})
        assert len(book.automatic(names, ["t1"])["t1"]["history"]) == HISTORY_LIMIT
    finally:
        store.close()


def test_the_basis_centre_comes_back_as_written_and_older_records_still_read(tmp_path: Path):
    store = EdgeStore(tmp_path / "qdrant")
    try:
        book = LabelBook(store)
        names = dimension_names("acme", "prompt")
        centre = np.random.default_rng(0).normal(size=384).tolist()
        book.set_automatic(
            names, "t1", Label("A", "", "fallback", 1.0), {"size": 3, "centre": centre}
        )
        basis = book.automatic(names, ["t1"])["t1"]["basis"]
        assert basis["size"] == 3
        np.testing.assert_allclose(basis["centre"], centre, rtol=1e-6)  # float32 precision
        # A record written before centres were packed (a plain list) reads as it was.
        old = {"name": "B", "source": "fallback", "set_at": 1.0, "basis": {"centre": [0.5, 0.5]}}
        store.upsert(auto_collection(names), [Point("t2", [1.0], old)])
        assert book.automatic(names, ["t2"])["t2"]["basis"]["centre"] == [0.5, 0.5]
    finally:
        store.close()
