"""The ``alerts`` table: rows of the one alert lifecycle (:mod:`core.alerts`) and the app's
alert reads. Functions take an open connection and never commit.

One active (open or acknowledged) alert per patient and kind (a unique index): updated in
place, never duplicated.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from core.db.events import Cohorts, scope
from schemas import Alert, AlertKind, AlertStatus

ACTIVE = (AlertStatus.OPEN.value, AlertStatus.ACKNOWLEDGED.value)


def to_alert(row: Mapping[str, Any]) -> Alert:
    """An ``alerts`` row as the Alert event that is published and delivered."""
    return Alert(
        event_id=row["alert_id"],
        patient=row["patient"],
        occurred_at=row["updated_at"],
        kind=AlertKind(row["kind"]),
        status=AlertStatus(row["status"]),
        probability=row["probability"],
        change_at=row["change_at"],
        summary=row["summary"],
        recommendation=row["recommendation"],
        signals=list(row["signals"]),
        model_versions=dict(row["model_versions"]),
    )


def by_id(
    conn: psycopg.Connection,
    alert_id: uuid.UUID | str,
    *,
    lock: bool = False,
    cohorts: Cohorts = None,
) -> dict[str, Any] | None:
    """The alert's row (locked for update when asked), if ``cohorts`` lets the user see its
    patient (None: every cohort)."""
    try:
        aid = uuid.UUID(str(alert_id))
    except ValueError:
        return None
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT a.* FROM alerts a JOIN patients p ON p.pseudonym = a.patient "
            "WHERE a.alert_id = %(id)s AND (%(all)s OR p.cohort = ANY(%(cohorts)s))"
            + (" FOR UPDATE OF a" if lock else ""),
            {"id": aid, **scope(cohorts)},
        )
        return cur.fetchone()


def active(conn: psycopg.Connection, patient: str, kind: AlertKind) -> dict[str, Any] | None:
    """The patient's open or acknowledged alert of ``kind``, locked for update."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT * FROM alerts WHERE patient = %s AND kind = %s AND status = ANY(%s) FOR UPDATE",
            (patient, kind.value, list(ACTIVE)),
        )
        return cur.fetchone()


def exists(conn: psycopg.Connection, alert_id: uuid.UUID) -> bool:
    return (
        conn.execute("SELECT 1 FROM alerts WHERE alert_id = %s", (alert_id,)).fetchone() is not None
    )


def insert_open(
    conn: psycopg.Connection,
    alert_id: uuid.UUID,
    patient: str,
    kind: AlertKind,
    content: Mapping[str, Any],
    now: datetime,
) -> dict[str, Any] | None:
    """Open a new alert; None when a concurrent evaluation opened it first."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            """
            INSERT INTO alerts (alert_id, patient, kind, status, probability, change_at,
                                summary, recommendation, signals, model_versions,
                                opened_at, updated_at)
            VALUES (%s, %s, %s, 'open', %s, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT DO NOTHING
            RETURNING *
            """,
            (
                alert_id,
                patient,
                kind.value,
                content["probability"],
                content["change_at"],
                content["summary"],
                content["recommendation"],
                list(content["signals"]),
                Jsonb(dict(content["model_versions"])),
                now,
                now,
            ),
        )
        return cur.fetchone()


def update_content(
    conn: psycopg.Connection, alert_id: uuid.UUID, content: Mapping[str, Any], now: datetime
) -> dict[str, Any]:
    """Replace what an active alert says (probability, summary, signals, models)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            """
            UPDATE alerts SET probability = %s, summary = %s, recommendation = %s,
                              signals = %s, model_versions = %s, updated_at = %s
            WHERE alert_id = %s
            RETURNING *
            """,
            (
                content["probability"],
                content["summary"],
                content["recommendation"],
                list(content["signals"]),
                Jsonb(dict(content["model_versions"])),
                now,
                alert_id,
            ),
        )
        return cur.fetchone()


def set_status(
    conn: psycopg.Connection,
    alert_id: uuid.UUID,
    status: AlertStatus,
    by: str,
    at: datetime,
    reason: str | None = None,
) -> dict[str, Any]:
    """Move an alert to ``status``: acknowledged (by, at), or closed (resolved or dismissed,
    with the reason; a closed alert counts as seen by its closer if nobody acknowledged it)."""
    if status is AlertStatus.ACKNOWLEDGED:
        sets, params = "acknowledged_by = %s, acknowledged_at = %s", (by, at)
    else:
        sets = (
            "closed_by = %s, closed_at = %s, close_reason = %s, "
            "acknowledged_by = coalesce(acknowledged_by, %s), "
            "acknowledged_at = coalesce(acknowledged_at, %s)"
        )
        params = (by, at, reason, by, at)
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"UPDATE alerts SET status = %s, {sets}, updated_at = %s WHERE alert_id = %s "
            "RETURNING *",
            (status.value, *params, at, alert_id),
        )
        return cur.fetchone()


# ----------------------------------------------------------------------------- app reads

_COLUMNS = """
    a.alert_id, a.patient, p.cohort, p.arm, a.kind, a.status, a.probability, a.change_at,
    a.summary, a.recommendation, a.signals, a.model_versions, a.opened_at, a.updated_at,
    a.acknowledged_by, a.acknowledged_at, a.closed_by, a.closed_at, a.close_reason
"""


def patient_alerts(
    conn: psycopg.Connection, patient: str, *, cohorts: Cohorts
) -> list[dict[str, Any]]:
    """Every alert of a patient, newest first; none outside ``cohorts``."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"SELECT {_COLUMNS} FROM alerts a JOIN patients p ON p.pseudonym = a.patient "
            "WHERE a.patient = %(patient)s AND (%(all)s OR p.cohort = ANY(%(cohorts)s)) "
            "ORDER BY a.opened_at DESC",
            {"patient": patient, **scope(cohorts)},
        )
        return cur.fetchall()


def inbox(
    conn: psycopg.Connection,
    cohorts: Cohorts,
    statuses: Sequence[str] = ACTIVE,
) -> list[dict[str, Any]]:
    """Alerts of the visible patients in the given statuses, most probable first."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"""
            SELECT {_COLUMNS} FROM alerts a JOIN patients p ON p.pseudonym = a.patient
            WHERE a.status = ANY(%(statuses)s) AND (%(all)s OR p.cohort = ANY(%(cohorts)s))
            ORDER BY a.status = 'open' DESC, a.probability DESC, a.opened_at DESC
            """,
            {"statuses": list(statuses), **scope(cohorts)},
        )
        return cur.fetchall()


def patient_alert_ids(conn: psycopg.Connection, patients: Sequence[str]) -> list[str]:
    """Ids of the alerts of ``patients``, oldest first."""
    rows = conn.execute(
        "SELECT alert_id::text FROM alerts WHERE patient = ANY(%s) ORDER BY opened_at, alert_id",
        (list(patients),),
    ).fetchall()
    return [r[0] for r in rows]
