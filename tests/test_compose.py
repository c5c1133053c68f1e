"""The scaled-out deployment: docker-compose.yml read the way Docker Compose reads it, every
turret service's environment resolved through the project's own settings loader, and each
service's command started as the image starts it (no Docker engine runs here).

What is verified only on paper: that the images start and reach each other on a Docker
network (README, *Production*)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from turret_stream.broker import EmbeddedBroker
from turret_stream.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
TURRET_SERVICES = ("api", "worker")
# The console script pip installed beside this interpreter, as in the image.
TURRET_STREAM = Path(sys.executable).parent / "turret-stream"


@pytest.fixture(scope="module")
def compose() -> dict:
    # PyYAML's safe loader applies `<<` merge keys, as Compose does for x- anchors.
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _settings_of(service: dict, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in list(os.environ):
        if name.startswith("TURRET_"):
            monkeypatch.delenv(name)
    for name, value in service["environment"].items():
        monkeypatch.setenv(name, str(value))
    return Settings()


def _mounts(service: dict) -> dict[str, str]:
    """target path -> volume name."""
    return {m.split(":")[1]: m.split(":")[0] for m in service.get("volumes", [])}


def test_turret_services_resolve_to_one_consistent_configuration(compose, monkeypatch):
    services = compose["services"]
    resolved = {name: _settings_of(services[name], monkeypatch) for name in TURRET_SERVICES}
    api, worker = resolved["api"], resolved["worker"]
    # Both sides of every topic and the consumer group agree.
    for field in ("bootstrap_servers", "topic_prefix", "partitions"):
        assert getattr(api.kafka, field) == getattr(worker.kafka, field), field
    assert api.worker.app_id == worker.worker.app_id
    assert api.storage == worker.storage
    assert api.labels.ollama_host == worker.labels.ollama_host
    # Separate processes need the Qdrant server: the in-process store admits one opener.
    assert api.storage.backend == "server"
    # Every host a turret service dials is a service of this file, on the port it serves.
    qdrant = urlparse(api.storage.url)
    assert qdrant.hostname in services and qdrant.port == 6333
    ollama = urlparse(api.labels.ollama_host)
    assert ollama.hostname in services and ollama.port == 11434
    kafka_host, kafka_port = api.kafka.bootstrap_servers.split(":")
    assert kafka_host in services
    assert (
        f"PLAINTEXT://{kafka_host}:{kafka_port}"
        in (services[kafka_host]["environment"]["KAFKA_ADVERTISED_LISTENERS"])
    )
    # The data dir is on a named volume, shared by the API replicas (the key store).
    for name in TURRET_SERVICES:
        assert _mounts(services[name]).get(str(resolved[name].data_dir)) in compose["volumes"]
    # The model the pull service fetches is the one the labeller asks for.
    assert api.labels.ollama_model in services["ollama-pull"]["entrypoint"]


def test_services_restart_build_once_and_check_readiness(compose):
    services = compose["services"]
    built = [name for name, s in services.items() if "build" in s]
    assert built == ["worker"], "one image, built once"
    assert services["api"]["image"] == services["worker"]["image"]
    for name, service in services.items():
        assert "restart" in service, name
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
    assert services["ollama-pull"]["restart"] == "no"
    # The API's health check asks /readyz (broker reachable and workers alive).
    assert "/readyz" in " ".join(services["api"]["healthcheck"]["test"])
    # Kafka writes its log where its volume is mounted.
    kafka = services["kafka"]
    assert kafka["environment"]["KAFKA_LOG_DIRS"] in _mounts(kafka)
    assert "/qdrant/storage" in _mounts(services["qdrant"])


def _image_command(service: dict) -> list[str]:
    # The Dockerfile's ENTRYPOINT is `turret-stream`; the service gives the arguments.
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["turret-stream"]' in dockerfile
    return [str(TURRET_STREAM), *service["command"]]


@pytest.mark.parametrize("name", TURRET_SERVICES)
def test_each_service_starts_as_the_image_would_and_says_what_it_cannot_reach(
    compose, name, broker: EmbeddedBroker, tmp_path
):
    """Against a local broker, with no Qdrant server to reach (none runs here): the command
    line is accepted, Kafka is reached, and the process stops with one clear line."""
    service = compose["services"][name]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TURRET_")}
    env.update({k: str(v) for k, v in service["environment"].items()})
    env.update(
        {
            "TURRET_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{broker.port}",
            "TURRET_STORAGE__URL": "http://127.0.0.1:1",  # nothing listens on port 1
            "TURRET_DATA_DIR": str(tmp_path / "data"),
            "TURRET_STARTUP__WAIT_S": "1",
            "TURRET_HTTP__PORT": "0",
        }
    )
    done = subprocess.run(
        _image_command(service), env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot reach the Qdrant server at http://127.0.0.1:1")
    assert "storage.url" in last


def test_unreachable_broker_is_one_line_and_exit_1(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TURRET_")}
    env.update(
        {
            "TURRET_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1",
            "TURRET_DATA_DIR": str(tmp_path / "data"),
            "TURRET_STARTUP__WAIT_S": "1",
        }
    )
    done = subprocess.run(
        [str(TURRET_STREAM), "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith("error: cannot reach Kafka at 127.0.0.1:1 (kafka.bootstrap_servers")
    )
