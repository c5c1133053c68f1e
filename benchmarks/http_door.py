"""Slow clients and revoked keys at the HTTP door, against the real app on a real broker.

1. Half-sent requests: N connections each send a request head without its end (and N more a
   head and part of a body) and stop; how many are still open after `read_timeout_s` + 1 s,
   and after twice that? Comparator, same run: the same handler on aiohttp's defaults (a
   bare AppRunner), which is what turret-stream served before issue 9.
2. Revocation: S live sockets on one key; the key is revoked through another KeyStore
   connection (as the CLI does); time from the revoke to each socket's 4001 close.

    python benchmarks/http_door.py [--connections 200] [--sockets 20] [--read-timeout 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from turret_stream.broker import EmbeddedBroker, free_port
from turret_stream.http import create_app
from turret_stream.http.keys import LIVE_FEED
from turret_stream.http.server import ApiRunner
from turret_stream.keys import KeyStore
from turret_stream.settings import Settings


async def _ready() -> bool:
    return True


async def _open_half_sent(
    host: str, port: int, n: int, key: str, writers: list[asyncio.StreamWriter]
) -> list[asyncio.StreamReader]:
    """``writers`` keeps the client ends alive (a collected StreamWriter closes its socket)."""
    readers = []
    for i in range(n):
        reader, writer = await asyncio.open_connection(host, port)
        if i % 2:
            writer.write(b"POST /track HTTP/1.1\r\nHost: x\r\n")  # a head without its end
        else:
            writer.write(
                b"POST /track HTTP/1.1\r\nHost: x\r\nX-API-Key: " + key.encode() + b"\r\n"
                b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
            )
        await writer.drain()
        readers.append(reader)
        writers.append(writer)
    return readers


async def _still_open(readers: list[asyncio.StreamReader]) -> int:
    open_ = 0
    for reader in readers:
        try:
            await asyncio.wait_for(reader.read(), 0.01)
        except TimeoutError:
            open_ += 1  # no EOF: the server still holds it
    return open_


async def _serve(runner: web.AppRunner) -> tuple[str, int]:
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    return host, port


async def half_sent(settings: Settings, keystore: KeyStore, key: str, n: int) -> None:
    timeout = settings.http.read_timeout_s

    async def bare_track(request: web.Request) -> web.Response:
        with contextlib.suppress(ConnectionError):  # the benchmark hangs up at the end
            await request.read()
        return web.json_response({"success": True})

    bare = web.Application()
    bare.router.add_post("/track", bare_track)
    app = create_app(settings, keystore=keystore, worker_probe=_ready)
    ours = ApiRunner(app, access_log=None)
    theirs = web.AppRunner(bare, access_log=None)
    rows = []
    for name, runner in (("aiohttp defaults", theirs), ("turret-stream", ours)):
        host, port = await _serve(runner)
        if runner is ours:
            await asyncio.wait_for(app[LIVE_FEED].ready.wait(), 30)
        writers: list[asyncio.StreamWriter] = []
        readers = await _open_half_sent(host, port, n, key, writers)
        await asyncio.sleep(timeout + 1)
        after_one = await _still_open(readers)
        await asyncio.sleep(timeout)
        after_two = await _still_open(readers)
        rows.append((name, after_one, after_two))
        for writer in writers:
            writer.close()
        await runner.cleanup()
    print(f"half-sent requests: {n} connections, read_timeout_s={timeout:g}")
    print(
        f"{'server':>18} {'open after ' + format(timeout + 1, 'g') + ' s':>16} "
        f"{'open after ' + format(2 * timeout + 1, 'g') + ' s':>16}"
    )
    for name, one, two in rows:
        print(f"{name:>18} {one:>16} {two:>16}")


async def revocation(settings: Settings, keystore: KeyStore, sockets: int) -> None:
    new = keystore.create("bench")
    app = create_app(settings, keystore=keystore, worker_probe=_ready)
    runner = ApiRunner(app, access_log=None)
    host, port = await _serve(runner)
    await asyncio.wait_for(app[LIVE_FEED].ready.wait(), 30)
    try:
        async with aiohttp.ClientSession() as session:
            wss = []
            for _ in range(sockets):
                ws = await session.ws_connect(
                    f"http://{host}:{port}/v1/live", headers={"X-API-Key": new.secret}
                )
                await ws.receive(timeout=10)  # subscribed
                wss.append(ws)
            closed_at: list[float] = []

            async def until_closed(ws: aiohttp.ClientWebSocketResponse) -> None:
                while ws.close_code is None:
                    await ws.receive(timeout=30)
                assert ws.close_code == 4001, ws.close_code
                closed_at.append(time.monotonic())

            waiting = [asyncio.create_task(until_closed(ws)) for ws in wss]
            cli = KeyStore(settings.keys_db_path)
            start = time.monotonic()
            cli.revoke(new.info.key_id)
            cli.close()
            await asyncio.gather(*waiting)
    finally:
        await runner.cleanup()
    delays = sorted(t - start for t in closed_at)
    print(
        f"revocation: {sockets} sockets, key_recheck_s={settings.live.key_recheck_s:g}: "
        f"closed 4001 after p50 {statistics.median(delays) * 1000:.0f} ms, "
        f"max {delays[-1] * 1000:.0f} ms (before issue 9: never)"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--sockets", type=int, default=20)
    parser.add_argument("--read-timeout", type=float, default=2.0)
    args = parser.parse_args()
    port = free_port()
    broker = EmbeddedBroker("127.0.0.1", port)
    await broker.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(
                data_dir=Path(tmp),
                kafka={"embedded_port": port, "topic_prefix": "bench-door"},
                http={"read_timeout_s": args.read_timeout},
            )
            keystore = KeyStore(settings.keys_db_path)
            key = keystore.create("bench").secret
            await half_sent(settings, keystore, key, args.connections)
            await revocation(settings, keystore, args.sockets)
            keystore.close()
    finally:
        await broker.stop()


if __name__ == "__main__":
    asyncio.run(main())
