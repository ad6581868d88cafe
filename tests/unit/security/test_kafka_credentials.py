"""The workers' Faust client and the producers secure the broker connection alike, for every
``IRTMON_KAFKA_SECURITY_PROTOCOL``: SASL_SSL is SASL inside TLS (never SASL in clear), SSL
without a CA file is still TLS (system trust store), and nothing is silently plaintext."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from core.settings import Settings
from streams.app import broker_credentials

SASL = {
    "kafka_sasl_mechanism": "SCRAM-SHA-512",
    "kafka_sasl_username": "irtmon-worker",
    "kafka_sasl_password": "worker-password-0123",
}


def _faust(settings: Settings) -> dict:
    """What Faust hands aiokafka for these settings."""
    return credentials_to_aiokafka_auth(broker_credentials(settings))


def _verifies(context: object) -> None:
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname


def test_plaintext_is_plaintext_on_both_clients() -> None:
    s = Settings(kafka_security_protocol="PLAINTEXT")
    assert broker_credentials(s) is None
    assert _faust(s) == {"security_protocol": "PLAINTEXT"}
    assert s.kafka_client_config() == {"security_protocol": "PLAINTEXT"}


def test_sasl_ssl_carries_a_verifying_tls_context(ca_file: Path) -> None:
    s = Settings(kafka_security_protocol="SASL_SSL", kafka_ssl_cafile=ca_file, **SASL)
    auth = _faust(s)
    assert auth["security_protocol"] == "SASL_SSL"  # was SASL_PLAINTEXT: the password in clear
    assert auth["sasl_mechanism"] == "SCRAM-SHA-512"
    assert auth["sasl_plain_username"] == "irtmon-worker"
    assert auth["sasl_plain_password"] == "worker-password-0123"
    _verifies(auth["ssl_context"])
    # the CA file is the one trusted
    assert auth["ssl_context"].get_ca_certs()[0]["subject"] == (
        (("commonName", "irtmon private CA"),),
    )
    producer = s.kafka_client_config()
    assert producer["security_protocol"] == "SASL_SSL"
    assert producer["sasl_plain_password"] == "worker-password-0123"
    _verifies(producer["ssl_context"])


def test_sasl_ssl_without_a_ca_file_uses_the_system_trust_store() -> None:
    s = Settings(kafka_security_protocol="SASL_SSL", **SASL)
    auth = _faust(s)
    assert auth["security_protocol"] == "SASL_SSL"
    _verifies(auth["ssl_context"])
    assert s.kafka_client_config()["security_protocol"] == "SASL_SSL"


def test_ssl_without_a_ca_file_is_still_tls() -> None:
    s = Settings(kafka_security_protocol="SSL")
    auth = _faust(s)
    assert auth["security_protocol"] == "SSL"  # was PLAINTEXT
    _verifies(auth["ssl_context"])
    assert s.kafka_client_config()["security_protocol"] == "SSL"
    _verifies(s.kafka_client_config()["ssl_context"])


def test_ssl_with_a_ca_file(ca_file: Path) -> None:
    s = Settings(kafka_security_protocol="SSL", kafka_ssl_cafile=ca_file)
    auth = _faust(s)
    assert auth["security_protocol"] == "SSL"
    assert auth["ssl_context"].get_ca_certs()


def test_sasl_plaintext_is_what_was_asked_for() -> None:
    s = Settings(kafka_security_protocol="SASL_PLAINTEXT", **SASL)
    auth = _faust(s)
    assert auth["security_protocol"] == "SASL_PLAINTEXT"
    assert auth["ssl_context"] is None
    assert "ssl_context" not in s.kafka_client_config()


def test_a_ca_file_alone_does_not_change_the_protocol(ca_file: Path) -> None:
    """The protocol is the one configured: a CA file with PLAINTEXT is not TLS by surprise."""
    s = Settings(kafka_security_protocol="PLAINTEXT", kafka_ssl_cafile=ca_file)
    assert _faust(s) == {"security_protocol": "PLAINTEXT"}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"kafka_security_protocol": "SASL_SSL"}, "IRTMON_KAFKA_SASL_MECHANISM"),
        (
            {"kafka_security_protocol": "SASL_SSL", **SASL, "kafka_sasl_password": None},
            "IRTMON_KAFKA_SASL_PASSWORD",
        ),
        ({"kafka_security_protocol": "PLAINTEXT", **SASL}, "SASL_SSL"),
        ({"kafka_security_protocol": "TLS"}, "kafka_security_protocol"),
    ],
)
def test_incomplete_security_is_refused_at_configuration(values: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings(**values)


def test_the_password_may_come_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "kafka_password"
    secret.write_text("from-a-file-0123\n")
    s = Settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username="irtmon-worker",
        kafka_sasl_password_file=secret,
    )
    assert _faust(s)["sasl_plain_password"] == "from-a-file-0123"
