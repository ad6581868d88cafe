from __future__ import annotations

from pathlib import Path

import pytest

from core.settings import Settings


def test_defaults_run_a_local_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("IRTMON_KAFKA_BOOTSTRAP", "IRTMON_DATABASE_URL", "IRTMON_KAFKA_PORT"):
        monkeypatch.delenv(var, raising=False)
    s = Settings()
    assert s.local_kafka and s.local_postgres
    assert s.bootstrap_servers == "127.0.0.1:19092"
    assert s.dsn == "postgresql://irtmon@127.0.0.1:15432/irtmon"
    assert s.cache_path == Path(".irtmon/cache")


def test_environment_points_at_existing_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IRTMON_KAFKA_BOOTSTRAP", "kafka1:9092,kafka2:9092")
    monkeypatch.setenv("IRTMON_DATABASE_URL", "postgresql://u:pw@tsdb:5432/irtmon")
    monkeypatch.setenv("IRTMON_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("IRTMON_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("IRTMON_KAFKA_SASL_USERNAME", "irtmon")
    monkeypatch.setenv("IRTMON_KAFKA_SASL_PASSWORD", "s3cr3t-pw")
    s = Settings()
    assert not s.local_kafka and not s.local_postgres
    assert s.bootstrap_servers == "kafka1:9092,kafka2:9092"
    assert s.dsn.endswith("@tsdb:5432/irtmon")
    config = s.kafka_client_config()
    assert config["security_protocol"] == "SASL_SSL"
    assert config["sasl_plain_password"] == "s3cr3t-pw"
    assert "s3cr3t-pw" not in repr(s)


def test_timescaledb_switch_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IRTMON_TIMESCALEDB", "maybe")
    with pytest.raises(ValueError, match="timescaledb"):
        Settings()
