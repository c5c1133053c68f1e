"""The stream topology: which Faust agent owns what, and which topics connect them.

    /track (API)
      -> <prefix>.events  (key project:session_id)
           -> agents.embed.embed           counts arrivals (agents.ingest), one
                                           embedding per metadata string
      -> <prefix>.texts   (key project:dimension; a batch's texts of a dimension a message)
           -> agents.cluster.cluster       owns each dimension: typing, DBSTREAM,
                                           topics, event store
      -> <prefix>.assignments (a batch's assignments of a partition a message, sent to the
                              partition of their keys, project:session_id)
                                           where each event landed
           -> agents.sessions.follow       owns each session's row (turret-sessions table)
      -> <prefix>.transitions (an assignments message's transitions of one partition a
                              message, sent to the partition of their keys)
                                           topic changes, for the live feed
    agents.cluster.cluster (topics born, split, merged, spiking) and the labeller (named):
      -> <prefix>.topic_events (key project:dimension)   read by the live feed and
           -> agents.alerts.alert            matches alert rules, sends webhooks
    embed and cluster agents, on an event or text that fails twice alone:
      -> <prefix>.dead_letters (key project)
           -> agents.dead_letters.store_dead_letters   owns the dead-letter store
    timer on the leader: agents.labels.name_topics   names topics (c-TF-IDF, then Ollama)
    timer on every worker: agents.liveness.heartbeat -> <prefix>.workers (1 partition),
                                           read by a separate API's /readyz

Each agent is the single owner of its state; state changes travel as messages on topics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import faust

from turret_stream.agents.alerts import Alerts, register_alerts_agent
from turret_stream.agents.cluster import Owners, register_cluster_agent
from turret_stream.agents.dead_letters import register_dead_letters_agent
from turret_stream.agents.embed import register_embed_agent
from turret_stream.agents.ingest import IngestStats
from turret_stream.agents.labels import Labeller, make_ollama, register_labeller
from turret_stream.agents.liveness import register_heartbeat
from turret_stream.agents.sessions import (
    register_sessions_agent,
    store_bootstrap,
    store_labels,
)
from turret_stream.catalog import Catalog, EnumKeys
from turret_stream.dead_letters import DeadLetterStore
from turret_stream.embedding import Embedder
from turret_stream.faust_app import TurretApp
from turret_stream.journey_owner import JourneyOwner, journey_owner
from turret_stream.labels.book import LabelBook
from turret_stream.progress import ProgressReports
from turret_stream.records import (
    DeadLetter,
    TopicEvent,
    TrackedEvent,
    Transition,
    WorkerHeartbeat,
)
from turret_stream.settings import Settings
from turret_stream.storage import VectorStore


@dataclass
class Topology:
    app: faust.App
    events: faust.TopicT
    texts: faust.TopicT
    assignments: faust.TopicT
    ingest_stats: IngestStats
    owners: Owners
    transitions: faust.TopicT
    sessions: faust.Table
    # Tests and benchmarks watch transitions as they are published.
    transition_listeners: list[Callable[[Transition], None]]
    labeller: Labeller
    dead_letters: faust.TopicT
    topic_events: faust.TopicT | None = None
    alerts: Alerts | None = None
    # The sessions actor's journey books (None: journeys.aggregates off).
    journeys: JourneyOwner | None = None


def topic_names(settings: Settings) -> list[str]:
    """The topics with ``kafka.partitions`` partitions (the workers topic has one)."""
    k = settings.kafka
    return [
        k.events_topic,
        k.texts_topic,
        k.assignments_topic,
        k.transitions_topic,
        k.dead_letters_topic,
        k.topic_events_topic,
    ]


def build_topology(
    settings: Settings,
    store: VectorStore,
    embedder: Embedder,
    progress: ProgressReports | None = None,
) -> Topology:
    """A Faust app wired to the configured broker, with every topic and agent registered."""
    worker = settings.worker
    k = settings.kafka
    app = TurretApp(
        worker.app_id,
        fetch_max_wait_ms=k.fetch_max_wait_ms,
        broker=f"kafka://{settings.bootstrap_servers.replace(',', ';kafka://')}",
        store="memory://",
        datadir=str(settings.data_dir / "faust"),
        topic_partitions=k.partitions,
        topic_replication_factor=k.replication_factor,
        broker_rebalance_timeout=worker.rebalance_timeout_s,
        broker_session_timeout=worker.session_timeout_s,
        broker_heartbeat_interval=worker.heartbeat_interval_s,
        # The HTTP API is our own aiohttp app; Faust's web server is not needed.
        web_enabled=False,
        autodiscover=False,
        # tansu has no InitProducerId: no idempotent producer, no exactly-once.
        producer_acks=-1,
        # Do not wait for in-flight stream batches on shutdown: with Stream.take that wait
        # can hang (faust-streaming #162). Unacked events are redelivered on restart and
        # recognised by event id, so nothing is lost or counted twice.
        stream_wait_empty=False,
    )
    events = app.topic(
        k.events_topic, key_type=bytes, value_type=TrackedEvent, partitions=k.partitions
    )
    # No value type: each message is decoded by the record class its JSON names, so the
    # cluster agent also reads the lone EmbeddedText an older worker left (unpack).
    texts = app.topic(
        k.texts_topic, key_type=bytes, value_serializer="json", partitions=k.partitions
    )
    # Likewise for the lone TopicAssignment among the AssignmentBatch messages.
    assignments = app.topic(
        k.assignments_topic, key_type=bytes, value_serializer="json", partitions=k.partitions
    )
    dead = app.topic(
        k.dead_letters_topic, key_type=bytes, value_type=DeadLetter, partitions=k.partitions
    )
    # The embed agent reads which keys are segments from the catalog, their owners' record.
    segments = EnumKeys(Catalog(store), settings.dimensions.segment_recheck_s).decided
    stats = register_embed_agent(
        app, events, texts, embedder, settings, dead, progress, segment_keys=segments
    )
    owners = Owners(store, settings, embedder.dim)
    topic_events = app.topic(
        k.topic_events_topic, key_type=bytes, value_type=TopicEvent, partitions=k.partitions
    )
    register_cluster_agent(app, texts, assignments, owners, dead, progress, topic_events)
    register_dead_letters_agent(app, dead, DeadLetterStore(store), progress)
    # TransitionBatch messages; read by the API's live feed, which also takes a lone
    # Transition (what a worker before TransitionBatch sent).
    transitions = app.topic(
        k.transitions_topic, key_type=bytes, value_serializer="json", partitions=k.partitions
    )
    listeners: list[Callable[[Transition], None]] = []
    books = journey_owner(store, settings.journeys)
    sessions = register_sessions_agent(
        app,
        assignments,
        transitions,
        settings.journeys.min_switch_events,
        bootstrap=store_bootstrap(store, settings.journeys.min_switch_events),
        listeners=listeners,
        label_of=store_labels(LabelBook(store)),
        idle_after_s=settings.journeys.dropoff_timeout_s,
        journeys=books,
        max_bytes=k.batch_message_bytes,
    )
    labeller = Labeller(store, settings.labels, make_ollama(settings.labels), embedder)
    register_labeller(app, labeller, topic_events)
    alerts = register_alerts_agent(app, topic_events, store, settings.alerts)
    workers = app.topic(k.workers_topic, key_type=bytes, value_type=WorkerHeartbeat, partitions=1)
    register_heartbeat(app, workers, worker.liveness_interval_s)
    return Topology(
        app,
        events,
        texts,
        assignments,
        stats,
        owners,
        transitions,
        sessions,
        listeners,
        labeller,
        dead,
        topic_events,
        alerts,
        books,
    )
