"""Faults on the real stack: the broker stopped and restarted, PostgreSQL down for 30 seconds,
the alert webhook failing and slow, the derived-image disk full. Each test ends with the
reconciliation of its own events: every accepted event has its rows exactly once, or a dead
letter, and nothing is left over (the counts are printed; run with -s to see them).

The session's stack is shared: each test restarts what it stopped, in a ``finally``.
"""

from __future__ import annotations

import time

import pytest

from irtmon.settings import Settings
from irtmon.stack import kafka, postgres
from tests.integration.conftest import Workers, wait_for
from tests.integration.faults import (
    PacedReplay,
    count,
    fractions,
    new_patients,
    settle,
    treatments_of,
    unreadable_version,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PATIENTS, PER_PATIENT, BAD_PER_PATIENT = 12, 100, 1


def replay_messages(patients: list[str]) -> list[tuple[str, bytes, bytes]]:
    """Each patient's fractions in order, one unreadable event among them, interleaved."""
    per_patient = []
    for p in patients:
        messages = [
            ("treatment.events", e.key, e.to_json_bytes()) for e in fractions(p, PER_PATIENT)
        ]
        messages.insert(PER_PATIENT // 2, ("treatment.events", p.encode(), unreadable_version(p)))
        per_patient.append(messages)
    return [m for step in zip(*per_patient, strict=True) for m in step]


@pytest.mark.timeout(420)
def test_broker_stopped_and_restarted_during_a_replay(settings: Settings, workers: Workers) -> None:
    if not settings.local_kafka:
        pytest.skip("stops the local broker; IRTMON_KAFKA_BOOTSTRAP names an external one")
    patients = new_patients(PATIENTS, "broker")
    expected = PATIENTS * PER_PATIENT
    worker = workers.start()
    replay = PacedReplay(settings, replay_messages(patients), rate=60)
    replay.start()
    wait_for(lambda: treatments_of(settings, patients) >= 150, timeout=60, what="some progress")
    try:
        kafka.stop(settings)
        stopped_at = treatments_of(settings, patients)
        time.sleep(10)  # the replay keeps producing (buffered); the worker drains what it has
    finally:
        kafka.start(settings)
    print(f"[broker] rows when the broker stopped: {stopped_at} of {expected}")
    assert stopped_at < expected, "the broker must go down mid-replay"
    replay.finish()
    wait_for(lambda: treatments_of(settings, patients) == expected, timeout=180, what="every row")
    assert worker.poll() is None, "the worker must survive a broker restart"
    settle(
        settings,
        patients,
        messages=expected + PATIENTS * BAD_PER_PATIENT,
        processed=expected,
        dead_lettered=PATIENTS * BAD_PER_PATIENT,
        fault="broker",
    )


@pytest.mark.timeout(420)
def test_postgres_down_for_30_seconds_during_a_replay(settings: Settings, workers: Workers) -> None:
    if not settings.local_postgres:
        pytest.skip("stops the local PostgreSQL; IRTMON_DATABASE_URL names an external one")
    patients = new_patients(PATIENTS, "postgres")
    expected = PATIENTS * PER_PATIENT
    worker = workers.start()
    replay = PacedReplay(settings, replay_messages(patients), rate=60)
    replay.start()
    wait_for(lambda: treatments_of(settings, patients) >= 150, timeout=60, what="some progress")
    try:
        postgres.stop(settings)
        down_at = time.monotonic()
        time.sleep(30)
    finally:
        postgres.start(settings)
    stopped_at = treatments_of(settings, patients)
    print(
        f"[postgres] down for {time.monotonic() - down_at:.0f}s; rows right after the restart: "
        f"{stopped_at} of {expected}"
    )
    assert stopped_at < expected, "the database must go down mid-replay"
    replay.finish()
    wait_for(lambda: treatments_of(settings, patients) == expected, timeout=180, what="every row")
    assert worker.poll() is None, "the worker must ride out a 30-second database outage"
    assert (
        count(
            settings,
            "SELECT count(*) FROM dead_letters WHERE patient = ANY(%s) "
            "AND error_class <> 'InvalidEventError'",
            (patients,),
        )
        == 0
    ), "no good event may be dead-lettered because of the outage"
    settle(
        settings,
        patients,
        messages=expected + PATIENTS * BAD_PER_PATIENT,
        processed=expected,
        dead_lettered=PATIENTS * BAD_PER_PATIENT,
        fault="postgres",
    )
