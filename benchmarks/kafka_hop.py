"""What one Kafka hop costs per text: a message per text against one message per batch.

    python benchmarks/kafka_hop.py --texts 6000

Starts the embedded broker (tansu) and a Faust app in this process, sends ``--texts``
embedded texts (384-dim vectors, as the embed agent makes them) in batches of 64 through
one topic to an agent that reads them with ``take``, and reports this process's CPU time
per text, producing and consuming together. Two ways, in the same run:

- a message per text (``EmbeddedText``), as the embed agent sent them before ``TextBatch``;
- a message per batch (``TextBatch.split``), as it sends them now; the agent unpacks each
  message into ``EmbeddedText`` records, so the comparison includes that work.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time

import faust
import numpy as np

from turret_stream.agents.cluster import unpack
from turret_stream.broker import EmbeddedBroker, free_port
from turret_stream.faust_app import TurretApp
from turret_stream.producer import ensure_topic
from turret_stream.records import EmbeddedText, TextBatch, encode_vector

BATCH = 64


def texts(n: int) -> list[EmbeddedText]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        text = f"how do I reset my password on the app, attempt {i}"
        out.append(
            EmbeddedText(
                event_id=f"evt_{i}",
                project="acme",
                dimension="prompt",
                text=text,
                vector=encode_vector(rng.standard_normal(384).astype(np.float32)),
                model_id="m",
                name="user_prompt",
                metadata={"prompt": text},
                session_id=f"s{i % 50}",
                user_id="",
                received_at=time.time(),
            )
        )
    return out


async def hop(items: list[EmbeddedText], batched: bool) -> float:
    """CPU milliseconds of this process per text, from the first send to the last read."""
    port = free_port()
    async with EmbeddedBroker("127.0.0.1", port):
        servers = f"127.0.0.1:{port}"
        await ensure_topic(servers, "hop", 4, 1)
        app = TurretApp(
            "kafka-hop",
            broker=f"kafka://{servers}",
            store="memory://",
            datadir=tempfile.mkdtemp(prefix="kafka-hop-"),
            web_enabled=False,
            autodiscover=False,
            producer_acks=-1,
            topic_partitions=4,
            stream_wait_empty=False,
        )
        topic = app.topic("hop", key_type=bytes, value_serializer="json", partitions=4)
        read = 0
        done = asyncio.Event()

        @app.agent(topic, name="kafka-hop.read")
        async def reader(stream: faust.StreamT) -> None:
            nonlocal read
            async for messages in stream.take(256, within=0.05):
                read += len(unpack(messages))
                if read >= len(items):
                    done.set()

        await app.start()
        try:
            await asyncio.sleep(2)  # the consumer group settles before the clock starts
            before = os.times()
            for i in range(0, len(items), BATCH):
                chunk = items[i : i + BATCH]
                values = TextBatch.split(chunk, 512 * 1024) if batched else chunk
                sent = [await topic.send(key=b"acme:prompt", value=v) for v in values]
                await asyncio.gather(*sent)
            await asyncio.wait_for(done.wait(), 300)
            after = os.times()
        finally:
            await app.stop()
    cpu = after.user + after.system - before.user - before.system
    return 1000 * cpu / len(items)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=6000)
    args = parser.parse_args()
    items = texts(args.texts)
    print(f"{args.texts} texts in batches of {BATCH}, one topic, tansu, Faust in this process")
    one = asyncio.run(hop(items, batched=False))
    print(f"  a message per text (EmbeddedText):     {one:.3f} CPU ms/text", flush=True)
    batch = asyncio.run(hop(items, batched=True))
    print(f"  a message per batch (TextBatch):       {batch:.3f} CPU ms/text", flush=True)
    print(f"  saved per text: {one - batch:.3f} ms ({one / batch:.1f}x)")


if __name__ == "__main__":
    main()
