"""The stream workers on the real broker and database: dead letters, replays, kills, scale-out.

Events here are treatment events and bad events of every topic; scoring of imaging and biopsy
events is exercised in test_streams_scoring.py.
"""

from __future__ import annotations

import base64
import signal
import uuid
from datetime import UTC, datetime

import psycopg
import pytest
from kafka import KafkaConsumer, TopicPartition

from core.publish import Publisher
from core.reconcile import reconcile
from core.settings import Settings
from schemas import pseudonymise
from schemas.topics import TOPICS
from tests.integration.conftest import Workers, wait_for
from tests.integration.faults import PacedReplay, count, fractions, treatments_of

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY = "stream-test-key-0123456789abcdef"


def patient() -> str:
    return pseudonymise(str(uuid.uuid4()), KEY)


def test_each_bad_event_is_dead_lettered_and_the_next_good_one_processed(
    settings: Settings, workers: Workers
) -> None:
    (settings.data_roots[0] / "empty-series").mkdir(parents=True, exist_ok=True)
    p = patient()
    now = datetime.now(UTC).isoformat()
    good_imaging = {
        "schema_version": 1,
        "patient": p,
        "occurred_at": now,
        "modality": "CT",
        "study_uid": "1.2.3",
        "series_uids": ["1.2.3.4"],
        "location": {"kind": "folder", "path": "x"},
    }

    def imaging(**changes: object) -> bytes:
        import json

        return json.dumps({**good_imaging, "event_id": str(uuid.uuid4()), **changes}).encode()

    bad = {
        "malformed JSON": (
            "imaging.acquired",
            b'{"schema_version": 1, "patient": ',
            "InvalidEventError",
            "not valid JSON",
        ),
        "schema violation": (
            "imaging.acquired",
            imaging(patient="Jane Doe"),
            "InvalidEventError",
            "patient",
        ),
        "unknown version": (
            "biopsy.acquired",
            imaging(schema_version=9),
            "InvalidEventError",
            "schema_version 9",
        ),
        "missing files": (
            "imaging.acquired",
            imaging(location={"kind": "folder", "path": str(settings.data_roots[0] / "nope")}),
            "UnreadableInputError",
            "does not exist",
        ),
        "outside data roots": (
            "imaging.acquired",
            imaging(location={"kind": "folder", "path": "/etc"}),
            "UnreadableInputError",
            "outside the configured data roots",
        ),
        "bad treatment": (
            "treatment.events",
            b'{"schema_version": 1}',
            "InvalidEventError",
            "event_id",
        ),
        "bad score": ("scores.timepoint", imaging(), "InvalidEventError", "score_name"),
    }
    keys = {name: f"bad-{name}-{uuid.uuid4()}".encode() for name in bad}
    good = fractions(p, 1)[0]
    workers.start()
    with Publisher(settings) as pub:
        for name, (topic, value, _, _) in bad.items():
            pub.send_raw(topic, value, key=keys[name])
        pub.send(good)
        pub.flush()

    wait_for(lambda: treatments_of(settings, [p]) == 1, what="the good event after the bad ones")
    with psycopg.connect(settings.dsn, autocommit=True) as conn:
        for name, (topic, value, error_class, words) in bad.items():
            wait_for(
                lambda k=keys[name]: (
                    conn.execute(
                        "SELECT 1 FROM dead_letters WHERE message_key = %s", (k,)
                    ).fetchone()
                    is not None
                ),
                timeout=30,
                what=f"dead letter of {name}",
            )
            row = conn.execute(
                "SELECT source_topic, error_class, reason, payload, source_offset "
                "FROM dead_letters WHERE message_key = %s",
                (keys[name],),
            ).fetchone()
            assert row[0] == topic, name
            assert row[1] == error_class, (name, row)
            assert words in row[2], (name, row[2])
            assert bytes(row[3]) == value, name  # the original bytes are kept
    assert all(proc.poll() is None for proc in workers.procs), "the worker must keep running"

    # the dead-letter topic carries them too, with the reason and the original bytes
    consumer = KafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        enable_auto_commit=False,
        consumer_timeout_ms=3000,
    )
    tp = TopicPartition("deadletter", 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    import json

    letters = {}
    for record in consumer:
        letter = json.loads(record.value)
        if letter.get("key_b64"):
            letters[base64.b64decode(letter["key_b64"])] = letter
    consumer.close()
    for name, (topic, value, error_class, _) in bad.items():
        letter = letters[keys[name]]
        assert letter["source_topic"] == topic and letter["error_class"] == error_class
        assert base64.b64decode(letter["payload_b64"]) == value


def test_publishing_twice_gives_the_same_rows(settings: Settings, workers: Workers) -> None:
    patients = [patient() for _ in range(3)]
    events = [e for p in patients for e in fractions(p, 10)]
    workers.start()
    with Publisher(settings) as pub:
        pub.publish(events)
    wait_for(lambda: treatments_of(settings, patients) == 30, what="30 treatment rows")
    sentinel = patient()
    with Publisher(settings) as pub:
        pub.publish(events)  # the same events again: a replay
        pub.publish(fractions(sentinel, 1))
    wait_for(lambda: treatments_of(settings, [sentinel]) == 1, what="the sentinel after the replay")
    assert treatments_of(settings, patients) == 30


def test_sigkill_mid_stream_loses_and_doubles_nothing(settings: Settings, workers: Workers) -> None:
    # The events arrive paced, as from a replay, while the worker runs: the kill lands while the
    # stream is still flowing whatever the worker's speed (a backlog published up front was
    # drained before the kill once light events were batched).
    patients = [patient() for _ in range(20)]
    events = [e for p in patients for e in fractions(p, 100)]  # 2,000 events
    first = workers.start()
    replay = PacedReplay(
        settings, [("treatment.events", e.key, e.to_json_bytes()) for e in events], rate=100
    )
    replay.start()
    wait_for(lambda: treatments_of(settings, patients) >= 100, what="some progress")
    workers.stop(first, signal.SIGKILL)
    done_at_kill = treatments_of(settings, patients)
    assert replay.is_alive() and done_at_kill < 2000, "the kill must land mid-stream"
    workers.start()
    replay.finish()
    wait_for(lambda: treatments_of(settings, patients) == 2000, timeout=120, what="all 2000 rows")
    assert (
        count(
            settings,
            "SELECT count(DISTINCT event_id) FROM treatment_events WHERE patient = ANY(%s)",
            (patients,),
        )
        == 2000
    )
    # and across everything this session published: each message has its rows or a dead letter
    with psycopg.connect(settings.dsn, autocommit=True) as conn:
        wait_for(
            lambda: not reconcile(settings, conn).events_without_results,
            timeout=120,
            what="every message on the input topics settled",
        )
        report = reconcile(settings, conn)
    print(
        f"rows when killed: {done_at_kill}; after restart: 2000, distinct 2000; reconcile: "
        f"{report.messages} messages, {report.processed} processed, "
        f"{report.dead_lettered} dead-lettered, {report.duplicates_on_topic} duplicates"
    )


def test_two_workers_share_the_partitions_and_agree_with_one(
    settings: Settings, workers: Workers
) -> None:
    a = workers.start()
    b = workers.start(wait=False)
    workers.wait_assigned(b)
    wait_for(
        lambda: (
            not set(workers.assigned(a)) & set(workers.assigned(b))
            and len(workers.assigned(a)) + len(workers.assigned(b)) == 32
        ),
        timeout=60,
        what="a rebalance that splits the partitions",
    )
    assigned_a, assigned_b = set(workers.assigned(a)), set(workers.assigned(b))
    consumed = {
        f"{name}:{p}"
        for name in ("imaging.acquired", "biopsy.acquired", "treatment.events", "scores.timepoint")
        for p in range(TOPICS[name].partitions)
    }
    assert assigned_a | assigned_b == consumed and assigned_a and assigned_b
    patients = [patient() for _ in range(16)]
    with Publisher(settings) as pub:
        pub.publish([e for p in patients for e in fractions(p, 5)])
    wait_for(lambda: treatments_of(settings, patients) == 80, what="80 rows from two workers")
