"""The model's speed when another thread needs a core: spinning against sleeping ONNX threads.

    python benchmarks/model_threads.py --data ../shared/data/banking77.csv --texts 1200

A worker runs its Python thread (the agents, the dimension owners) beside the model. ONNX
Runtime's threads busy-wait for work by default, so a model with as many threads as cores
competes with that thread for a core even when it has nothing to compute.

For 0, 1, ... ``--busy`` processes that each keep one core busy (standing in for the
worker's Python thread), it embeds the same texts in batches of 64 in arrival order (as
the embed agent gets them) with the product's embedder, once with ONNX Runtime's default
(spinning threads, ``embedding.thread_spinning: true``) and once with turret-stream's
default (sleeping threads), and prints texts/s and this process's CPU milliseconds per
text, side by side, with one ONNX thread as a third row.
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from pathlib import Path

from pipeline import read_texts  # the same shuffled banking77 texts as the pipeline's

from turret_stream.embedding.base import cores
from turret_stream.embedding.fastembed import FastEmbedder
from turret_stream.settings import EmbeddingSettings


def _keep_busy(stop: multiprocessing.synchronize.Event) -> None:
    while not stop.is_set():
        sum(range(10_000))


def rate(embedder: FastEmbedder, texts: list[str], batch: int) -> tuple[float, float]:
    """(texts per second, CPU milliseconds of this process per text)."""
    embedder.embed(texts[:batch])  # warm-up
    started, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(texts), batch):
        embedder.embed(texts[i : i + batch])
    wall, used = time.perf_counter() - started, time.process_time() - cpu
    return len(texts) / wall, 1000 * used / len(texts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--texts", type=int, default=1200)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--busy", type=int, default=1, help="most busy processes beside it")
    args = parser.parse_args()
    texts = read_texts(args.data, args.texts)
    n = cores()
    models = {
        f"{n} threads, spinning (ONNX default)": EmbeddingSettings(threads=n, thread_spinning=True),
        f"{n} threads, sleeping (turret default)": EmbeddingSettings(threads=n),
        "1 thread": EmbeddingSettings(threads=1),
    }
    loaded = {name: FastEmbedder(s) for name, s in models.items()}
    print(f"{len(texts)} texts from {args.data.name}, batches of {args.batch}, {n} cores")
    print(f"  {'busy processes':>14}  {'model':<40} {'texts/s':>8} {'CPU ms/text':>12}")
    for busy in range(args.busy + 1):
        stop = multiprocessing.Event()
        burners = [multiprocessing.Process(target=_keep_busy, args=(stop,)) for _ in range(busy)]
        for p in burners:
            p.start()
        try:
            for name, embedder in loaded.items():
                per_s, ms = rate(embedder, texts, args.batch)
                print(f"  {busy:>14}  {name:<40} {per_s:>8.0f} {ms:>12.1f}", flush=True)
        finally:
            stop.set()
            for p in burners:
                p.join()


if __name__ == "__main__":
    main()
