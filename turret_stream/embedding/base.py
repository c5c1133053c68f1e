"""What the pipeline needs from an embedding model, whatever runs it."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from turret_stream.errors import TurretError


def cores() -> int:
    """Cores this process may run on (its affinity, not the machine's count): what a
    container's cpuset or ``taskset`` allows, which ONNX Runtime's default ignores."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class EmbeddingModelError(TurretError):
    """The configured embedding model cannot be loaded (missing files, not cached, ...)."""


class Embedder(ABC):
    """Turns texts into unit vectors.

    ``model_id`` is stored with every vector, so it must be stable across restarts and
    machines and change whenever the vectors would.
    """

    model_id: str
    dim: int

    @abstractmethod
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors of ``texts``: shape ``(len(texts), dim)``, float32, rows of L2 norm 1.

        An empty sequence gives shape ``(0, dim)``.
        """


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    """``vectors`` as float32 with unit rows, in place when it already is float32.

    Models normalise their own output, but not every fastembed model does, and fastembed
    normalises in float64 before casting: normalising here keeps the contract exact for
    all of them at a cost of microseconds per batch.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    # An all-zero row stays zero instead of becoming NaN.
    np.maximum(norms, np.float32(1e-12), out=norms)
    vectors /= norms
    return vectors
