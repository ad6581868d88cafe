"""Helpers of the fault tests: events paced like a replay, counts, and the reconciliation that
ends every fault test (each accepted event has its rows exactly once, or a dead letter)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import psycopg

from core.publish import Publisher
from core.reconcile import Reconciliation, reconcile
from core.settings import Settings
from schemas import RtFraction, TreatmentEvent, pseudonymise
from tests.integration.conftest import wait_for

KEY = "fault-test-key-0123456789abcdef"


def new_patients(n: int, tag: str) -> list[str]:
    return [pseudonymise(f"{tag}-{uuid.uuid4()}", KEY) for _ in range(n)]


def fractions(patient: str, n: int) -> list[TreatmentEvent]:
    t0 = datetime(2026, 3, 2, 8, tzinfo=UTC)
    return [
        TreatmentEvent(
            event_id=uuid.uuid5(uuid.NAMESPACE_URL, f"{patient}/fraction/{i}"),
            patient=patient,
            occurred_at=t0 + timedelta(days=i),
            treatment=RtFraction(course_id="C1", fraction_number=i + 1, dose_gy=2.0),
        )
        for i in range(n)
    ]


def unreadable_version(patient: str) -> bytes:
    """A treatment event of a schema version no reader knows: dead-lettered, with its patient."""
    return json.dumps(
        {
            "schema_version": 99,
            "event_id": str(uuid.uuid4()),
            "patient": patient,
            "occurred_at": "2026-03-02T08:00:00+00:00",
            "treatment": {"kind": "rt_fraction"},
        }
    ).encode()


def count(settings: Settings, sql: str, params: Sequence[object]) -> int:
    with psycopg.connect(settings.dsn, autocommit=True, connect_timeout=3) as conn:
        return conn.execute(sql, params).fetchone()[0]


def treatments_of(settings: Settings, patients: list[str]) -> int:
    """Treatment rows of ``patients`` (-1 while the database does not answer)."""
    try:
        return count(
            settings, "SELECT count(*) FROM treatment_events WHERE patient = ANY(%s)", (patients,)
        )
    except psycopg.OperationalError:
        return -1


class PacedReplay(threading.Thread):
    """Publish messages at a steady rate, as a replay tool would; the producer buffers and
    retries through a broker outage (``delivery_timeout``), so nothing is dropped on our side."""

    def __init__(self, settings: Settings, messages: list[tuple[str, bytes, bytes]], rate: float):
        super().__init__(daemon=True)
        self.settings, self.messages, self.rate = settings, messages, rate
        self.error: BaseException | None = None
        self.sent = 0

    def run(self) -> None:
        try:
            with Publisher(self.settings, client_id="fault-replay") as pub:
                start = time.monotonic()
                for i, (topic, key, value) in enumerate(self.messages):
                    pub.send_raw(topic, value, key=key)
                    self.sent = i + 1
                    delay = start + (i + 1) / self.rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                pub.flush(timeout=240)
        except BaseException as err:  # reported by finish()
            self.error = err

    def finish(self, timeout: float = 300) -> None:
        self.join(timeout)
        assert not self.is_alive(), "the replay did not finish"
        assert self.error is None, f"the replay failed: {self.error!r}"


def settle(
    settings: Settings,
    patients: list[str],
    *,
    messages: int,
    processed: int,
    dead_lettered: int,
    fault: str,
    scores_without_acquisitions: int = 0,
    timeout: float = 120,
) -> Reconciliation:
    """Wait until reconciliation of ``patients`` settles, print it, and require the counts
    (``scores_without_acquisitions``: scores the test published straight to their topic)."""
    report = Reconciliation()

    def settled() -> bool:
        nonlocal report
        with psycopg.connect(settings.dsn, autocommit=True) as conn:
            report = reconcile(settings, conn, patients)
        return report.messages == messages and not report.events_without_results

    wait_for(settled, timeout=timeout, what=f"every message of the {fault} test settled")
    print(f"[{fault}] reconcile: {report.summary()}")
    assert not report.duplicate_scores and not report.undelivered_alert_changes, report
    assert report.scores_without_acquisitions == scores_without_acquisitions, report
    assert (report.messages, report.processed, report.dead_lettered) == (
        messages,
        processed,
        dead_lettered,
    ), report.summary()
    assert not report.results_without_events, report.results_without_events[:5]
    return report
