"""Kafka as the compose deployment runs it, on a real broker: a SASL_SSL listener (TLS with a
certificate of a private CA made by ``docker/certs.sh``, SASL PLAIN), one principal per
service and ACLs (:mod:`irtmon.stack.kafka_security`).

A publishing tool sends a treatment event over it and a real worker (Faust, as
``irtmon-worker``) consumes and stores it; an invalid message makes the worker publish a dead
letter, also over SASL_SSL. Clients without TLS, without credentials, with a wrong password,
or with a principal not allowed what it tries, are refused.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError
from pydantic import SecretStr

from core.publish import Publisher
from core.settings import Settings
from irtmon.stack import kafka
from irtmon.stack.kafka_security import ROLES, BrokerSecurity, apply_acls, password_secret
from irtmon.stack.private import private_settings
from irtmon.stack.topics import ensure_topics
from schemas import DeadLetter, RtCourseStart, TreatmentEvent, parse_event, pseudonymise
from tests.conftest import REPO
from tests.integration.conftest import Workers, wait_for
from tests.tls import make_certs

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GROUP = f"irtmon-sasl-{os.getpid()}"


def password(role: str) -> str:
    return f"{role}-kafka-password-{os.getpid()}"


def as_role(broker: Settings, role: str, secret: str | None = None) -> Settings:
    """The broker's settings for ``role``'s principal (with ``secret`` as its password)."""
    return broker.model_copy(
        update={
            "kafka_sasl_username": f"irtmon-{role}",
            "kafka_sasl_password": SecretStr(secret or password(role)),
        }
    )


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A broker of its own with SASL_SSL and ACLs; settings as its admin."""
    base = REPO / ".irtmon" / "test-stacks" / f"sasl-{os.getpid()}"
    certs = make_certs(base / "certs", "kafka=DNS:localhost,IP:127.0.0.1")
    secrets = base / "secrets"
    secrets.mkdir(parents=True, exist_ok=True)
    for role in ROLES:  # as compose secrets: one file per password, no trailing newline
        (secrets / password_secret(role)).write_text(password(role))
    admin = private_settings(
        base / "state",
        REPO / ".irtmon" / "cache",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username="irtmon-admin",
        kafka_sasl_password=password("admin"),
        kafka_ssl_cafile=certs / "ca.crt",
        consumer_group=GROUP,
    )
    admin = Settings(**{k: v for k, v in admin.model_dump().items() if v is not None})
    try:
        kafka.start(
            admin,
            timeout=240,
            security=BrokerSecurity(certs / "kafka.pem", certs / "ca.crt", secrets),
        )
        ensure_topics(admin)
        assert apply_acls(admin) > 10
        yield admin
    finally:
        kafka.stop(admin)
        shutil.rmtree(base, ignore_errors=True)


def test_the_listener_is_tls_and_sasl_only(broker: Settings) -> None:
    # the broker's configuration holds no password: they are files, read by the config provider
    properties = kafka.paths(broker).properties.read_text()
    assert "SASL_SSL://127.0.0.1" in properties and "PLAINTEXT://127.0.0.1:" not in properties
    for role in ROLES:
        assert password(role) not in properties
    assert not kafka.broker_ready(
        broker.model_copy(
            update={"kafka_security_protocol": "PLAINTEXT", "kafka_sasl_mechanism": None}
        )
    ), "a client in clear must not be served"
    no_sasl = Settings(
        kafka_bootstrap=broker.bootstrap_servers,
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=broker.kafka_ssl_cafile,
    )
    assert not kafka.broker_ready(no_sasl), "TLS without credentials must not be served"
    assert not kafka.broker_ready(as_role(broker, "worker", "wrong-password"))
    untrusted = broker.model_copy(update={"kafka_ssl_cafile": None})  # system trust store
    assert not kafka.broker_ready(untrusted), "the client must check the broker's certificate"
    assert kafka.broker_ready(as_role(broker, "worker"))


def test_each_principal_may_do_only_its_part(broker: Settings) -> None:
    event = TreatmentEvent(
        patient=pseudonymise(f"ACL-{uuid.uuid4()}", "acl-test-key-0123456789"),
        occurred_at=datetime.now(UTC),
        treatment=RtCourseStart(course_id="C1", prescribed_dose_gy=60, fractions_planned=30),
    )
    # the PACS plugin may publish acquisitions, nothing else
    orthanc = as_role(broker, "orthanc")
    producer = KafkaProducer(
        bootstrap_servers=orthanc.bootstrap_servers,
        max_block_ms=10000,
        **orthanc.kafka_client_config(),
    )
    try:
        with pytest.raises(KafkaError, match=r"(?i)authoriz"):
            producer.send("treatment.events", value=event.to_json_bytes()).get(timeout=15)
    finally:
        producer.close(timeout=5)
    # the app reads the database, not Kafka: it may not read an input topic
    app = as_role(broker, "app")
    consumer = KafkaConsumer(
        "imaging.acquired",
        bootstrap_servers=app.bootstrap_servers,
        group_id=GROUP,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
        **app.kafka_client_config(),
    )
    try:
        with pytest.raises(KafkaError, match=r"(?i)authoriz"):
            list(consumer)
    finally:
        consumer.close()


def test_a_producer_and_a_worker_round_trip_over_sasl_ssl(
    broker: Settings, settings: Settings, workers: Workers
) -> None:
    patient = pseudonymise(f"SASL-{uuid.uuid4()}", "sasl-test-key-0123456789")
    event = TreatmentEvent(
        patient=patient,
        occurred_at=datetime.now(UTC),
        treatment=RtCourseStart(course_id="C1", prescribed_dose_gy=60, fractions_planned=30),
    )
    # the worker: the session's database, this broker as irtmon-worker
    worker = workers.start(
        wait=False,
        kafka_bootstrap=broker.bootstrap_servers,
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username="irtmon-worker",
        kafka_sasl_password=password("worker"),
        kafka_ssl_cafile=broker.kafka_ssl_cafile,
        consumer_group=GROUP,
    )
    try:
        workers.wait_assigned(worker, timeout=300)  # TLS, SASL and the group's ACL all pass
    except TimeoutError:
        log = Path(worker.log_path).read_text(errors="replace")  # type: ignore[attr-defined]
        raise AssertionError("the worker got no partitions:\n" + log[-3000:]) from None
    tools = as_role(broker, "tools")
    with Publisher(tools) as publisher:  # kafka-python, as the CLI publishing tools
        publisher.publish([event])
        publisher.send_raw("treatment.events", b'{"not": "an event"}', key=patient.encode())
        publisher.flush()

    def stored() -> bool:
        with psycopg.connect(settings.dsn, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM treatment_events WHERE event_id = %s", (event.event_id,)
            ).fetchone()
        return bool(row and row[0] == 1)

    wait_for(stored, timeout=120, what="the treatment event stored by the worker")

    # the worker published the invalid message's dead letter over SASL_SSL too
    consumer = KafkaConsumer(
        "deadletter",
        bootstrap_servers=broker.bootstrap_servers,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
        **broker.kafka_client_config(),
    )
    letters: list[DeadLetter] = []

    def dead_lettered() -> bool:
        for message in consumer:
            letter = parse_event(DeadLetter, message.value)
            assert isinstance(letter, DeadLetter)
            letters.append(letter)
        return any(letter.source_topic == "treatment.events" for letter in letters)

    try:
        wait_for(dead_lettered, timeout=90, what="the worker's dead letter on the topic")
    finally:
        consumer.close()
    assert all(p.poll() is None for p in workers.procs)
    log = Path(workers.procs[0].log_path).read_text(errors="replace")  # type: ignore[attr-defined]
    assert password("worker") not in log
