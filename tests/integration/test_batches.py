"""Light events in batches on the real PostgreSQL server and broker: the batch sinks leave the
rows the one-event sinks leave, the change-point agent evaluates each patient once per batch
with the same outcome, and a worker given a batch with an event the database refuses and one it
cannot read dead-letters those two alone and stores the rest."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from core import alerts as alerting
from core.db import events, scores
from core.publish import Publisher
from core.settings import Settings
from models.changepoint import DecisionConfig
from schemas import AlertStatus, RtFraction, TimepointScore, TreatmentEvent, pseudonymise
from streams.agents.changepoint import store_and_evaluate, store_and_evaluate_batch
from tests.integration.conftest import Workers, wait_for
from tests.integration.faults import count, fractions, treatments_of, unreadable_version
from tests.integration.test_alerting import T0, irecist_of, score, store_timepoint

pytestmark = pytest.mark.integration

KEY = "batch-test-key-0123456789abcdef"


def new_patient() -> str:
    return pseudonymise(str(uuid.uuid4()), KEY)


def rows(conn: psycopg.Connection, sql: str, patient: str) -> list[tuple]:
    return conn.execute(sql, (patient,)).fetchall()


TREATMENT_ROWS = (
    "SELECT occurred_at, kind, detail FROM treatment_events WHERE patient = %s ORDER BY 1"
)
SCORE_ROWS = (
    "SELECT observed_at, score_name, value, lower, upper, unit, model_name, model_version, "
    "inputs FROM timepoint_scores WHERE patient = %s ORDER BY 1, 2"
)


def renamed(e: TreatmentEvent, patient: str, i: int) -> TreatmentEvent:
    return e.model_copy(update={"patient": patient, "event_id": uuid.uuid5(e.event_id, str(i))})


def test_batch_sinks_leave_the_rows_of_the_one_event_sinks(db: psycopg.Connection) -> None:
    one, many = new_patient(), new_patient()
    evs = fractions(one, 6)
    later_first = [evs[3], evs[1], evs[0], evs[2], evs[5], evs[4]]  # earliest is not first
    for e in later_first:
        events.upsert_treatment(db, e)
    batch = [renamed(e, many, 0) for e in later_first]
    events.upsert_treatments(db, batch + batch[:2])  # a redelivery inside the batch
    events.upsert_treatments(db, batch)  # and a replay of the whole batch
    assert rows(db, TREATMENT_ROWS, many) == rows(db, TREATMENT_ROWS, one)
    assert len(rows(db, TREATMENT_ROWS, many)) == 6
    first_seen = "SELECT first_seen_at FROM patients WHERE pseudonym = %s"
    assert rows(db, first_seen, many) == rows(db, first_seen, one) == [(evs[0].occurred_at,)]


def test_batch_score_sink_matches_one_by_one(db: psycopg.Connection) -> None:
    one, many = new_patient(), new_patient()

    def series(patient: str) -> list[TimepointScore]:
        src = uuid.uuid5(uuid.NAMESPACE_URL, f"{patient}/scan")
        a = score(patient, src, T0, "response_probability", 0.4)
        b = score(patient, src, T0 + timedelta(days=1), "ct_immune_score", -0.2)
        return [a, b, a.model_copy(update={"value": 0.7, "inputs": ["1.2.3"]})]

    for s in series(one):
        scores.upsert_score(db, s)
    scores.upsert_scores(db, series(many))  # the same event id twice in one batch: last wins
    scores.upsert_scores(db, series(many)[:2])  # a replay of an older part: as one by one
    for s in series(one)[:2]:
        scores.upsert_score(db, s)
    assert rows(db, SCORE_ROWS, many) == rows(db, SCORE_ROWS, one)
    assert [r[2] for r in rows(db, SCORE_ROWS, many)] == [0.4, -0.2]


def test_batch_score_sink_keeps_every_column(db: psycopg.Connection) -> None:
    """Bounds, units and inputs of different lengths (the batch goes as column arrays)."""
    one, many = new_patient(), new_patient()

    def series(patient: str) -> list[TimepointScore]:
        src = uuid.uuid5(uuid.NAMESPACE_URL, f"{patient}/scan")
        plain = score(patient, src, T0, "response_probability", 0.4)
        return [
            plain,
            score(patient, src, T0, "tumour_volume_ml", 12.5).model_copy(
                update={"lower": 11.0, "upper": 14.0, "unit": "ml", "inputs": ["1.2.3", "1.2.4"]}
            ),
            score(patient, src, T0, "longest_diameter_mm", 31.0).model_copy(
                update={"unit": "mm", "inputs": ['a "quoted", {braced} uid', ""]}
            ),
            plain.model_copy(update={"value": 0.5}),
        ]

    for s in series(one):
        scores.upsert_score(db, s)
    scores.upsert_scores(db, series(many))
    stored = rows(db, SCORE_ROWS, many)
    assert stored == rows(db, SCORE_ROWS, one)
    assert [(r[1], r[2], r[3], r[4], r[5], r[8]) for r in stored] == [
        ("longest_diameter_mm", 31.0, None, None, "mm", ['a "quoted", {braced} uid', ""]),
        ("response_probability", 0.5, None, None, None, []),
        ("tumour_volume_ml", 12.5, 11.0, 14.0, "ml", ["1.2.3", "1.2.4"]),
    ]


def test_each_patient_evaluated_once_per_batch_as_one_by_one(db: psycopg.Connection) -> None:
    """Two non-responders' scores, one by one vs in one batch: the same iRECIST states and
    the same alerts open; a patient with no burden measured is skipped, as evaluate would."""
    one, many, unmeasured = new_patient(), new_patient(), new_patient()
    for p in (one, many):
        for i in range(5):
            store_timepoint(db, p, i)  # measurements, response and immune scores stored
    src = uuid.uuid5(uuid.NAMESPACE_URL, f"{unmeasured}/0")
    only_response = [
        score(unmeasured, src, T0 + timedelta(days=d), "response_probability", 0.3) for d in (0, 49)
    ]

    def new_scores(p: str) -> list[TimepointScore]:
        """The last scan's scores recomputed (same event ids, new values) and published."""
        src4, at = uuid.uuid5(uuid.NAMESPACE_URL, f"{p}/4"), T0 + timedelta(days=196)
        return [
            score(p, src4, at, "response_probability", 0.05),
            score(p, src4, at, "ct_immune_score", -0.5),
        ]

    config = DecisionConfig()
    one_by_one = []
    for s in new_scores(one):
        one_by_one += store_and_evaluate(db, s, config)
    batched = store_and_evaluate_batch(db, [*new_scores(many), *only_response], config)
    assert irecist_of(db, many) and [r[2] for r in irecist_of(db, many)] == [
        r[2] for r in irecist_of(db, one)
    ]
    active = (
        "SELECT kind, status FROM alerts WHERE patient = %s AND status IN ('open', "
        "'acknowledged') ORDER BY kind"
    )
    assert rows(db, active, many) == rows(db, active, one)
    assert {a.kind for a in batched} == {a.kind for a in one_by_one if a.patient == one}
    assert all(a.status is AlertStatus.OPEN for a in batched)
    assert alerting.evaluate_patients(db, [unmeasured]) == []
    assert irecist_of(db, unmeasured) == []
    assert scores.patients_with_burden(db, [one, many, unmeasured], ("tumour_volume_ml",)) == {
        one,
        many,
    }


def nul_event(patient: str) -> TreatmentEvent:
    """Valid to the contract, refused by PostgreSQL (no NUL character in a jsonb string)."""
    return TreatmentEvent(
        event_id=uuid.uuid4(),
        patient=patient,
        occurred_at=datetime(2026, 3, 9, tzinfo=UTC),
        treatment=RtFraction(course_id="C\x00", fraction_number=3, dose_gy=2.0),
    )


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_bad_event_in_a_batch_is_dead_lettered_and_the_rest_stored(
    settings: Settings, workers: Workers
) -> None:
    patients = [new_patient() for _ in range(4)]
    good = [e for p in patients for e in fractions(p, 25)]
    refused, unreadable = nul_event(patients[0]), unreadable_version(patients[1])
    messages = [("treatment.events", e.key, e.to_json_bytes()) for e in good]
    messages.insert(30, ("treatment.events", refused.key, refused.to_json_bytes()))
    messages.insert(60, ("treatment.events", patients[1].encode(), unreadable))
    with Publisher(settings) as pub:  # all on the topic before the worker starts: batches
        for topic, key, value in messages:
            pub.send_raw(topic, value, key=key)
        pub.flush()
    worker = workers.start()
    wait_for(lambda: treatments_of(settings, patients) == 100, timeout=120, what="100 rows")
    wait_for(
        lambda: (
            count(
                settings, "SELECT count(*) FROM dead_letters WHERE patient = ANY(%s)", (patients,)
            )
            == 2
        ),
        what="two dead letters",
    )
    with psycopg.connect(settings.dsn, autocommit=True) as conn:
        letters = conn.execute(
            "SELECT failed_event_id, error_class, reason FROM dead_letters "
            "WHERE patient = ANY(%s) ORDER BY error_class",
            (patients,),
        ).fetchall()
        batches = [
            json.loads(line[line.index("{") :])
            for line in worker.log_path.read_text(errors="replace").splitlines()  # type: ignore[attr-defined]
            if '"batch failed' in line
        ]
    assert [c for _, c, _ in letters] == ["InvalidEventError", "UntranslatableCharacter"]
    assert letters[1][0] == refused.event_id and "Unicode" in letters[1][2]
    assert batches, "the refused event's batch must have been retried event by event"
    assert worker.poll() is None
    assert (
        count(
            settings,
            "SELECT count(DISTINCT event_id) FROM treatment_events WHERE patient = ANY(%s)",
            (patients,),
        )
        == 100
    )
