"""The whole bad-input corpus (tests/bad_inputs) published to a real worker: each case lands in
the dead-letter table and topic with its expected error and reason, the worker stays up, and a
good event sent after them all is processed."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path

import psycopg
import pytest
from kafka import KafkaConsumer, TopicPartition

from core.publish import Publisher
from core.settings import Settings
from schemas import pseudonymise
from streams.handling import TOPIC_PAYLOAD_BYTES
from tests.bad_inputs.corpus import copy_files, load_cases
from tests.integration.conftest import Workers, wait_for
from tests.integration.faults import KEY, fractions, settle, treatments_of

pytestmark = [pytest.mark.integration, pytest.mark.slow]

INPUT_TOPICS = ("imaging.acquired", "biopsy.acquired", "treatment.events")


def dead_letters_on_topic(settings: Settings) -> dict[bytes, dict]:
    consumer = KafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        enable_auto_commit=False,
        consumer_timeout_ms=3000,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    tp = TopicPartition("deadletter", 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    letters = {}
    for record in consumer:
        letter = json.loads(record.value)
        if letter.get("key_b64"):
            letters[base64.b64decode(letter["key_b64"])] = letter
    consumer.close()
    return letters


@pytest.mark.timeout(600)
def test_the_corpus_is_dead_lettered_with_its_reasons_and_the_worker_goes_on(
    settings: Settings, workers: Workers, pathology_model: Path
) -> None:
    files = copy_files(Path(settings.data_roots[0]))
    cases = load_cases(files, lambda name: pseudonymise(f"{name}-{uuid.uuid4()}", KEY))
    keys = {c.name: f"corpus-{c.name}-{uuid.uuid4()}".encode() for c in cases}
    good_patient = pseudonymise(f"good-{uuid.uuid4()}", KEY)
    worker = workers.start()
    with Publisher(settings) as pub:
        for case in cases:
            pub.send_raw(case.topic, case.payload, key=keys[case.name])
        pub.publish(fractions(good_patient, 1))

    def letter(conn: psycopg.Connection, key: bytes) -> tuple | None:
        return conn.execute(
            "SELECT source_topic, error_class, reason, payload FROM dead_letters "
            "WHERE message_key = %s",
            (key,),
        ).fetchone()

    with psycopg.connect(settings.dsn, autocommit=True) as conn:

        def all_lettered() -> bool:
            assert worker.poll() is None, worker.log_path.read_text()[-3000:]
            return all(letter(conn, k) is not None for k in keys.values())

        wait_for(
            all_lettered,
            timeout=240,
            what="a dead letter for every case",
        )
        wrong = []
        for case in cases:
            topic, error_class, reason, payload = letter(conn, keys[case.name])
            if (topic, error_class) != (case.topic, case.error_class) or case.reason not in reason:
                wrong.append(f"{case.name}: {topic} {error_class}: {reason[:300]}")
            if bytes(payload) != case.payload:
                wrong.append(f"{case.name}: the original bytes were not kept")
        assert not wrong, "\n".join(wrong)
    wait_for(lambda: treatments_of(settings, [good_patient]) == 1, what="the good event")
    assert worker.poll() is None, "the worker must keep running"

    on_topic = dead_letters_on_topic(settings)
    for case in cases:
        copy = on_topic[keys[case.name]]
        assert (copy["source_topic"], copy["error_class"]) == (case.topic, case.error_class)
        # the topic copy carries at most TOPIC_PAYLOAD_BYTES; the table keeps all (above)
        assert base64.b64decode(copy["payload_b64"]) == case.payload[:TOPIC_PAYLOAD_BYTES]

    readable = [c for c in cases if c.topic in INPUT_TOPICS and c.patient.encode() in c.payload]
    print(f"[corpus] {len(cases)} cases dead-lettered with their reasons; worker alive")
    settle(
        settings,
        [c.patient for c in readable] + [good_patient],
        messages=len(readable) + 1,
        processed=1,
        dead_lettered=len(readable),
        fault="bad inputs",
    )
