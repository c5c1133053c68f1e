"""Where a process's busy time goes, from a py-spy raw profile: the model, the owners'
state writes, reclustering, labelling, the event loop (API, Faust), the rest.

    pip install py-spy
    py-spy record --idle -r 50 -f raw -o /tmp/prof.txt -- \\
        python benchmarks/pipeline.py --data ../shared/data/banking77.csv --events 1200 \\
        --workers 1 --sizes
    python benchmarks/profile_summary.py /tmp/prof.txt

Idle samples (threads waiting in select, locks, queues, sleeps) are left out, so the shares
are of CPU-bearing samples; a sample counts once per category it passes through
(inclusive), so shares can add up to more than 100%.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

IDLE = re.compile(
    r"(select|poll|epoll|_wait|wait \(|acquire|sleep|get \(queue|_worker \(concurrent)"
)
# Category -> a frame name that marks it.
CATEGORIES = {
    "model (ONNX inference)": "Session.run (onnxruntime",
    "tokenizer": "OnnxTextModel.tokenize",
    "owner: whole batch": "DimensionOwner.process",
    "owner: state log": "OwnerStateStore.commit",
    "owner: topic points": "DimensionOwner._write_topics",
    "owner: reclustering": "TopicModel.recluster",
    "store flush (holds the GIL)": "EdgeStore.flush",
    "labeller": "Labeller.",
    "API key lookups": "KeyStore.authenticate",
    "event loop (API, Faust, Kafka client)": "BaseEventLoop._run_once",
}


def summarise(path: Path) -> tuple[int, Counter[str]]:
    busy, shares = 0, Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = stack.split(";")
        if IDLE.search(frames[-1]):
            continue
        n = int(count)
        busy += n
        for name, marker in CATEGORIES.items():
            if any(marker in f for f in frames):
                shares[name] += n
    return busy, shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path, help="py-spy record -f raw output")
    args = parser.parse_args()
    busy, shares = summarise(args.profile)
    print(f"{busy} busy samples")
    for name in CATEGORIES:
        print(f"  {shares[name] / max(busy, 1) * 100:5.1f}%  {name}")


if __name__ == "__main__":
    main()
