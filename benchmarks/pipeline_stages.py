"""Where the pipeline's CPU goes per event, stage by stage, next to the model's own cost.

    python benchmarks/pipeline_stages.py --data ../shared/data/banking77.csv --events 2000

Runs the embedded stack as `benchmarks/pipeline.py` does (tansu, the worker and the API in
this process, ``--workers`` model processes) and posts the texts from a separate client
process as fast as /track takes them. Once everything is posted it measures the rest of
the run, when only the pipeline works: events processed per second and CPU time per
event of this process, of the model processes, of the broker and of the whole machine,
and the thread CPU time of the worker's main stages (each stage runs on one thread at a
time, so its thread time is its cost). In the same run, as the comparator, the product's
embedder alone on the same texts (CPU per text in one process, batches of 64 in arrival
order, as the embed agent gets them), and its speed as `pipeline.py` measures it (sorted
batches, every core): the after-posting rate divided by it is what the pipeline reaches
with /track idle, an upper bound on `pipeline.py`'s ratio.

The stages are timed by wrapping their methods here (the benchmark's own instrument; the
product does not carry it): `DimensionOwner.process` (a dimension owner's batch), inside
it `TopicModel.learn`, the journey books' `observe` and `flush`, and the labeller's
`scan`. What is left of the process is the event loop: Faust's streams, the Kafka client
for the hops between agents, records' (de)serialising, the live feed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from pipeline import post_from_client_process, product_embedder, read_texts, stack_settings

from turret_stream.agents.labels import Labeller
from turret_stream.clustering.model import TopicModel
from turret_stream.clustering.owner import DimensionOwner
from turret_stream.embedding import open_embedder
from turret_stream.journey_owner import JourneyOwner
from turret_stream.process_figures import read_figures
from turret_stream.settings import EmbeddingSettings
from turret_stream.stack import RunningStack, running_stack

STAGES = {
    "dimension owners' batches": (DimensionOwner, "process"),
    "  of which TopicModel.learn": (TopicModel, "learn"),
    "journey books: observe": (JourneyOwner, "observe_all"),
    "journey books: flush": (JourneyOwner, "flush"),
    "labeller scans": (Labeller, "scan"),
}
TICK = os.sysconf("SC_CLK_TCK")
SPENT: dict[str, float] = {}  # stage -> thread CPU seconds so far (instrument)


def instrument(spent: dict[str, float]) -> None:
    """Add each stage's thread CPU time to ``spent`` as it runs."""

    def timed(name: str, method: Callable) -> Callable:
        def run(self: object, *args: object, **kwargs: object) -> object:
            started = time.thread_time()
            try:
                return method(self, *args, **kwargs)
            finally:
                spent[name] = spent.get(name, 0.0) + time.thread_time() - started

        return run

    for name, (cls, attr) in STAGES.items():
        setattr(cls, attr, timed(name, getattr(cls, attr)))


def _cpu_seconds(pid: int | str) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def children_cpu() -> dict[str, float]:
    """CPU seconds of this process's children by kind: the model processes (Python) and
    the broker (tansu)."""
    me = str(os.getpid())
    out = {"model processes": 0.0, "broker (tansu)": 0.0}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            if f"\nPPid:\t{me}\n" not in status:
                continue
            kind = "broker (tansu)" if "tansu" in status.split("\n", 1)[0] else "model processes"
            out[kind] += _cpu_seconds(pid)
        except OSError:
            continue  # exited meanwhile
    return out


async def topic_messages(bootstrap: str) -> dict[str, int]:
    """Messages written to each topic so far (the sum of its partitions' end offsets)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        topics = await consumer.topics()
        partitions = [
            TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()
        ]
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    out: dict[str, int] = {}
    for tp, end in ends.items():
        out[tp.topic] = out.get(tp.topic, 0) + end
    return out


def broker_memory(stack: RunningStack) -> int:
    """The embedded broker's resident bytes now."""
    assert stack.broker is not None
    figures = read_figures(stack.broker.pid)
    return figures.resident_bytes if figures is not None else 0


def machine_cpu() -> float:
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v) - v[3] - v[4]) / TICK


def model_cost(texts: list[str]) -> float:
    """The product's embedder alone: CPU milliseconds of this process per text."""
    embedder = open_embedder(EmbeddingSettings())
    embedder.embed(texts[:64])
    started = time.process_time()
    for i in range(0, len(texts), 64):
        embedder.embed(texts[i : i + 64])
    return 1000 * (time.process_time() - started) / len(texts)


# CPU seconds so far: this process, the machine, this process's children by kind, and
# the stages' thread time (instrument).
Snapshot = tuple[float, float, dict[str, float], dict[str, float]]


def snapshot() -> Snapshot:
    times = os.times()
    return times.user + times.system, machine_cpu(), children_cpu(), dict(SPENT)


def cpu_rows(a: Snapshot, b: Snapshot, process: str) -> list[tuple[str, float]]:
    """CPU seconds from ``a`` to ``b``: this process (named ``process``), its stages and
    the rest of it, its children, the machine."""
    own = b[0] - a[0]
    stages = {k: v - a[3].get(k, 0.0) for k, v in b[3].items()}
    rows = [(process, own)]
    rows += [(f"  {name}", stages.get(name, 0.0)) for name in STAGES]
    rows.append(("  the rest (event loop, Kafka client, ...)", own - _top_level(stages)))
    rows += [(kind, b[2][kind] - a[2][kind]) for kind in b[2]]
    rows.append(("the machine", b[1] - a[1]))
    return rows


async def run(
    texts: list[str], workers: int, concurrency: int, embedder_rate: float, segments: bool
) -> None:
    settings, key = stack_settings(workers)
    done: dict[str, float] = {}
    async with running_stack(settings, broker=True, worker=True, api=True) as stack:
        stack.topology.owners.listeners.append(
            lambda a: done.setdefault(a.event_id, time.perf_counter())
        )
        at_start = snapshot()
        broker_at_start = broker_memory(stack)
        started = time.perf_counter()
        sent = await post_from_client_process(
            stack.api_url, key, list(enumerate(texts)), concurrency, 0.0, None, segments
        )
        posted = time.perf_counter()
        meanwhile = len(done)
        print(
            f"  posted {len(texts)} in {posted - started:.1f} s; "
            f"{meanwhile} processed meanwhile ({meanwhile / (posted - started):.0f}/s)"
        )
        # From here only the pipeline works (the client process has exited).
        at_posted = snapshot()
        deadline = time.perf_counter() + 600
        while len(done) < len(texts) and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
        wall = time.perf_counter() - posted
        count = len(done) - meanwhile
        at_end = snapshot()
        broker_growth = broker_memory(stack) - broker_at_start
        messages = await topic_messages(stack.settings.bootstrap_servers)
    if count == 0:
        print("  nothing was processed after posting")
        return
    per = 1000 / count
    print(
        f"  after posting: {count} events in {wall:.1f} s ({count / wall:.0f} events/s, "
        f"{count / wall / embedder_rate:.2f} of the one-process embedder)"
    )
    print(f"  {'':<48} {'cores':>6} {'CPU ms/event':>13}")
    for name, seconds in cpu_rows(at_posted, at_end, "this process (worker, API, journal)"):
        print(f"  {name:<48} {seconds / wall:>6.2f} {seconds * per:>13.2f}")
    print(
        f"  the broker's resident memory grew {broker_growth / 2**20:.1f} MB over the run, "
        f"{broker_growth / len(texts) / 1024:.1f} KB an event (it keeps its log in memory)"
    )
    print(f"  messages per event on each topic (the whole run, {len(texts)} events):")
    for topic, n in sorted(messages.items(), key=lambda kv: -kv[1]):
        print(f"    {topic:<60} {n / len(texts):>6.2f}")
    # While posting, this process also served /track: its CPU less what the events it
    # processed meanwhile cost at the rate measured after posting is the API's estimate.
    took = posted - started
    own = at_end[0] - at_posted[0]
    own_posting = at_posted[0] - at_start[0]
    api = own_posting - meanwhile * own / count
    per_request = 1000 / len(texts)
    client = sent["client_cpu_s"] * per_request
    busy = (at_posted[1] - at_start[1]) / took
    print(f"  while posting ({took:.1f} s, the machine {busy:.2f} cores busy), CPU ms/request:")
    print(f"    {'the client process (the load generator)':<46} {client:>13.2f}")
    print(f"    {'this process less the events it processed':<46} {api * per_request:>13.2f}")
    # The same components as after posting, per event processed meanwhile: where a
    # pipeline that also takes /track's load spends more than one that only processes.
    if meanwhile:
        per_meanwhile = 1000 / meanwhile
        print(f"  while posting, CPU ms per event processed meanwhile ({meanwhile}):")
        for name, seconds in cpu_rows(at_start, at_posted, "this process (API included)"):
            print(f"    {name:<46} {seconds * per_meanwhile:>13.2f}")


def _top_level(stages: dict[str, float]) -> float:
    return sum(v for k, v in stages.items() if not k.startswith("  "))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="model processes (up --workers); with 1 the model runs in this process and its "
        "CPU counts in 'the rest'",
    )
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--segments",
        action="store_true",
        help="each event also carries four segment values (platform, plan, model, locale), "
        "as an LLM product's events do; the comparator still embeds the prompts alone",
    )
    args = parser.parse_args()
    texts = read_texts(args.data, args.events)
    with_segments = " (and four segment values an event)" if args.segments else ""
    print(f"{len(texts)} texts from {args.data.name}{with_segments}, --workers {args.workers}")
    print(f"  comparator, the product's embedder alone: {model_cost(texts):.1f} CPU ms/text")
    rate = product_embedder(texts)
    print(f"  and as pipeline.py measures it (sorted, every core): {rate:.0f} texts/s")
    instrument(SPENT)
    asyncio.run(run(texts, args.workers, args.concurrency, rate, args.segments))


if __name__ == "__main__":
    main()
