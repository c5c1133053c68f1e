"""Configuration: defaults, the YAML file and TURRET_* variables."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from turret_stream.cli import main
from turret_stream.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def test_configs_turret_yaml_documents_the_defaults(monkeypatch):
    monkeypatch.delenv("TURRET_CONFIG", raising=False)
    shipped = yaml.safe_load((ROOT / "configs" / "turret.yaml").read_text())
    defaults = Settings.model_construct().model_dump(mode="json")
    assert shipped == defaults


def test_env_overrides_file_and_nested_values(tmp_path, monkeypatch):
    config = tmp_path / "c.yaml"
    config.write_text("http:\n  port: 9000\nkafka:\n  partitions: 3\n")
    monkeypatch.setenv("TURRET_CONFIG", str(config))
    monkeypatch.setenv("TURRET_HTTP__PORT", "9100")
    monkeypatch.setenv("TURRET_RATE_LIMIT__BURST", "7")
    settings = Settings()
    assert settings.http.port == 9100  # env beats file
    assert settings.kafka.partitions == 3  # file beats default
    assert settings.rate_limit.burst == 7
    assert settings.limits.max_text_chars == 10_000  # default


def test_bad_configuration_is_reported_without_traceback(monkeypatch):
    monkeypatch.setenv("TURRET_HTTP__PORT", "not-a-port")
    result = CliRunner().invoke(main, ["keys", "list"])
    assert result.exit_code == 1
    assert "invalid configuration" in result.output and "http.port" in result.output


def test_missing_config_file_is_reported(monkeypatch, tmp_path):
    monkeypatch.setenv("TURRET_CONFIG", str(tmp_path / "absent.yaml"))
    result = CliRunner().invoke(main, ["keys", "list"])
    assert result.exit_code == 1 and "absent.yaml" in result.output


def test_unknown_setting_is_refused(tmp_path, monkeypatch):
    config = tmp_path / "c.yaml"
    config.write_text("http:\n  prot: 9000\n")
    monkeypatch.setenv("TURRET_CONFIG", str(config))
    with pytest.raises(ValueError, match="prot"):
        Settings()
