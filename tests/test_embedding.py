"""The embedder, with the real default model (int8 all-MiniLM-L6-v2), fully offline."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from turret_stream.embedding import (
    Embedder,
    EmbeddingModelError,
    FastEmbedder,
    default_model,
    open_embedder,
)
from turret_stream.settings import EmbeddingSettings

# Support questions of varied length, as apps send them (banking77-like), plus a long one.
TEXTS = [
    "How do I reset my password?",
    "I forgot my login credentials",
    "What is the weather in Paris?",
    "My card still hasn't arrived after two weeks, what should I do?",
    "Why was I charged a fee for a transfer to my own account?",
    "cancel",
    "Can I top up my account with a cheque, or only by bank transfer and card?",
    "Is there a limit on how much money I can exchange into other currencies each month?",
    "refund please",
    "The app keeps crashing whenever I open the statements page on my phone. " * 8,
]


@pytest.fixture(scope="module")
def embedder(tmp_path_factory: pytest.TempPathFactory) -> FastEmbedder:
    # Loaded once: the model takes ~0.5 s to load and the tests only read it.
    return FastEmbedder(cache_dir=tmp_path_factory.mktemp("models"))


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """HF_HUB_OFFLINE=1 and every outgoing connection refused."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network disabled by the test")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    yield


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b)  # rows are unit vectors


def test_paraphrases_are_closer_than_unrelated_texts(embedder: FastEmbedder):
    reset, forgot, weather = embedder.embed(TEXTS[:3])
    assert cosine(reset, forgot) > cosine(reset, weather) + 0.3
    assert cosine(reset, forgot) > cosine(forgot, weather) + 0.3


def test_vectors_are_float32_unit_rows(embedder: FastEmbedder):
    assert isinstance(embedder, Embedder)
    assert embedder.model_id == "all-MiniLM-L6-v2-int8"
    assert embedder.dim == 384
    vectors = embedder.embed(TEXTS)
    assert vectors.shape == (len(TEXTS), 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_a_batch_gives_the_same_vectors_as_one_by_one():
    # batch_size 4 forces several runs, mixing short and long texts.
    small_batches = FastEmbedder(EmbeddingSettings(batch_size=4))
    together = small_batches.embed(TEXTS)
    alone = np.stack([small_batches.embed([text])[0] for text in TEXTS])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_the_order_of_the_input_is_kept(embedder: FastEmbedder):
    forward = embedder.embed(TEXTS)
    backward = embedder.embed(TEXTS[::-1])
    np.testing.assert_allclose(forward, backward[::-1], atol=1e-5)


def test_empty_input(embedder: FastEmbedder):
    vectors = embedder.embed([])
    assert vectors.shape == (0, 384)
    assert vectors.dtype == np.float32


def test_an_empty_string_is_embedded(embedder: FastEmbedder):
    vectors = embedder.embed(["", "hello"])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_an_overlong_text_is_cut_not_refused(embedder: FastEmbedder):
    vectors = embedder.embed(["x" * 100_000, "word " * 20_000])
    assert vectors.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_texts_are_cut_to_max_chars():
    short = FastEmbedder(EmbeddingSettings(max_chars=30))
    text = "How do I reset my password? I also need a new card and my statements."
    cut, whole = short.embed([text[:30], text])
    np.testing.assert_allclose(cut, whole, atol=1e-6)


def test_the_model_sees_256_word_pieces(embedder: FastEmbedder):
    # [CLS] + 254 words + [SEP] = 256: a difference in word 254 shows, one in word 255 not.
    # ("alpha", "apple" and "tiger" are one word piece each; 1,530 characters < max_chars.)
    common = "alpha " * 253
    apple, tiger = embedder.embed([common + "apple", common + "tiger"])
    assert cosine(apple, tiger) < 0.99999
    apple, tiger = embedder.embed([common + "alpha apple", common + "alpha tiger"])
    np.testing.assert_allclose(apple, tiger, atol=1e-6)


def test_default_model_loads_with_hf_hub_offline_and_no_network(tmp_path: Path, no_network):
    # A second embedder in the process also checks that registering the model is idempotent.
    offline = open_embedder(EmbeddingSettings(), cache_dir=tmp_path)
    vectors = offline.embed(["How do I reset my password?"])
    assert vectors.shape == (1, 384)


def test_the_default_model_directory_links_to_the_installed_files(tmp_path: Path):
    directory = default_model.model_dir(tmp_path)
    assert default_model.model_dir(tmp_path) == directory  # built once, then reused
    onnx = directory / "model.onnx"
    assert onnx.is_symlink()
    assert onnx.resolve() == default_model.onnx_path().resolve()
    for name in default_model.TOKENIZER_FILES:
        assert (directory / name).resolve() == (default_model.TOKENIZER_DIR / name).resolve()


def test_a_broken_default_model_directory_is_rebuilt(tmp_path: Path):
    directory = default_model.model_dir(tmp_path)
    (directory / "tokenizer.json").unlink()
    (directory / "tokenizer.json").symlink_to(tmp_path / "gone")
    assert default_model.model_dir(tmp_path) == directory
    assert (directory / "tokenizer.json").is_file()


@pytest.mark.parametrize("name", ["BAAI/bge-small-en-v1.5", "nobody/no-such-model"])
def test_an_unavailable_fastembed_model_fails_fast_and_clearly(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network
):
    monkeypatch.setenv("FASTEMBED_CACHE_PATH", str(tmp_path))  # an empty fastembed cache
    started = time.monotonic()
    with pytest.raises(EmbeddingModelError) as raised:
        FastEmbedder(EmbeddingSettings(model=name))
    assert time.monotonic() - started < 10
    message = str(raised.value)
    assert name in message
    assert "model_dir" in message
    assert "default" in message


def assemble_model_dir(directory: Path) -> Path:
    """A model directory as an operator would prepare one: ONNX and tokenizer files."""
    directory.mkdir()
    (directory / "model.onnx").symlink_to(default_model.onnx_path())
    for name in default_model.TOKENIZER_FILES:
        (directory / name).write_bytes((default_model.TOKENIZER_DIR / name).read_bytes())
    return directory


def test_model_dir_loads_a_local_directory(tmp_path: Path, embedder: FastEmbedder):
    directory = assemble_model_dir(tmp_path / "minilm-local")
    local = FastEmbedder(EmbeddingSettings(model_dir=str(directory), model_dim=384))
    assert local.model_id == "minilm-local"
    assert local.dim == 384
    # The same files as the default model: the same vectors.
    np.testing.assert_allclose(local.embed(TEXTS), embedder.embed(TEXTS), atol=1e-5)


def test_model_dir_with_the_wrong_dimension_is_refused_at_load(tmp_path: Path):
    directory = assemble_model_dir(tmp_path / "minilm-local")
    with pytest.raises(EmbeddingModelError, match="768"):
        FastEmbedder(EmbeddingSettings(model_dir=str(directory), model_dim=768))


def test_model_dir_without_model_files_is_refused(tmp_path: Path):
    with pytest.raises(EmbeddingModelError, match=r"model\.onnx"):
        FastEmbedder(EmbeddingSettings(model_dir=str(tmp_path)))


def _spinning_entry(embedder: FastEmbedder) -> str | None:
    options = embedder._model.model.model.get_session_options()
    try:
        return options.get_session_config_entry("session.intra_op.allow_spinning")
    except RuntimeError:  # not set: ONNX Runtime's default, which spins
        return None


def test_model_threads_sleep_instead_of_spinning_unless_asked(tmp_path: Path):
    # Spinning ONNX threads took the core the worker's Python thread needed (README
    # *Pipeline*). The rebuilt session must embed exactly as fastembed's own does.
    texts = ["How do I reset my password?", "card arrived damaged", "exchange rate today"]
    quiet = FastEmbedder(EmbeddingSettings(threads=2), cache_dir=tmp_path)
    spinning = FastEmbedder(EmbeddingSettings(threads=2, thread_spinning=True), cache_dir=tmp_path)
    assert _spinning_entry(quiet) == "0"
    assert quiet._model.model.model.get_session_options().intra_op_num_threads == 2
    assert _spinning_entry(spinning) is None
    np.testing.assert_allclose(quiet.embed(texts), spinning.embed(texts), atol=1e-6)
