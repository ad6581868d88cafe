"""Dead letters on the real stack: who reads their payloads, how long they keep them, and
``irtmon deadletters list | show | replay`` (idempotent, audited), run as a login of the
``irtmon_deadletters`` role (issue #20, items 6 and 10)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from kafka import KafkaConsumer, TopicPartition

from core import dead_letters
from core.db import events
from core.db.dead_letters import DeadLetterFilter, find
from core.publish import Publisher
from core.settings import Settings
from core.topic_reader import read_whole_topic
from irtmon.stack.private import settings_env
from schemas.topics import DEADLETTER, TREATMENT_EVENTS
from streams.failures import OutageOutlastedRetriesError
from streams.handling import Message, build_dead_letter
from tests.conftest import REPO
from tests.integration.conftest import Workers, wait_for
from tests.integration.faults import fractions, new_patients, treatments_of

pytestmark = pytest.mark.integration


@contextmanager
def login_in(settings: Settings, group: str) -> Iterator[str]:
    """A throw-away login role in ``group``; yields its connection string."""
    user = f"it_{group}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(settings.dsn, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{user}" LOGIN IN ROLE {group}')
    try:
        yield settings.dsn.replace("postgresql://irtmon@", f"postgresql://{user}@")
    finally:
        with psycopg.connect(settings.dsn, autocommit=True) as admin:
            admin.execute(f'DROP OWNED BY "{user}"')
            admin.execute(f'DROP ROLE "{user}"')


def store_letter(
    conn: psycopg.Connection, patient: str, i: int, *, at: datetime | None = None
) -> tuple[uuid.UUID, bytes]:
    """A valid treatment event dead-lettered (as an outage did before the fix), stored."""
    event = fractions(patient, i + 1)[i]
    value = event.to_json_bytes()
    offset = 10_000_000 + uuid.uuid4().int % 10_000_000  # an offset no test publishes
    msg = Message(TREATMENT_EVENTS.name, 0, offset, event.key, value)
    letter = build_dead_letter(msg, OutageOutlastedRetriesError("database down"), event)
    if at is not None:
        letter = letter.model_copy(update={"occurred_at": at})
    events.insert_dead_letter(conn, letter, value, event.key)
    return letter.event_id, value


def on_topic(settings: Settings, patient: str) -> list[bytes]:
    """Values of ``patient``'s messages on ``treatment.events``."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        enable_auto_commit=False,
        consumer_timeout_ms=3000,
        **settings.kafka_client_config(),
    )
    tps = [TopicPartition(TREATMENT_EVENTS.name, p) for p in range(TREATMENT_EVENTS.partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    out = [r.value for r in consumer if r.key == patient.encode()]
    consumer.close()
    return out


def cli(settings: Settings, dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = settings_env(settings, database_url=dsn)
    return subprocess.run(
        [sys.executable, "-m", "irtmon", "deadletters", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("group", ["irtmon_app", "irtmon_worker"])
def test_only_the_deadletters_role_reads_payloads(settings: Settings, group: str) -> None:
    if not settings.local_postgres:
        pytest.skip("creates login roles on the local server")
    (patient,) = new_patients(1, "dl-roles")
    with psycopg.connect(settings.dsn) as conn:
        letter_id, value = store_letter(conn, patient, 0)
    with login_in(settings, group) as dsn, psycopg.connect(dsn, autocommit=True) as conn:
        reason = conn.execute(
            "SELECT error_class, reason FROM dead_letters WHERE event_id = %s", (letter_id,)
        ).fetchone()
        assert reason[0] == "OutageOutlastedRetriesError"
        for column in ("payload", "message_key", "*"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"SELECT {column} FROM dead_letters WHERE event_id = %s", (letter_id,))
    with login_in(settings, "irtmon_deadletters") as dsn, psycopg.connect(dsn) as conn:
        (payload,) = conn.execute(
            "SELECT payload FROM dead_letters WHERE event_id = %s", (letter_id,)
        ).fetchone()
        assert bytes(payload) == value
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT count(*) FROM timepoint_scores")


def test_the_worker_role_stores_and_erases_dead_letters(settings: Settings) -> None:
    if not settings.local_postgres:
        pytest.skip("creates login roles on the local server")
    (patient,) = new_patients(1, "dl-worker")
    old = datetime.now(UTC) - timedelta(days=settings.deadletter_payload_retention_days + 1)
    with login_in(settings, "irtmon_worker") as dsn, psycopg.connect(dsn) as conn:
        old_id, _ = store_letter(conn, patient, 0, at=old)
        store_letter(conn, patient, 1)  # the insert needs no read of the payloads
        conn.commit()
        assert dead_letters.erase_expired(conn, settings) >= 1
        conn.commit()
    with psycopg.connect(settings.dsn) as conn:
        rows = {
            r[0]: r[1:]
            for r in conn.execute(
                "SELECT event_id, payload IS NULL, message_key IS NULL, payload_erased_at "
                "IS NOT NULL, reason FROM dead_letters WHERE patient = %s",
                (patient,),
            ).fetchall()
        }
    assert len(rows) == 2
    assert rows[old_id][:3] == (True, True, True)  # erased, and when
    assert rows[old_id][3] == "database down"  # the reason stays
    (fresh,) = [v for k, v in rows.items() if k != old_id]
    assert fresh[:3] == (False, False, False)  # within the retention: kept


def test_list_show_replay_with_filters_idempotent_and_audited(
    settings: Settings, workers: Workers
) -> None:
    if not settings.local_postgres:
        pytest.skip("creates login roles on the local server")
    mine, other = new_patients(2, "dl-cli")
    with psycopg.connect(settings.dsn) as conn:
        first, first_bytes = store_letter(conn, mine, 0)
        second, second_bytes = store_letter(conn, mine, 1)
        store_letter(conn, other, 0)
        old = datetime.now(UTC) - timedelta(days=settings.deadletter_payload_retention_days + 1)
        erased, _ = store_letter(conn, mine, 2, at=old)
        dead_letters.erase_expired(conn, settings)
    with login_in(settings, "irtmon_deadletters") as dsn:
        listed = cli(settings, dsn, "list", "--patient", mine, "--json")
        assert listed.returncode == 0, listed.stderr
        assert {str(first), str(second), str(erased)} <= set(listed.stdout.split('"'))
        assert other not in listed.stdout
        none = cli(settings, dsn, "list", "--patient", mine, "--error-class", "InvalidEventError")
        assert none.returncode == 0 and str(first) not in none.stdout
        later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        assert str(first) not in cli(settings, dsn, "list", "--since", later).stdout

        shown = cli(settings, dsn, "show", str(first), "--payload")
        assert shown.returncode == 0, shown.stderr
        assert json.loads(first_bytes)["event_id"] in shown.stdout
        assert "payload erased" in cli(settings, dsn, "show", str(erased), "--payload").stdout

        assert cli(settings, dsn, "replay").returncode == 1  # nothing selected: refused
        replayed = cli(settings, dsn, "replay", "--patient", mine, "--topic", "treatment.events")
        assert replayed.returncode == 0, replayed.stderr
        assert "2 replayed" in replayed.stdout and "1 payload erased" in replayed.stdout
        again = cli(settings, dsn, "replay", "--patient", mine)
        assert again.returncode == 0, again.stderr
        assert "2 already replayed" in again.stdout
        assert re.search(r"\d+ replayed", again.stdout) is None, again.stdout

    published = on_topic(settings, mine)
    assert sorted(published) == sorted([first_bytes, second_bytes])  # once each, bytes intact
    with psycopg.connect(settings.dsn) as conn:
        audited = conn.execute(
            "SELECT entity_id, actor FROM audit_log WHERE entity = 'dead_letter' "
            "AND action = 'dead_letter.replayed' AND patient = %s",
            (mine,),
        ).fetchall()
        assert sorted(a for a, _ in audited) == sorted([str(first), str(second)])
        assert all(actor.startswith("cli:") for _, actor in audited)
        still = find(conn, DeadLetterFilter(patient=mine))
        assert len(still) == 3  # a replay keeps the dead letter (and its record)

    # a worker stores the replayed events; replayed again (--again), they are stored once
    workers.start()
    wait_for(lambda: treatments_of(settings, [mine]) == 2, timeout=120, what="replayed rows")
    with login_in(settings, "irtmon_deadletters") as dsn:
        forced = cli(settings, dsn, "replay", str(first), str(second), "--again")
        assert forced.returncode == 0 and "2 replayed" in forced.stdout, forced.stderr
    wait_for(lambda: len(on_topic(settings, mine)) == 4, timeout=60, what="the second replay")
    time.sleep(5)  # time enough for the worker to have stored a duplicate, were there one
    assert treatments_of(settings, [mine]) == 2
    with psycopg.connect(settings.dsn) as conn:  # and no replay failed into a new dead letter
        assert len(find(conn, DeadLetterFilter(patient=mine))) == 3


def test_the_deadletter_topic_is_read_whole_filtered_and_oldest_first(settings: Settings) -> None:
    """``deadletters list --from-topic`` (:func:`core.dead_letters.read_topic` over
    :func:`core.topic_reader.read_whole_topic`): a patient's letters, oldest first, up to the
    limit; a message on the topic that is no dead letter is skipped."""
    (mine,) = new_patients(1, "topic-read")
    newest = datetime(2026, 2, 1, tzinfo=UTC)
    letters = []
    for i, event in enumerate(fractions(mine, 4)):  # published newest first
        msg = Message(TREATMENT_EVENTS.name, 0, 20_000_000 + i, event.key, event.to_json_bytes())
        letter = build_dead_letter(msg, ValueError("refused"), event)
        letters.append(letter.model_copy(update={"occurred_at": newest - timedelta(days=i)}))
    with Publisher(settings) as pub:
        pub.send_raw(DEADLETTER.name, b"not a dead letter", key=mine.encode())
        for letter in letters:
            pub.send(letter)
        pub.flush()
    found = dead_letters.read_topic(settings, DeadLetterFilter(patient=mine))
    assert [d.event_id for d in found] == [d.event_id for d in reversed(letters)]
    assert found[0].reason == "refused" and found[0].offset == 20_000_003
    limited = dead_letters.read_topic(settings, DeadLetterFilter(patient=mine, limit=2))
    assert [d.event_id for d in limited] == [d.event_id for d in found[:2]]
    records = [r for r in read_whole_topic(settings, DEADLETTER) if r.key == mine.encode()]
    assert len(records) == 5  # the foreign message too: the reader reads everything


def test_a_whole_topic_is_read_over_every_partition(settings: Settings) -> None:
    patients = new_patients(6, "topic-read")
    with Publisher(settings) as pub:
        pub.publish([e for p in patients for e in fractions(p, 3)])
    keys = {p.encode() for p in patients}
    records = [r for r in read_whole_topic(settings, TREATMENT_EVENTS) if r.key in keys]
    assert len(records) == 18
    assert len({r.partition for r in records}) > 1
    for partition in {r.partition for r in records}:  # each partition's in offset order
        offsets = [r.offset for r in records if r.partition == partition]
        assert offsets == sorted(offsets)
