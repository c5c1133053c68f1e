"""Text embedding: ``open_embedder(settings.embedding)`` gives the configured model.

Importing this package is cheap; fastembed (and ONNX Runtime) load with the first model.
"""

from __future__ import annotations

from pathlib import Path

from turret_stream.embedding.base import Embedder, EmbeddingModelError
from turret_stream.embedding.fastembed import FastEmbedder
from turret_stream.settings import EmbeddingSettings

__all__ = ["Embedder", "EmbeddingModelError", "FastEmbedder", "open_embedder"]


def open_embedder(
    settings: EmbeddingSettings | None = None, *, cache_dir: str | Path | None = None
) -> Embedder:
    """The embedder ``settings`` describe, loaded offline (raises EmbeddingModelError)."""
    return FastEmbedder(settings, cache_dir=cache_dir)
