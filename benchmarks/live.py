"""Live feed benchmark: latency from producing a transition onto the transitions topic to
its arrival at a subscribed WebSocket client, with 0, 100 and N extra clients connected.

    python benchmarks/live.py --clients 1000 --messages 200 --rate 50

The embedded tansu broker and the API run in one child process; the producer, the
measuring client and the extra clients run in this one (send and receive times come from
one clock). The extra clients are idle by default: connected and subscribed, but to
transitions that never come (other sessions of the same project, or another project), so
the figures show what a crowd of connections costs the one client that does receive.
``--fanout`` makes every extra client receive every transition instead.

Most of the latency is the broker fetch: tansu holds a fetch for its whole wait, so the
feed's ``kafka.fetch_max_wait_ms`` (``--fetch-wait-ms``) bounds it; the hub and the
WebSocket add a few milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
from aiohttp import web
from aiokafka import AIOKafkaProducer

from turret_stream.broker import EmbeddedBroker, free_port
from turret_stream.http import create_app
from turret_stream.http.keys import LIVE_FEED, LIVE_HUB
from turret_stream.keys import KeyStore
from turret_stream.records import Transition, TransitionBatch, event_key
from turret_stream.settings import Settings

PROJECT = "bench"
OTHER_PROJECT = "other"
MEASURED_SESSION = "measured"


async def _always_ready() -> bool:
    return True


async def _serve(conn, fetch_wait_ms: int) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="turret-bench-live-"))
    settings = Settings(
        data_dir=data_dir,
        log_level="warning",
        kafka={"embedded_port": free_port(), "fetch_max_wait_ms": fetch_wait_ms},
        http={"port": 0},
        live={"max_clients": 100_000, "max_clients_per_key": 100_000},
    )
    keystore = KeyStore(settings.keys_db_path)
    keys = {p: keystore.create(p).secret for p in (PROJECT, OTHER_PROJECT)}
    async with EmbeddedBroker("127.0.0.1", settings.kafka.embedded_port):
        app = create_app(settings, keystore=keystore, worker_probe=_always_ready)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0, backlog=1024).start()
        await asyncio.wait_for(app[LIVE_FEED].ready.wait(), 30)
        host, port = runner.addresses[0][:2]
        conn.send(
            {
                "url": f"http://{host}:{port}/v1/live",
                "keys": keys,
                "bootstrap": settings.bootstrap_servers,
                "topic": settings.kafka.transitions_topic,
            }
        )
        while True:  # answer "stats" until "stop"
            request = await asyncio.to_thread(conn.recv)
            if request == "stop":
                break
            hub = app[LIVE_HUB]
            conn.send({"clients": hub.clients, "dropped_slow": hub.dropped_slow})
        await runner.cleanup()
    keystore.close()


def _server_main(conn, fetch_wait_ms: int) -> None:
    import logging

    logging.basicConfig(level=logging.WARNING)
    asyncio.run(_serve(conn, fetch_wait_ms))


def _transition(event_id: str) -> bytes:
    """A transition as the sessions agent sends it: in a TransitionBatch (of one here)."""
    move = Transition(
        project=PROJECT,
        dimension="prompt",
        session_id=MEASURED_SESSION,
        user_id="u-1",
        from_topic="tp_a",
        to_topic="tp_b",
        from_label="password reset",
        to_label="billing",
        step=2,
        event_id=event_id,
        at=time.time(),
        previous_at=None,
    )
    return TransitionBatch.split([move], 4096)[0].dumps()


class Crowd:
    """The extra clients: connected and subscribed, reading whatever comes."""

    def __init__(self, session: aiohttp.ClientSession, server: dict, fanout: bool) -> None:
        self._session = session
        self._server = server
        self._fanout = fanout
        self.sockets: list[aiohttp.ClientWebSocketResponse] = []
        self._readers: list[asyncio.Task] = []
        self.received = 0

    def _target(self, i: int) -> tuple[str, str]:
        url, keys = self._server["url"], self._server["keys"]
        if self._fanout:
            return url, keys[PROJECT]
        if i % 2:  # same project, a session that never moves
            return f"{url}?session_id=idle-{i}", keys[PROJECT]
        return url, keys[OTHER_PROJECT]

    async def _connect(self, i: int, gate: asyncio.Semaphore) -> None:
        url, key = self._target(i)
        async with gate:
            ws = await self._session.ws_connect(url, protocols=("turret.v1", key))
            await ws.receive()  # "subscribed"
        self.sockets.append(ws)
        self._readers.append(asyncio.create_task(self._read(ws)))

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.TEXT and '"transition"' in msg.data:
                self.received += 1

    async def grow_to(self, n: int) -> float:
        started = time.perf_counter()
        gate = asyncio.Semaphore(64)
        await asyncio.gather(*(self._connect(i, gate) for i in range(len(self.sockets), n)))
        return time.perf_counter() - started

    async def close(self) -> None:
        await asyncio.gather(*(ws.close() for ws in self.sockets))
        for reader in self._readers:
            reader.cancel()


async def _measure(
    producer: AIOKafkaProducer,
    ws: aiohttp.ClientWebSocketResponse,
    topic: str,
    messages: int,
    rate: float,
) -> dict:
    sent: dict[str, float] = {}
    latencies: list[float] = []
    done = asyncio.Event()

    async def receive() -> None:
        async for msg in ws:
            data = json.loads(msg.data)
            if data["type"] == "transition" and data["event_id"] in sent:
                latencies.append(time.perf_counter() - sent[data["event_id"]])
                if len(latencies) == messages:
                    done.set()

    reader = asyncio.create_task(receive())
    deliveries = []
    start = time.perf_counter()
    for i in range(messages):
        # Steady rate: each send at its own tick, not as fast as possible.
        await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
        event_id = f"evt_{uuid.uuid4().hex}"
        sent[event_id] = time.perf_counter()
        deliveries.append(
            await producer.send(
                topic, key=event_key(PROJECT, MEASURED_SESSION), value=_transition(event_id)
            )
        )
    await asyncio.gather(*deliveries)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), 10)
    reader.cancel()
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [float("nan")] * 99
    return {
        "received": len(latencies),
        "p50": q[49] * 1000,
        "p95": q[94] * 1000,
        "max": max(latencies, default=float("nan")) * 1000,
    }


async def _run(server: dict, sizes: list[int], messages: int, rate: float, fanout: bool, conn):
    producer = AIOKafkaProducer(bootstrap_servers=server["bootstrap"], linger_ms=0)
    await producer.start()
    connector = aiohttp.TCPConnector(limit=0)
    results = []
    async with aiohttp.ClientSession(connector=connector) as session:
        measured = await session.ws_connect(
            f"{server['url']}?session_id={MEASURED_SESSION}",
            protocols=("turret.v1", server["keys"][PROJECT]),
        )
        await measured.receive()  # "subscribed"
        crowd = Crowd(session, server, fanout)
        # Warm-up: connections, the producer's metadata, the feed's first fetches.
        await _measure(producer, measured, server["topic"], 20, rate)
        for n in sizes:
            connect_s = await crowd.grow_to(n)
            crowd.received = 0
            row = await _measure(producer, measured, server["topic"], messages, rate)
            conn.send("stats")
            row.update(conn.recv(), extra=n, connect_s=connect_s, crowd_received=crowd.received)
            results.append(row)
        await crowd.close()
        await measured.close()
    await producer.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000, help="largest crowd of extra clients")
    parser.add_argument("--messages", type=int, default=200, help="transitions measured per row")
    parser.add_argument("--rate", type=float, default=50.0, help="transitions per second")
    parser.add_argument("--fanout", action="store_true", help="extra clients receive everything")
    parser.add_argument(
        "--fetch-wait-ms",
        type=int,
        default=Settings().kafka.fetch_max_wait_ms,
        help="kafka.fetch_max_wait_ms of the API (its feed's fetch wait)",
    )
    args = parser.parse_args()
    sizes = sorted({0, min(100, args.clients), args.clients})

    parent, child = mp.Pipe()
    server_proc = mp.get_context("spawn").Process(
        target=_server_main, args=(child, args.fetch_wait_ms), daemon=True
    )
    server_proc.start()
    server = parent.recv()
    results = asyncio.run(_run(server, sizes, args.messages, args.rate, args.fanout, parent))
    parent.send("stop")
    server_proc.join(timeout=30)

    kind = "receiving every transition" if args.fanout else "idle"
    print(
        f"live feed: produce -> WebSocket client latency, {args.messages} transitions at "
        f"{args.rate:g}/s, loopback, 2 cores; extra clients {kind}; "
        f"feed fetch wait {args.fetch_wait_ms} ms"
    )
    print(f"{'extra clients':>14}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}  received  connect s")
    for r in results:
        print(
            f"{r['extra']:>14}{r['p50']:>9.1f}{r['p95']:>9.1f}{r['max']:>9.1f}"
            f"  {r['received']:>4}/{args.messages:<4}{r['connect_s']:>9.2f}"
            + (f"  crowd got {r['crowd_received']}" if args.fanout else "")
            + (f"  closed slow: {r['dropped_slow']}" if r["dropped_slow"] else "")
        )
    base, top = results[0], results[-1]
    print(
        f"p50 with {top['extra']} extra / with {base['extra']}: {top['p50'] / base['p50']:.2f}; "
        f"p95: {top['p95'] / base['p95']:.2f}"
    )


if __name__ == "__main__":
    main()
