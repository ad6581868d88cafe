"""Patients, acquisitions, treatment events and dead letters: the events irtmon received.

Every write is an idempotent upsert keyed by the event id (delivery is at least once: a replay
or a restart before the offset commit leaves the same rows behind). Functions take an open
psycopg connection and never commit; the caller commits, then commits the Kafka offset.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from schemas.events import BiopsyAcquired, DeadLetter, ImagingAcquired, TreatmentEvent

Cohorts = Sequence[str] | None
"""The ``patients.cohort`` values a user may see, or None for every cohort (admins)."""


def scope(cohorts: Cohorts) -> dict[str, Any]:
    """Query parameters ``all`` and ``cohorts`` of a cohort filter
    (``%(all)s OR p.cohort = ANY(%(cohorts)s)``)."""
    return {"all": cohorts is None, "cohorts": list(cohorts or [])}


def in_scope(column: str) -> str:
    """SQL condition: the patient in ``column`` belongs to a cohort of the ``%(all)s`` /
    ``%(cohorts)s`` parameters of :func:`scope`. Every per-patient read the app uses takes the
    user's cohorts and adds it, so a pseudonym passed directly returns nothing outside them."""
    return (
        f"(%(all)s OR EXISTS (SELECT 1 FROM patients sp WHERE sp.pseudonym = {column} "
        "AND sp.cohort = ANY(%(cohorts)s)))"
    )


# ----------------------------------------------------------------------------- writes


def upsert_patient(conn: psycopg.Connection, pseudonym: str, seen_at: object) -> None:
    """Register a patient on first sight (keeps the earliest time seen)."""
    conn.execute(
        """
        INSERT INTO patients (pseudonym, first_seen_at) VALUES (%s, %s)
        ON CONFLICT (pseudonym) DO UPDATE
            SET first_seen_at = LEAST(patients.first_seen_at, EXCLUDED.first_seen_at)
        """,
        (pseudonym, seen_at),
    )


def upsert_patients(conn: psycopg.Connection, seen: Iterable[tuple[str, datetime]]) -> None:
    """Register many patients at once: :func:`upsert_patient` for each (pseudonym, time seen),
    one row per patient (its earliest time), in one statement, in pseudonym order (so two
    transactions never wait on each other's rows in opposite orders)."""
    earliest: dict[str, datetime] = {}
    for pseudonym, at in seen:
        if pseudonym not in earliest or at < earliest[pseudonym]:
            earliest[pseudonym] = at
    if not earliest:
        return
    ordered = sorted(earliest.items())
    conn.execute(
        """
        INSERT INTO patients (pseudonym, first_seen_at)
        SELECT * FROM unnest(%s::text[], %s::timestamptz[])
        ON CONFLICT (pseudonym) DO UPDATE SET first_seen_at = EXCLUDED.first_seen_at
            WHERE EXCLUDED.first_seen_at < patients.first_seen_at
        """,
        ([p for p, _ in ordered], [at for _, at in ordered]),
    )


def set_patient_cohort(
    conn: psycopg.Connection, pseudonym: str, cohort: str, arm: str | None = None
) -> None:
    """Put a (known) patient in a cohort and arm."""
    conn.execute(
        "UPDATE patients SET cohort = %s, arm = coalesce(%s, arm) WHERE pseudonym = %s",
        (cohort, arm, pseudonym),
    )


def upsert_imaging(conn: psycopg.Connection, event: ImagingAcquired) -> None:
    upsert_patient(conn, event.patient, event.occurred_at)
    conn.execute(
        """
        INSERT INTO acquisitions (event_id, patient, kind, modality, acquired_at, study_uid,
                                  series_uids, purpose, location, payload)
        VALUES (%s, %s, 'imaging', %s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (event_id) DO NOTHING
        """,
        (
            event.event_id,
            event.patient,
            event.modality.value,
            event.occurred_at,
            event.study_uid,
            list(event.series_uids),
            event.purpose.value,
            Jsonb(event.location.model_dump(mode="json")),
            Jsonb(event.model_dump(mode="json")),
        ),
    )


def upsert_biopsy(conn: psycopg.Connection, event: BiopsyAcquired) -> None:
    upsert_patient(conn, event.patient, event.occurred_at)
    conn.execute(
        """
        INSERT INTO acquisitions (event_id, patient, kind, modality, acquired_at, specimen_id,
                                  series_uids, location, payload)
        VALUES (%s, %s, 'biopsy', 'WSI', %s, %s, %s, %s, %s)
        ON CONFLICT (event_id) DO NOTHING
        """,
        (
            event.event_id,
            event.patient,
            event.occurred_at,
            event.specimen_id,
            [s.slide_id for s in event.slides],
            Jsonb([s.model_dump(mode="json") for s in event.slides]),
            Jsonb(event.model_dump(mode="json")),
        ),
    )


def upsert_treatment(conn: psycopg.Connection, event: TreatmentEvent) -> None:
    upsert_patient(conn, event.patient, event.occurred_at)
    conn.execute(
        """
        INSERT INTO treatment_events (event_id, patient, occurred_at, kind, detail)
        VALUES (%s, %s, %s, %s, %s)
        ON CONFLICT (event_id) DO NOTHING
        """,
        (
            event.event_id,
            event.patient,
            event.occurred_at,
            event.treatment.kind.value,
            Jsonb(event.treatment.model_dump(mode="json")),
        ),
    )


def upsert_treatments(conn: psycopg.Connection, batch: Sequence[TreatmentEvent]) -> None:
    """Store a batch of treatment events: :func:`upsert_treatment` for each, in one statement
    (the batch's columns as arrays). A redelivered event id changes nothing (in the batch too:
    its first delivery is the row, as one by one)."""
    if not batch:
        return
    upsert_patients(conn, ((e.patient, e.occurred_at) for e in batch))
    first: dict[uuid.UUID, TreatmentEvent] = {}
    for e in batch:
        first.setdefault(e.event_id, e)
    rows = list(first.values())
    conn.execute(
        """
        INSERT INTO treatment_events (event_id, patient, occurred_at, kind, detail)
        SELECT * FROM unnest(%s::uuid[], %s::text[], %s::timestamptz[], %s::text[], %s::jsonb[])
        ON CONFLICT (event_id) DO NOTHING
        """,
        (
            [e.event_id for e in rows],
            [e.patient for e in rows],
            [e.occurred_at for e in rows],
            [e.treatment.kind.value for e in rows],
            [Jsonb(e.treatment.model_dump(mode="json")) for e in rows],
        ),
    )


def mark_scored(conn: psycopg.Connection, event_id: uuid.UUID) -> None:
    """The acquisition's results are stored."""
    conn.execute("UPDATE acquisitions SET status = 'scored' WHERE event_id = %s", (event_id,))


def acquisition_status(conn: psycopg.Connection, event_id: uuid.UUID) -> str | None:
    """``received``, ``scored`` or ``failed``; None for an unknown acquisition."""
    row = conn.execute(
        "SELECT status FROM acquisitions WHERE event_id = %s", (event_id,)
    ).fetchone()
    return None if row is None else str(row[0])


def insert_dead_letter(
    conn: psycopg.Connection, letter: DeadLetter, payload: bytes, key: bytes | None
) -> None:
    """Record a dead letter once per source message (topic, partition, offset)."""
    conn.execute(
        """
        INSERT INTO dead_letters (event_id, source_topic, source_partition, source_offset,
                                  failed_event_id, patient, error_class, reason, payload,
                                  message_key, dead_lettered_at)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (source_topic, source_partition, source_offset) DO NOTHING
        """,
        (
            letter.event_id,
            letter.source_topic,
            letter.partition,
            letter.offset,
            letter.failed_event_id,
            letter.patient,
            letter.error_class,
            letter.reason,
            payload,
            key,
            letter.occurred_at,
        ),
    )
    if letter.failed_event_id is not None:
        conn.execute(
            "UPDATE acquisitions SET status = 'failed' WHERE event_id = %s AND status <> 'scored'",
            (letter.failed_event_id,),
        )


# ----------------------------------------------------------------------------- reads


@dataclass(frozen=True)
class BaselineRow:
    """The earliest imaging acquisition of a patient with a lesion reference."""

    event_id: uuid.UUID
    path: str | None
    lesion_path: str | None
    url: str | None
    study_uid: str | None
    acquired_at: datetime | None = None


def baseline_acquisition(
    conn: psycopg.Connection, patient: str, until: datetime
) -> BaselineRow | None:
    """The patient's baseline: earliest imaging acquisition up to ``until`` that carries a
    lesion reference (RTSTRUCT or SEG)."""
    row = conn.execute(
        """
        SELECT event_id, location->>'path', payload->'lesion'->>'path', location->>'url',
               payload->>'study_uid', acquired_at
        FROM acquisitions
        WHERE patient = %s AND kind = 'imaging' AND payload->'lesion' IS NOT NULL
              AND payload->'lesion' <> 'null'::jsonb AND acquired_at <= %s
        ORDER BY acquired_at, event_id
        LIMIT 1
        """,
        (patient, until),
    ).fetchone()
    return None if row is None else BaselineRow(*row)


def acquisition_counts(conn: psycopg.Connection, event_ids: Sequence[uuid.UUID]) -> dict[str, int]:
    """How many of these acquisitions are ``received``, ``scored`` or ``failed``, and how many
    are not stored yet (``missing``)."""
    rows = conn.execute(
        "SELECT status, count(*) FROM acquisitions WHERE event_id = ANY(%s) GROUP BY status",
        (list(event_ids),),
    ).fetchall()
    counts = {str(status): int(n) for status, n in rows}
    counts["missing"] = len(set(event_ids)) - sum(counts.values())
    return counts


def imaged_patients(conn: psycopg.Connection) -> list[str]:
    """Every patient with at least one imaging acquisition, sorted."""
    rows = conn.execute(
        "SELECT DISTINCT patient FROM acquisitions WHERE kind = 'imaging' ORDER BY 1"
    ).fetchall()
    return [r[0] for r in rows]


def patient_info(conn: psycopg.Connection, patient: str, cohorts: Cohorts) -> dict[str, Any] | None:
    """The patient's row if ``cohorts`` lets the user see it, else None."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT pseudonym AS patient, cohort, arm, first_seen_at FROM patients "
            "WHERE pseudonym = %(patient)s AND (%(all)s OR cohort = ANY(%(cohorts)s))",
            {"patient": patient, **scope(cohorts)},
        )
        return cur.fetchone()


def visible_patients(conn: psycopg.Connection, cohorts: Cohorts) -> list[str]:
    """Pseudonyms the user may see, sorted."""
    rows = conn.execute(
        "SELECT pseudonym FROM patients WHERE %(all)s OR cohort = ANY(%(cohorts)s) "
        "ORDER BY pseudonym",
        scope(cohorts),
    ).fetchall()
    return [r[0] for r in rows]


def patient_treatments(
    conn: psycopg.Connection, patient: str, *, cohorts: Cohorts
) -> list[dict[str, Any]]:
    """Radiotherapy and immunotherapy events in time order (none outside ``cohorts``)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT occurred_at, kind, detail FROM treatment_events WHERE patient = %(patient)s "
            f"AND {in_scope('patient')} ORDER BY occurred_at",
            {"patient": patient, **scope(cohorts)},
        )
        return cur.fetchall()


def treatment_times(conn: psycopg.Connection, patient: str) -> tuple[datetime | None, list]:
    """(first radiotherapy time, immunotherapy dose times) of a patient."""
    rt_start = conn.execute(
        "SELECT min(occurred_at) FROM treatment_events WHERE patient = %s "
        "AND kind IN ('rt_course_start', 'rt_fraction')",
        (patient,),
    ).fetchone()[0]
    doses = [
        r[0]
        for r in conn.execute(
            "SELECT occurred_at FROM treatment_events WHERE patient = %s "
            "AND kind = 'immunotherapy_dose' ORDER BY occurred_at",
            (patient,),
        ).fetchall()
    ]
    return rt_start, doses


def patient_acquisitions(
    conn: psycopg.Connection, patient: str, *, cohorts: Cohorts
) -> list[dict[str, Any]]:
    """Imaging studies and biopsies in time order, with where their files are (none outside
    ``cohorts``)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"""
            SELECT event_id, kind, modality, acquired_at, purpose, study_uid, series_uids,
                   specimen_id, location, payload -> 'lesion' AS lesion, status
            FROM acquisitions WHERE patient = %(patient)s AND {in_scope("patient")}
            ORDER BY acquired_at
            """,
            {"patient": patient, **scope(cohorts)},
        )
        return cur.fetchall()


def dead_letter_keys(conn: psycopg.Connection) -> set[tuple[str, int, int]]:
    """(topic, partition, offset) of every dead letter."""
    return {
        (t, p, o)
        for t, p, o in conn.execute(
            "SELECT source_topic, source_partition, source_offset FROM dead_letters"
        ).fetchall()
    }


def stored_event_ids(conn: psycopg.Connection, patients: Sequence[str] | None) -> set[uuid.UUID]:
    """Event ids of the stored acquisitions and treatment events (of ``patients`` if given)."""
    params = {"all": patients is None, "patients": sorted(patients or ())}
    out: set[uuid.UUID] = set()
    for table in ("acquisitions", "treatment_events"):
        rows = conn.execute(
            f"SELECT event_id FROM {table} WHERE %(all)s OR patient = ANY(%(patients)s)", params
        ).fetchall()
        out.update(r[0] for r in rows)
    return out
