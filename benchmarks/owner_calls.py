"""Where a dimension owner's time goes as events grow: each of its calls, per batch.

    python benchmarks/owner_calls.py --marks 10000,300000,1000000

Feeds the owner alone (no journey books, no read side) the events of ``scale.py``'s
stream (``--session-model visits`` by default) and times each call the owner makes while
learning and committing a batch: the store writes by collection, the state log and its
checkpoints, the reclustering's parts, the topic points. At each mark it prints, for the
batches since the previous mark, the owner's cost per event, Python's garbage collection,
the process's major page faults, and each call's milliseconds per batch, largest first;
the comparator is the first mark's rows (the same calls on a small history). Written to
find what grows with history in ``scale.py``'s owner figures (ninth session), where the
whole owner slowed from 300k to 1M events.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from scale import BATCH, add_stream_arguments, new_owner, stream_of

import turret_stream.clustering.owner_state as owner_state

# (object attribute path, label): the owner's calls timed, wrapped once the model exists.
OWNER_CALLS = (
    ("records.commit", "state log: commit"),
    ("records.checkpoint", "state log: checkpoint"),
    ("_whole_state", "state log: whole state"),
    ("index.write", "centres: write"),
    ("_write_head", "topic map: head"),
    ("topic_maps.write_base", "topic map: base"),
    ("_write_topics", "topic points: all"),
    ("_write_due_topics", "topic points: due"),
    ("_save_catalog", "catalog"),
    ("_announce", "topic events"),
    ("model.recluster", "recluster: topics"),
    ("_update_neutral", "recluster: neutral topics"),
    ("_refresh_centres", "recluster: topic centres"),
    ("model.regroup_themes", "recluster: themes"),
    ("_sum_figures", "recluster: topic figures"),
)


class Timings:
    """Seconds and calls per label since the last ``take``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def wrap(self, owner: object, path: str, label: str) -> None:
        *parents, name = path.split(".")
        target = owner
        for p in parents:
            target = getattr(target, p)
        setattr(target, name, self.timed(getattr(target, name), lambda *_, **__: label))

    def timed(self, fn: Callable[..., Any], label_of: Callable[..., str]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                label = label_of(*args, **kwargs)
                self.seconds[label] += time.perf_counter() - started
                self.calls[label] += 1

        return call

    def take(self) -> tuple[dict[str, float], dict[str, int]]:
        out = dict(self.seconds), dict(self.calls)
        self.seconds.clear()
        self.calls.clear()
        return out


def major_faults() -> int:
    with open("/proc/self/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[9])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--marks", default="10000,100000,300000")
    add_stream_arguments(parser, session_model="visits")
    args = parser.parse_args()
    marks = sorted(int(m) for m in args.marks.split(","))

    workdir, settings, store, owner = new_owner("turret-owner-calls-")
    stream = stream_of(args)
    timings = Timings()
    # Store writes by collection (the owner's events, centres, topics, state log, ...).
    store.upsert = timings.timed(  # type: ignore[method-assign]
        store.upsert, lambda name, *_, **__: f"store upsert: {name.rsplit('.', 1)[-1][:24]}"
    )
    owner_state.pack = timings.timed(owner_state.pack, lambda *_, **__: "state log: pack")
    gc_seconds = [0.0, 0.0]  # total, start of the current collection

    def on_gc(phase: str, _info: dict) -> None:
        if phase == "start":
            gc_seconds[1] = time.perf_counter()
        else:
            gc_seconds[0] += time.perf_counter() - gc_seconds[1]

    gc.callbacks.append(on_gc)
    flush_every = settings.pipeline.checkpoint_interval_s  # as up's journal checkpoint
    last_flush = time.perf_counter()
    wrapped = False
    done = 0
    print(f"owner calls: {args.topics} topics, {args.session_model} model, store in {workdir}")
    for mark in marks:
        batches, owner_seconds, flush_seconds = 0, 0.0, 0.0
        gc_seconds[0] = 0.0
        faults = major_faults()
        while done < mark:
            n = min(BATCH, mark - done)
            batch = [stream.event(done + k) for k in range(n)]
            started = time.perf_counter()
            owner.process(batch)
            owner_seconds += time.perf_counter() - started
            done += n
            batches += 1
            if not wrapped and owner.model is not None:
                for path, label in OWNER_CALLS:
                    timings.wrap(owner, path, label)
                wrapped = True
            if time.perf_counter() - last_flush >= flush_every:
                started = time.perf_counter()
                store.flush(store.written_since_flush())
                last_flush = time.perf_counter()
                flush_seconds += last_flush - started
        seconds, calls = timings.take()
        span = f"{marks[marks.index(mark) - 1] if marks.index(mark) else 0}-{mark}"
        mcs = len(owner.model.engine.micro_clusters) if owner.model else 0
        topics = len(owner.model.topics()) if owner.model else 0
        print(
            f"== events {span}: {batches} batches, {mcs} micro-clusters, {topics} topics; "
            f"owner {owner_seconds / max(1, batches * BATCH) * 1000:.2f} ms/event; "
            f"gc {gc_seconds[0] / batches * 1000:.1f} ms/batch; "
            f"store flush {flush_seconds / batches * 1000:.1f} ms/batch; "
            f"major page faults {(major_faults() - faults) / batches:.0f}/batch",
            flush=True,
        )
        for label in sorted(seconds, key=lambda k: -seconds[k]):
            print(
                f"   {label:<34} {seconds[label] / batches * 1000:8.2f} ms/batch"
                f"  ({calls[label]} calls)"
            )


if __name__ == "__main__":
    main()
