"""The model in several processes (``up --workers N``): texts go out in chunks of similar
length, longest first, and come back as the one-process model's vectors, in input order."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from turret_stream.embedding import open_embedder
from turret_stream.embedding.pool import PooledEmbedder, length_chunks
from turret_stream.settings import EmbeddingSettings


def test_chunks_cover_every_text_once_longest_first():
    lengths = [5, 120, 33, 7, 7, 260, 41, 2, 90, 15, 64]
    chunks = length_chunks(lengths, 3)
    assert sorted(i for chunk in chunks for i in chunk) == list(range(len(lengths)))
    assert all(1 <= len(chunk) <= 3 for chunk in chunks)
    assert 5 in chunks[0]  # the longest text starts first
    # Similar lengths together: every text of a chunk is at least as long as every text
    # of the chunks after it.
    for earlier, later in itertools.pairwise(chunks):
        assert min(lengths[i] for i in earlier) >= max(lengths[i] for i in later)


def test_chunk_size_below_one_is_refused():
    with pytest.raises(ValueError, match="chunk_texts"):
        PooledEmbedder(EmbeddingSettings(), 2, 1, chunk_texts=0)


def test_pooled_vectors_equal_the_one_process_model_in_input_order():
    texts = [
        "card",
        "why was my transfer declined twice this morning when I had enough money",
        "top up",
        "I lost my card yesterday on the train and I need a new one sent to my new address",
        "exchange rate?",
        "pin blocked",
        "how long does a transfer to another country take",
        "refund",
        "my payment shows as pending for three days now, is something wrong with it",
        "hi",
    ]
    pool = PooledEmbedder(EmbeddingSettings(), 2, 1, chunk_texts=3)
    try:
        pooled = pool.embed(texts)
        empty = pool.embed([])
    finally:
        pool.close()
    alone = open_embedder(EmbeddingSettings(threads=1)).embed(texts)
    assert pooled.shape == (len(texts), pool.dim)
    np.testing.assert_allclose(pooled, alone, atol=1e-5)
    assert empty.shape == (0, pool.dim)
