"""Emerging topics: how fast a new intent is announced on /v1/live, how fast a surge is
called ``topic_spiking``, and how many spiking alarms a steady background raises.

    python benchmarks/emerging.py --data ../shared/data/banking77.csv

One embedded stack in this process (tansu, the Faust worker, the API); the measuring
client reads ``/v1/live?events=topics`` like any user.

Part A, live (wall clock): banking77 without one intent (``--intent``) is posted to /track
at ``--rate`` events/s for ``--warmup-s``; then the held-out intent, texts the stream has
never seen, joins at ``--share`` of the traffic. Reported: seconds from the intent's first
and 20th event (the moment /track accepted it) to the first ``topic_created`` or
``topic_split`` whose examples are mostly that intent's texts. Comparator, on the same
clock: an hourly batch job (peers' scheduled topic refresh) announces it at its next run
after the 20th event.

Part B, simulated clock (events carry their time; written to the events topic as the API
writes them, since /track stamps its own clock): ``--hours`` of steady background, Poisson
arrivals at ``--per-hour`` events an hour over the 76 other intents, then one hour in which
one intent (``--surge-intent``) comes at ``--surge-x`` times its rate on top. Reported:
``topic_spiking`` alarms during the steady hours (false alarms per hour), and the
simulated seconds from the surge's start to its ``topic_spiking``. The surge hour is fed in
small steps, each processed before the next, so the time of detection is not rounded to a
batch. Comparators: an hourly batch job running the same Poisson test at the end of each
hour (detection when the hour ends), and a bare ratio rule ("this hour >= 2x the mean and
>= 5 events"), evaluated on the same final hourly counts, for its false alarms.

Timings on a shared machine are distorted by whatever else runs on it; the event-time
figures of part B are not.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import logging
import math
import random
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path

import aiohttp
from aiokafka import AIOKafkaProducer

from turret_stream.broker import free_port
from turret_stream.keys import KeyStore
from turret_stream.records import TrackedEvent, event_key
from turret_stream.settings import Settings
from turret_stream.stack import running_stack
from turret_stream.trends import HOUR, spike


def read_intents(path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row.get("text"):
                out[row["label"]].append(row["text"])
    return dict(out)


def mostly(examples: list[str], texts: set[str]) -> bool:
    """At least two thirds of the examples (and at least one) are among ``texts``."""
    hits = sum(1 for e in examples if e in texts)
    return bool(examples) and hits * 3 >= 2 * len(examples)


class LiveReader:
    """Keeps every topic event of a socket with the wall time it arrived."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.events: list[tuple[float, dict]] = []
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            data = json.loads(msg.data)
            if data["type"].startswith("topic_"):
                self.events.append((time.time(), data))


# --- part A --------------------------------------------------------------------------------


async def part_a(stack, key: str, intents: dict[str, list[str]], args) -> dict:
    held_out = intents[args.intent]
    background = [(i, t) for i, ts in intents.items() if i != args.intent for t in ts]
    rng = random.Random(1)
    rng.shuffle(held_out)
    held = set(held_out)
    async with aiohttp.ClientSession(stack.api_url, headers={"X-API-Key": key}) as http:
        ws = await http.ws_connect("/v1/live?events=topics")
        reader = LiveReader(ws)
        sent_new: list[float] = []
        start = time.time()
        t0_new = start + args.warmup_s
        deadline = t0_new + 20 / (args.rate * args.share) + args.after_20th_s
        n = 0
        next_new = t0_new
        interval = 1 / (args.rate * args.share)
        while time.time() < deadline:
            is_new = time.time() >= next_new and len(sent_new) < len(held_out)
            text = held_out[len(sent_new)] if is_new else rng.choice(background)[1]
            r = await http.post(
                "/track",
                json={"name": "user_prompt", "metadata": {"prompt": text}, "session_id": f"s{n}"},
            )
            await r.read()
            if r.status >= 300:
                await asyncio.sleep(0.5)  # back-pressure: try again
                continue
            if is_new:
                sent_new.append(time.time())
                next_new += interval
            n += 1
            await asyncio.sleep(max(0.0, start + n / args.rate - time.time()))
            found = announced(reader, held)
            if len(sent_new) >= 20 and found is not None and time.time() > sent_new[19] + 5:
                break
        await asyncio.sleep(3)
        reader.task.cancel()
        await ws.close()
    found = announced(reader, held)
    spikes = [e for _, e in reader.events if e["type"] == "topic_spiking"]
    return {
        "events": n,
        "new_events": len(sent_new),
        "first": sent_new[0] if sent_new else None,
        "twentieth": sent_new[19] if len(sent_new) >= 20 else None,
        "announced": found,
        "spikes": spikes,
        "started": start,
    }


def announced(reader: LiveReader, held: set[str]) -> tuple[float, dict] | None:
    for at, event in reader.events:
        if event["type"] in ("topic_created", "topic_split") and mostly(event["examples"], held):
            return at, event
    return None


# --- part B --------------------------------------------------------------------------------


def steady_events(intents: dict[str, list[str]], args, base: float) -> list[TrackedEvent]:
    rng = random.Random(2)
    names = sorted(i for i in intents if i != args.intent)
    out, t = [], base
    end = base + args.hours * HOUR
    while True:
        t += rng.expovariate(args.per_hour / HOUR)
        if t >= end:
            return out
        out.append(tracked("steady", rng.choice(intents[rng.choice(names)]), t, rng))


def tracked(project: str, text: str, at: float, rng: random.Random) -> TrackedEvent:
    return TrackedEvent(
        event_id=f"evt_{uuid.uuid4().hex}",
        project=project,
        name="user_prompt",
        metadata={"prompt": text},
        session_id=f"s{rng.randrange(10**9)}",
        user_id="u",
        received_at=at,
    )


async def part_b(stack, key: str, intents: dict[str, list[str]], args) -> dict:
    settings = stack.settings
    placed: list[int] = [0]
    event_mc: dict[str, int] = {}

    def on_assignment(a) -> None:  # type: ignore[no-untyped-def]
        if a.project == "steady":
            placed[0] += 1
            event_mc[a.event_id] = a.mc

    stack.topology.owners.listeners.append(on_assignment)
    now_hour = int(time.time() // HOUR)
    base = (now_hour - args.hours - 1) * HOUR  # the surge hour ends before the wall clock
    steady = steady_events(intents, args, base)
    rng = random.Random(3)
    surge_start = base + args.hours * HOUR
    per_intent = args.per_hour / (len(intents) - 1)
    surge: list[tuple[float, str]] = []
    t = surge_start
    while (t := t + rng.expovariate(args.per_hour / HOUR)) < surge_start + HOUR:
        surge.append((t, rng.choice(intents[rng.choice(sorted(set(intents) - {args.intent}))])))
    t = surge_start
    extra = per_intent * (args.surge_x - 1)
    surge_texts = intents[args.surge_intent]
    surge_texts_set = set(surge_texts)
    while (t := t + rng.expovariate(extra / HOUR)) < surge_start + HOUR:
        surge.append((t, rng.choice(surge_texts)))
    surge.sort()
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=20)
    await producer.start()

    async def send(events: list[TrackedEvent]) -> None:
        futures = [
            await producer.send(
                settings.kafka.events_topic,
                key=event_key(e.project, e.session_id),
                value=e.dumps(),
            )
            for e in events
        ]
        await asyncio.gather(*futures)

    async def processed(n: int, timeout: float = 1200) -> None:
        async with asyncio.timeout(timeout):
            while placed[0] < n:
                await asyncio.sleep(0.05)

    async with aiohttp.ClientSession(stack.api_url, headers={"X-API-Key": key}) as http:
        ws = await http.ws_connect("/v1/live?events=topics")
        reader = LiveReader(ws)
        t_wall = time.time()
        for i in range(0, len(steady), 500):
            await send(steady[i : i + 500])
        await processed(len(steady))
        steady_wall = time.time() - t_wall
        await asyncio.sleep(3)  # a last reclustering of the steady hours
        false_alarms = [e for _, e in reader.events if e["type"] == "topic_spiking"]
        seen = len(reader.events)
        done = len(steady)
        surge_ids: set[str] = set()
        for i in range(0, len(surge), args.surge_step):
            chunk = [
                tracked("steady", text, at, rng) for at, text in surge[i : i + args.surge_step]
            ]
            surge_ids |= {e.event_id for e in chunk if e.metadata["prompt"] in surge_texts_set}
            await send(chunk)
            done += len(chunk)
            await processed(done)
        await asyncio.sleep(3)
        reader.task.cancel()
        await ws.close()
    await producer.stop()
    # The surge's topics: where its intent's events are now (micro-cluster -> topic).
    owner = stack.topology.owners.get("steady", "prompt")
    assert owner.model is not None
    where: dict[str | None, int] = defaultdict(int)
    for event_id in surge_ids:
        mc = owner.model.engine.resolve(event_mc[event_id])
        where[owner.model.topic_of(mc) if mc is not None else None] += 1
    surge_topics = {t for t, n in where.items() if t is not None and n >= 0.25 * len(surge_ids)}
    spikes = [e for _, e in reader.events[seen:] if e["type"] == "topic_spiking"]
    detected = [e for e in spikes if e["topic"] in surge_topics]
    other_spikes = [e for e in spikes if e["topic"] not in surge_topics]
    hours = [dict(f.stats.hours) for f in owner.figures.values() if f.stats is not None]
    firsts = [f.stats.first for f in owner.figures.values() if f.stats is not None]
    return {
        "steady_events": len(steady),
        "steady_wall_s": steady_wall,
        "false_alarms": false_alarms,
        "surge_events": len(surge),
        "surge_start": surge_start,
        "detected": detected,
        "surge_share_in_topics": sum(where[t] for t in surge_topics) / max(1, len(surge_ids)),
        "other_spikes": other_spikes,
        "topics": len(hours),
        "ratio_alarms": ratio_alarms(hours, base, args.hours),
        "poisson_alarms": poisson_alarms(hours, firsts, base, args.hours),
    }


def ratio_alarms(all_hours: list[dict[int, int]], base: float, n_hours: int) -> int:
    """Topic-hours of the steady part a bare ratio rule (>= 2x the mean of the hours
    before, >= 5 events) would alarm on."""
    first, alarms = int(base // HOUR), 0
    for hours in all_hours:
        for h in range(first + 1, first + n_hours):
            before = [hours.get(x, 0) for x in range(first, h)]
            mean = sum(before) / len(before)
            if hours.get(h, 0) >= 5 and hours.get(h, 0) >= 2 * mean:
                alarms += 1
    return alarms


def poisson_alarms(
    all_hours: list[dict[int, int]], firsts: list[float], base: float, n_hours: int
) -> int:
    """The same topic-hours under trends.spike, on the final counts (an hourly batch job)."""
    first = int(base // HOUR)
    return sum(
        1
        for hours, born in zip(all_hours, firsts, strict=True)
        for h in range(first + 1, first + n_hours)
        if spike({k: v for k, v in hours.items() if k <= h}, born, h) is not None
    )


# --- report ----------------------------------------------------------------------------------


def report(a: dict, b: dict, args) -> None:
    print(
        f"\nPart A: live, {args.rate:g} events/s, '{args.intent}' held out, then at "
        f"{args.share:.0%} of traffic after {args.warmup_s:g} s ({a['events']} events, "
        f"{a['new_events']} of the new intent)"
    )
    if a["announced"] is None:
        print("  topic_created/topic_split for the new intent: not seen")
    else:
        at, event = a["announced"]
        since_first = at - a["first"]
        print(
            f"  announced by {event['type']} (size {event['size']}, examples "
            f"{event['examples'][:2]})"
        )
        print(f"  {'':44} turret-stream   hourly batch job")
        if a["twentieth"] is not None:
            batch = math.ceil(a["twentieth"] / HOUR) * HOUR - a["twentieth"]
            print(
                f"  {'delay from the 20th event (s)':44} {at - a['twentieth']:13.1f}   "
                f"{batch:10.0f} (this run's clock; 1800 on average)"
            )
        print(f"  {'delay from the first event (s)':44} {since_first:13.1f}")
        print("  goal: within 60 s of the 20th event")
    print(
        f"  topic_spiking during part A: {len(a['spikes'])} (a new topic is `new`: its "
        "baseline is its own, so a steady new intent is no spike)"
    )
    hours = args.hours
    print(
        f"\nPart B: simulated clock, {b['steady_events']} events over {hours} h "
        f"({args.per_hour:g}/h, {b['topics']} topics), processed in {b['steady_wall_s']:.0f} s"
    )
    print(f"  {'':44} turret-stream   ratio rule (2x, >=5)   hourly Poisson batch")
    fa = len(b["false_alarms"])
    print(
        f"  {'spiking alarms on the steady background':44} {fa:13d}   {b['ratio_alarms']:18d}"
        f"   {b['poisson_alarms']:20d}"
    )
    print(
        f"  {'  per hour':44} {fa / hours:13.3f}   {b['ratio_alarms'] / hours:18.3f}"
        f"   {b['poisson_alarms'] / hours:20.3f}"
    )
    print("  goal: zero spiking alarms per hour")
    if b["detected"]:
        e = b["detected"][0]
        print(
            f"  the surge's topic: {e['label']!r} (holds {b['surge_share_in_topics']:.0%} of "
            f"the surge intent's events), examples {e['examples'][:3]}"
        )
        delay = e["event_time"] - b["surge_start"]
        print(
            f"  surge of '{args.surge_intent}' x{args.surge_x:g}: topic_spiking after "
            f"{delay:.0f} simulated s (this hour {e['this_hour']} vs baseline "
            f"{e['baseline_per_hour']}/h, p={e['p_value']:.1e}); hourly batch: 3600 s"
        )
    else:
        print(f"  surge of '{args.surge_intent}' x{args.surge_x:g}: no topic_spiking")
    if b["other_spikes"]:
        print(f"  other topics spiking in the surge hour: {len(b['other_spikes'])}")
        for e in b["other_spikes"][:3]:
            print(f"    {e['this_hour']} vs {e['baseline_per_hour']}/h: {e['examples'][:3]}")


async def main(args) -> None:
    logging.basicConfig(level=logging.WARNING)
    intents = read_intents(args.data)
    for name in (args.intent, args.surge_intent):
        if name not in intents:
            raise SystemExit(f"no intent {name!r} in {args.data}")
    data_dir = Path(tempfile.mkdtemp(prefix="turret-bench-emerging-"))
    settings = Settings(
        data_dir=data_dir,
        log_level="warning",
        kafka={"embedded_port": free_port(), "partitions": 4},
        http={"port": free_port()},
        worker={"embed_processes": args.workers},
        pipeline={"max_lag_events": 100_000},
    )
    keys = KeyStore(settings.keys_db_path)
    key_a, key_b = keys.create("emerging").secret, keys.create("steady").secret
    async with running_stack(settings, broker=True, worker=True, api=True) as stack:
        a = await part_a(stack, key_a, intents, args) if not args.skip_a else None
        b = await part_b(stack, key_b, intents, args)
    if a is None:
        a = {"events": 0, "new_events": 0, "announced": None, "spikes": []}
    report(a, b, args)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/banking77.csv"))
    parser.add_argument("--intent", default="apple_pay_or_google_pay")
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--share", type=float, default=0.01)
    parser.add_argument("--warmup-s", type=float, default=60.0)
    parser.add_argument("--after-20th-s", type=float, default=90.0)
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--per-hour", type=float, default=300.0)
    parser.add_argument("--surge-intent", default="card_arrival")
    parser.add_argument("--surge-x", type=float, default=10.0)
    parser.add_argument("--surge-step", type=int, default=4)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--skip-a", action="store_true", help="Only part B.")
    asyncio.run(main(parser.parse_args()))
