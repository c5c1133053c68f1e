"""Scale: what the owner, its persistence, the read API and a restart cost as events grow.

    python benchmarks/scale.py --max-events 100000

Synthetic events go straight into a dimension's owner and the session code, bypassing
the embedding model and Kafka: vectors drawn from a mixture of ``--topics`` topics (each a
few intents around a centre, 384 dimensions, unit length), sessions that move between
topics (a Markov chain: stay, or go to one of the topic's usual next topics), two enum
segments. Events arrive 20 per second of event time (1M events = 14 hours: hourly
cleanups and drop-offs happen). ``--session-model spread`` (the default, the runs before
it had only this) gives every session a few events hours apart all run long;
``--session-model visits`` makes conversations of a few events, ``--open-sessions`` at a
time (``Stream``). At 10k, 100k and 1M events (those up to ``--max-events``)
it prints:

- owner cost per event (ms, the batch's learning and persisting, over the last 5k events);
- the state log record per batch (KB, mean and p95), milliseconds persisting per batch
  (everything after learning: log, centres, topic map, topic points, catalog, and a
  checkpoint when one is due; mean and p95), the reclustering's own computing per batch
  (topics, neutral topics, themes, topic figures: learning, which runs inside the commit
  and was counted in the persist column before the ninth session; both are in the owner's
  cost per event), all bytes written per batch (checkpoints
  and centres included) and centres moved per batch, next to the comparator: the whole
  learned state serialised as one blob, what every batch wrote before (JSON + zlib of
  every micro-cluster record, stats, topic map and the seen ids);
- the journey aggregates kept by the sessions actor (``journey_owner``): its cost per
  event (compact paths, cells, writes), the time to catch up after the topic map's last
  change, the largest re-derivation during the run and how many stored sessions the
  re-derivations read back;
- p50/p95 of the read API's work behind ``/v1/clusters``, ``/v1/journeys/transitions``
  (also with a segment filter and with a time window cut mid-hour), ``/paths``,
  ``/dropoffs``, ``/flows``, one session's journey and one user's sessions (the query
  functions the handlers call, without HTTP, on one reader kept across reads as the server
  keeps it), the first read after a start apart, the source they answered from and whether
  the answer was truncated; next to them, the comparator: ``/transitions`` computed from
  stored events as before (once, up to 100k events); and ``/transitions`` read while the
  stream writes (a batch and the books' flush before each read);
- live vs history (issue 10 step 4): of the moves history shows today (every session's
  journey under today's topic map), the share the live feed sent, and the live moves
  history no longer shows (topics merged or re-formed since);
- restart: closing and reopening the store and restoring the owner and the journey books;
- RSS of the process (and its anonymous part: most of RSS is the store's mapped files),
  the number of session rows held, and about how much of it is the benchmark's own records.

Every 50k events a progress line says where the time went since the previous one
(``Progress``): the owner's wall and CPU time per event, how many batches reclustered,
the journey books' share of the wall time, the store's flushes, the CPU of the process's
other threads, full garbage collections.

Timings are wall-clock on whatever else the machine is doing: compare the rows of one run.
"""

from __future__ import annotations

import argparse
import base64
import gc
import json
import resource
import statistics
import sys
import tempfile
import time
import zlib
from collections import Counter
from itertools import pairwise
from pathlib import Path

import numpy as np

from turret_stream.agents.sessions import IdleSessions, advance
from turret_stream.catalog import Catalog
from turret_stream.clustering.owner import DimensionOwner
from turret_stream.gc_tuning import tune_gc
from turret_stream.journey_book import derive
from turret_stream.journey_owner import JourneyOwner, journey_owner
from turret_stream.journey_queries import JourneyFilter, JourneyQueries
from turret_stream.queries import Queries
from turret_stream.records import EmbeddedText, encode_vector
from turret_stream.settings import Settings
from turret_stream.storage.edge import EdgeStore

DIM = 384
BATCH = 256
START = 1_750_000_000.0
RATE = 20.0  # events per second of event time
CHECKPOINTS = (10_000, 100_000, 300_000, 1_000_000)
WINDOW = 5_000


def rss_mb() -> tuple[float, float]:
    """(RSS, its anonymous part) in MB. Qdrant's engine maps its segment files, so most of
    RSS is file pages the kernel can drop; the anonymous part is the process's own heap."""
    found = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon"):
                found[key] = int(value.split()[0]) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return found.get("VmRSS", peak), found.get("RssAnon", peak)


def bookkeeping_mb(*containers: object) -> float:
    """About what the benchmark's own records take (the live moves of every session, the
    sessions seen): they are in the RSS above, not the engine's (containers, their keys
    and values, two levels deep)."""
    total = 0
    for c in containers:
        total += sys.getsizeof(c)
        items = c.items() if isinstance(c, dict) else ((x, None) for x in c)  # type: ignore[attr-defined]
        for k, v in items:
            total += sys.getsizeof(k) + (sys.getsizeof(v) if v is not None else 0)
            if isinstance(v, dict):
                total += sum(sys.getsizeof(kk) for kk in v)
    return total / 1e6


class Stream:
    """Synthetic sessions over a mixture of topics.

    Two session models. ``spread``: each event goes to one of ``sessions`` sessions drawn
    at random, so every session stays alive for the whole run, a few events hours apart
    (conversations resumed all day long: the costliest case for the journey books, whose
    sessions keep leaving memory and coming back, and for a time window, which cuts every
    session). ``visits``: ``open_sessions`` conversations at a time, each of 2 to 8 events
    (one stretch of the Markov chain) that close when done, a new session taking the place
    of each; session ids go up to ``sessions`` and then come round again; a user has two
    sessions far apart."""

    def __init__(
        self, topics: int, sessions: int, seed: int = 0, open_sessions: int | None = None
    ) -> None:
        rng = self.rng = np.random.default_rng(seed)
        centres = rng.normal(size=(topics, DIM))
        self.centres = centres / np.linalg.norm(centres, axis=1, keepdims=True)
        # Each topic: 4 intents a little apart; the usual next topics: 3 of the others.
        offsets = rng.normal(scale=0.35 / np.sqrt(DIM), size=(topics, 4, DIM))
        self.intents = self.centres[:, None, :] + offsets
        self.next = rng.integers(topics, size=(topics, 3))
        self.topics = topics
        self.sessions = sessions
        self.open: dict[int, tuple[int, int]] = {}  # session -> (topic, events left)
        self.open_sessions = open_sessions  # None: the spread model
        self.visiting: list[int] = []  # the visits model's open sessions
        self.started = 0  # sessions the visits model has opened

    def _session(self) -> int:
        if self.open_sessions is None:
            return int(self.rng.integers(self.sessions))
        while len(self.visiting) < self.open_sessions:
            self.visiting.append(self.started % self.sessions)
            self.started += 1
        return self.visiting[int(self.rng.integers(len(self.visiting)))]

    def event(self, i: int) -> EmbeddedText:
        rng = self.rng
        s = self._session()
        topic, left = self.open.get(s, (int(rng.integers(self.topics)), int(rng.integers(2, 9))))
        if rng.random() < 0.3:
            topic = int(self.next[topic, rng.integers(3)])
        left -= 1
        if left <= 0:
            self.open.pop(s, None)
            if self.open_sessions is not None:
                self.visiting.remove(s)  # the conversation is over
        else:
            self.open[s] = (topic, left)
        v = self.intents[topic, rng.integers(4)] + rng.normal(scale=0.25 / np.sqrt(DIM), size=DIM)
        return EmbeddedText(
            event_id=f"evt_{i:032x}",
            project="bench",
            dimension="prompt",
            text=f"synthetic message {i} of topic {topic}",
            vector=encode_vector((v / np.linalg.norm(v)).astype(np.float32)),
            model_id="synthetic",
            name="prompt",
            metadata={"platform": ["web", "ios", "android"][s % 3], "plan": ["free", "pro"][s % 2]},
            session_id=f"s{s}",
            user_id=f"u{s % (self.sessions // 2 or 1)}",
            received_at=START + i / RATE,
        )


def add_stream_arguments(parser: argparse.ArgumentParser, session_model: str) -> None:
    """The synthetic stream's options (``Stream``), shared with ``owner_calls.py``."""
    parser.add_argument("--topics", type=int, default=300)
    parser.add_argument("--sessions", type=int, default=200_000)
    parser.add_argument(
        "--session-model",
        choices=("spread", "visits"),
        default=session_model,
        help="spread: every session alive all run long; visits: conversations of a few "
        "events, --open-sessions at a time (Stream)",
    )
    parser.add_argument("--open-sessions", type=int, default=400)


def stream_of(args: argparse.Namespace) -> Stream:
    visits = args.session_model == "visits"
    return Stream(args.topics, args.sessions, open_sessions=args.open_sessions if visits else None)


def new_owner(prefix: str) -> tuple[Path, Settings, EdgeStore, DimensionOwner]:
    """A fresh store in a temporary directory and the ``bench``/``prompt`` dimension's
    owner on it, as the worker process runs it (its GC thresholds included)."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    settings = Settings(data_dir=workdir)
    tune_gc(settings.worker.gc_young_threshold)  # as the worker process runs
    store = EdgeStore(workdir / "qdrant")
    catalog = Catalog(store)
    for key in ("platform", "plan"):  # typed by their own owners in the pipeline
        catalog.save_dimension("bench", key, "enum", True, {}, 0)
    return (
        workdir,
        settings,
        store,
        DimensionOwner(store, catalog, "bench", "prompt", settings, DIM),
    )


def whole_blob(owner: DimensionOwner) -> tuple[int, float]:
    """The comparator: the whole learned state as one blob (what each batch wrote before)."""
    started = time.perf_counter()
    model = owner.model
    assert model is not None
    engine = model.engine
    state = {
        "mcs": [engine.micro_cluster_record(mc) for mc in engine.micro_clusters],
        "absorbed": list(engine.absorbed.items()),
        "registry": model.registry.to_record(),
        "stats": [[k, v.to_record()] for k, v in owner.stats.items()],
        "seen": list(owner.seen)[-200_000:],
    }
    blob = base64.b64encode(zlib.compress(json.dumps(state).encode(), 3))
    return len(blob), time.perf_counter() - started


def live_vs_history(books: JourneyOwner, live: dict[str, Counter], done: int) -> None:
    """Issue 10 step 4: history's moves (today's map) that the live feed sent, and live
    moves history no longer shows. Matched per session as multisets of (from, to)."""
    history_moves = sent = 0
    for slot in books.slots.values():
        topic_map = slot.topic_map
        neutral = topic_map.neutral if books.neutral_topics else frozenset()
        # Every stored session (idle ones are no longer in the books' memory).
        for page in books.rows.session_pages(slot.names, slot.partition):
            for runs, _ in page:
                path = derive(runs, topic_map.topic_of, books.min_switch_events, neutral).path
                moves = Counter(pairwise(path))
                history_moves += sum(moves.values())
                sent += sum((moves & live.get(runs.session_id, Counter())).values())
    live_moves = sum(sum(c.values()) for c in live.values())
    print(
        f"{done:>9} live vs history: history shows {history_moves} moves, the live feed sent "
        f"{sent} of them ({sent / max(history_moves, 1):.1%}); live sent {live_moves} moves, "
        f"{live_moves - sent} of which history no longer shows "
        f"({(live_moves - sent) / max(live_moves, 1):.1%})",
        flush=True,
    )


def last_window(costs: list[tuple]) -> list[tuple]:
    """The last batches' rows (``main``'s costs) that hold ``WINDOW`` events."""
    total = 0
    for k, c in enumerate(reversed(costs), 1):
        total += c[0]
        if total >= WINDOW:
            return costs[-k:]
    return costs


class Progress:
    """Where the time went since the previous progress line: the owner's wall and
    CPU time per event over the last 5k events, how many batches reclustered, the
    journey books and store flushes since the previous line, the CPU the process's
    other threads (the store's own, in Rust) used meanwhile, and the cyclic GC's full
    collections. Wall time the main thread did not spend on CPU is waiting: for the
    other threads or for the disk."""

    def __init__(self, figures) -> None:
        self.figures = figures
        self.gc_seconds, self.gc_full, self._gc_began = 0.0, 0, 0.0
        self.batches = 0  # batches before the last line
        gc.callbacks.append(self._on_gc)
        self.mark = self._now()

    def _on_gc(self, phase: str, info: dict) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._gc_began = time.perf_counter()
        else:
            self.gc_seconds += time.perf_counter() - self._gc_began
            self.gc_full += 1

    def _now(self) -> tuple[float, ...]:
        _, books, flushed, flushes = self.figures()
        return (
            time.perf_counter(),
            time.process_time(),
            time.thread_time(),
            books,
            flushed,
            flushes,
            self.gc_seconds,
            self.gc_full,
        )

    def line(self) -> str:
        costs, *_ = self.figures()
        batches = len(costs) - self.batches
        reclusters = sum(1 for c in costs[self.batches :] if c[6] > 0)
        self.batches = len(costs)
        recent = last_window(costs)
        events = sum(c[0] for c in recent)
        wall = sum(c[1] for c in recent) / events * 1000
        cpu = sum(c[7] for c in recent) / events * 1000
        now, before = self._now(), self.mark
        self.mark = now
        d = [a - b for a, b in zip(now, before, strict=True)]
        others = (d[1] - d[2]) / d[0]
        return (
            f"owner {wall:.2f} ms/ev (its CPU {cpu:.2f}); since the last line: reclustered in"
            f" {reclusters} of {batches} batches, books"
            f" {d[3] / d[0]:.0%} of wall, flushes {int(d[5])} of {d[4] / max(d[5], 1) * 1000:.0f}"
            f" ms, other threads {others:.2f} cores, full GCs {int(d[7])} of"
            f" {d[6] / max(d[7], 1) * 1000:.0f} ms, main thread off CPU {1 - d[2] / d[0]:.0%}"
        )


def timed(fn, repeat: int) -> tuple[float, float, object]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    times.sort()
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    return statistics.median(times) * 1000, p95 * 1000, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-events", type=int, default=1_000_000)
    add_stream_arguments(parser, session_model="spread")
    parser.add_argument("--repeat", type=int, default=5, help="reads per endpoint")
    args = parser.parse_args()
    checkpoints = [c for c in CHECKPOINTS if c <= args.max_events] or [args.max_events]

    workdir, settings, store, owner = new_owner("turret-scale-")
    visits = args.session_model == "visits"
    stream = stream_of(args)
    journeys = settings.journeys

    def books_of(store: EdgeStore) -> JourneyOwner:
        # As the worker builds it (idle sessions leave memory: journeys.aggregate_evict_idle).
        made = journey_owner(store, journeys)
        assert made is not None
        return made

    books = books_of(store)
    book_seconds = 0.0
    rederives: list[float] = []
    read_back: list[int] = []  # stored sessions each re-derivation read back
    live: dict[str, Counter] = {}  # session -> live moves (from, to)
    rows: dict[str, dict] = {}
    idle = IdleSessions(journeys.dropoff_timeout_s)
    # (events, seconds, state log bytes, persist seconds, all bytes, centres, recluster s,
    # this thread's CPU seconds in owner.process)
    costs: list[tuple[int, float, int, float, int, int, float, float]] = []
    sessions_seen: list[str] = []  # one per batch: sessions whose journey is read
    distinct_sessions: set[str] = set()
    print(
        f"scale: {args.topics} topics, up to {args.sessions} sessions "
        f"({args.session_model}{f', {args.open_sessions} open at a time' if visits else ''}),"
        f" batches of {BATCH}, dim {DIM}, store in {workdir}"
    )
    header = (
        f"{'events':>9} {'mcs':>6} {'owner ms/ev':>11} {'state log KB/batch':>21} "
        f"{'persist ms/batch':>20} {'recluster ms/batch':>18} {'all KB/batch':>12} "
        f"{'centres/batch':>13} "
        f"| {'whole blob KB':>13} {'blob ms':>8}"
    )
    reads: list[str] = []
    # The store's flush, as `up`'s journal checkpoint runs it (every
    # pipeline.checkpoint_interval_s): qdrant-edge keeps what was written since the last
    # flush in memory (~6 KB an event here), so a run that never flushed measured that.
    flush_every = settings.pipeline.checkpoint_interval_s
    last_flush, flush_seconds, flushes = time.perf_counter(), 0.0, 0
    done = 0
    progress = Progress(
        lambda: (
            costs,
            book_seconds,
            flush_seconds,
            flushes,
        )
    )

    def feed(n: int) -> None:
        """One batch of ``n`` events through the owner, the live actor and the books."""
        nonlocal done, book_seconds, last_flush, flush_seconds, flushes
        batch = [stream.event(done + k) for k in range(n)]
        started, cpu = time.perf_counter(), time.thread_time()
        placed = owner.process(batch)
        spent = time.perf_counter() - started
        cpu = time.thread_time() - cpu
        cost = owner.last_persist
        costs.append(
            (
                n,
                spent,
                cost.log_bytes,
                cost.seconds - cost.recluster_seconds,
                cost.bytes,
                cost.centres,
                cost.recluster_seconds,
                cpu,
            )
        )
        for a in placed:
            key = f"{a.project}:{a.session_id}"
            row = rows.setdefault(key, {})
            moved = advance(row.setdefault(a.dimension, {}), a, journeys.min_switch_events)
            if moved is not None and moved.from_topic is not None:
                live.setdefault(a.session_id, Counter())[(moved.from_topic, moved.to_topic)] += 1
            for gone in idle.touch(0, key, a.received_at):
                rows.pop(gone, None)
        # The sessions actor's journey books: two partitions, as a worker holding two.
        started = time.perf_counter()
        for a in placed:
            books.observe(zlib.crc32(a.session_id.encode()) % 2, a)
        for slot in books.rederive_due():
            began = time.perf_counter()
            for _ in books.rederive(slot):
                pass
            rederives.append(time.perf_counter() - began)
            read_back.append(slot.rederive_read)
        books.flush()
        book_seconds += time.perf_counter() - started
        if time.perf_counter() - last_flush >= flush_every:
            began = time.perf_counter()
            store.flush(store.written_since_flush())
            last_flush = time.perf_counter()
            flush_seconds += last_flush - began
            flushes += 1
        sessions_seen.append(batch[-1].session_id)
        distinct_sessions.update(e.session_id for e in batch)
        done += n
        if done % 50_000 < BATCH:
            print(f"  ... {done} events  {progress.line()}", flush=True)

    for target in checkpoints:
        while done < target:
            feed(min(BATCH, target - done))
        # -- figures at this checkpoint
        recent = last_window(costs)
        per_event = sum(c[1] for c in recent) / sum(c[0] for c in recent) * 1000
        persisted = [c[2] / 1024 for c in recent]
        persist_ms = [c[3] * 1000 for c in recent]
        everything = [c[4] / 1024 for c in recent]
        centres = [c[5] for c in recent]
        recluster_ms = [c[6] * 1000 for c in recent]
        blob_bytes, blob_s = whole_blob(owner)
        mcs = len(owner.model.engine.micro_clusters) if owner.model else 0
        line = (
            f"{done:>9} {mcs:>6} {per_event:>11.2f} "
            f"{statistics.mean(persisted):>8.0f} (p95 {np.percentile(persisted, 95):>4.0f})"
            f" {statistics.mean(persist_ms):>7.1f} (p95 {np.percentile(persist_ms, 95):>6.1f})"
            f" {statistics.mean(recluster_ms):>18.1f}"
            f" {statistics.mean(everything):>12.0f} {statistics.mean(centres):>13.0f}"
            f" | {blob_bytes / 1024:>13.0f} {blob_s * 1000:>8.0f}"
        )
        print(header)
        print(line, flush=True)

        started = time.perf_counter()
        books.catch_up()
        catch_up = time.perf_counter() - started
        sessions_held = sum(len(s.book.sessions) for s in books.slots.values())
        print(
            f"{done:>9} journeys: {book_seconds / done * 1000:.3f} ms/event (all events so far),"
            f" catch-up after the last map change {catch_up:.2f} s ({sessions_held} sessions),"
            f" re-derivations {len(rederives)}, largest {max(rederives, default=0):.2f} s,"
            f" reading back {statistics.mean(read_back or [0]):.0f} stored sessions each"
            f" (most {max(read_back, default=0)});"
            f" store flushes {flushes}, {flush_seconds / max(flushes, 1) * 1000:.0f} ms each;"
            # Before the reads below: the computation from events leaves its heap behind.
            f" RSS {rss_mb()[0]:.0f} MB (anonymous {rss_mb()[1]:.0f} MB)",
            flush=True,
        )
        live_vs_history(books, live, done)

        queries = Queries(store)
        jq = JourneyQueries(store, queries=queries, settings=journeys)
        oracle = JourneyQueries(store, queries=queries, settings=journeys, use_aggregates=False)
        flt = JourneyFilter()
        web = JourneyFilter(segments=(("platform", "web"),))
        last = START + done / RATE
        window = JourneyFilter(since=last - 3 * 3600 - 1234.5, until=last - 600.25)
        session_id = sessions_seen[len(sessions_seen) // 2]
        user_id = f"u{int(session_id[1:]) % (args.sessions // 2 or 1)}"
        endpoints = {
            "/v1/clusters": lambda q=queries: q.clusters("bench", None, 50, 0),
            "/v1/journeys/transitions": lambda j=jq, f=flt: j.transitions("bench", None, f),
            "  ?segment=platform:web": lambda j=jq, f=web: j.transitions("bench", None, f),
            "  ?since&until (3h, mid-hour)": lambda j=jq, f=window: j.transitions("bench", None, f),
            "/v1/journeys/paths": lambda j=jq, f=flt: j.paths("bench", None, f, 10),
            "/v1/journeys/dropoffs": lambda j=jq, f=flt: j.dropoffs("bench", None, f),
            "/v1/journeys/flows": lambda j=jq, f=flt: j.flows("bench", None, f, 4),
            "/v1/sessions/{id}/journey": lambda j=jq, s=session_id, f=flt: j.session(
                "bench", s, None, f
            ),
            "/v1/users/{id}/sessions": lambda j=jq, u=user_id, f=flt: j.user_sessions(
                "bench", u, None, f
            ),
        }
        if done <= 100_000:
            endpoints["transitions from events (before)"] = lambda j=oracle, f=flt: j.transitions(
                "bench", None, f
            )
        for name, call in endpoints.items():
            # The first read of a filter after a start decodes every cell it sums (the
            # unfiltered one is shared by /transitions, /paths, /dropoffs, /flows).
            first, _, _ = timed(call, 1)
            repeat = 1 if "before" in name else args.repeat
            p50, p95, body = timed(call, repeat)
            truncated = body.get("truncated", False) if isinstance(body, dict) else False
            source = body.get("source", "-") if isinstance(body, dict) else "-"
            reads.append(
                f"{done:>9} {name:<34} p50 {p50:>8.1f} ms  p95 {p95:>8.1f} ms"
                f"  (first {first:>7.1f} ms)"
                f"  source={source} truncated={truncated}"
            )
            print(reads[-1], flush=True)
        # As a dashboard reads while events arrive: a batch and the books' flush before
        # each read, so every read finds the hour's cells rewritten.
        streaming = []
        for _ in range(args.repeat):
            feed(BATCH)
            books.flush(force=True)
            began = time.perf_counter()
            body = jq.transitions("bench", None, flt)
            streaming.append(time.perf_counter() - began)
        streaming.sort()
        reads.append(
            f"{done:>9} {'  while the stream writes':<34}"
            f" p50 {statistics.median(streaming) * 1000:>8.1f} ms"
            f"  p95 {streaming[-1] * 1000:>8.1f} ms (max of {len(streaming)})"
            f"  source={body['source']} truncated={body.get('truncated', False)}"
        )
        print(reads[-1], flush=True)

        started = time.perf_counter()
        store.close()
        store = EdgeStore(workdir / "qdrant")
        catalog = Catalog(store)
        owner = DimensionOwner(store, catalog, "bench", "prompt", settings, DIM)
        restart = time.perf_counter() - started
        started = time.perf_counter()
        books = books_of(store)
        for partition in (0, 1):
            books._slot(partition, owner.names)  # what the first event after a restart does
        books.flush(force=True)
        books_restart = time.perf_counter() - started
        print(
            f"{done:>9} restart {restart:.1f} s + journey books {books_restart:.1f} s"
            f"   RSS {rss_mb()[0]:.0f} MB"
            f" (anonymous {rss_mb()[1]:.0f} MB)   "
            f"session rows held {len(rows)} (of {len(distinct_sessions)} sessions seen), "
            f"journey books hold {sum(len(s.book.sessions) for s in books.slots.values())};"
            f" the benchmark's own records about"
            f" {bookkeeping_mb(live, distinct_sessions, rows, sessions_seen):.0f} MB of it",
            flush=True,
        )
    store.close()


if __name__ == "__main__":
    main()
