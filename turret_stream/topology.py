"""The stream topology: which Faust agent owns what, and which topics connect them.

    /track (API) ──> events topic (key: project:session_id) ──> agents.ingest.count_events

Each agent is the single owner of its state; state changes travel as messages on topics.
The clustering, session and labelling agents of later stages register here too.
"""

from __future__ import annotations

from dataclasses import dataclass

import faust

from turret_stream.agents.ingest import IngestStats, register_ingest_agent
from turret_stream.records import TrackedEvent
from turret_stream.settings import Settings


@dataclass
class Topology:
    app: faust.App
    events: faust.TopicT
    ingest_stats: IngestStats


def build_topology(settings: Settings) -> Topology:
    """A Faust app wired to the configured broker, with every topic and agent registered."""
    worker = settings.worker
    app = faust.App(
        worker.app_id,
        broker=f"kafka://{settings.bootstrap_servers.replace(',', ';kafka://')}",
        store="memory://",
        datadir=str(settings.data_dir / "faust"),
        topic_partitions=settings.kafka.partitions,
        topic_replication_factor=settings.kafka.replication_factor,
        broker_rebalance_timeout=worker.rebalance_timeout_s,
        broker_session_timeout=worker.session_timeout_s,
        broker_heartbeat_interval=worker.heartbeat_interval_s,
        # The HTTP API is our own aiohttp app; Faust's web server is not needed.
        web_enabled=False,
        autodiscover=False,
        # tansu has no InitProducerId: no idempotent producer, no exactly-once.
        producer_acks=-1,
    )
    events = app.topic(
        settings.kafka.events_topic,
        key_type=bytes,
        value_type=TrackedEvent,
        partitions=settings.kafka.partitions,
    )
    stats = register_ingest_agent(app, events)
    return Topology(app=app, events=events, ingest_stats=stats)
