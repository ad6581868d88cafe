"""The ``audit_log`` table (append-only): the one audit writer, and the alert outbox's reads.

Every audited change in irtmon goes through :func:`write`: logins, user changes, model
promotions, alert changes (``alert.*`` with the published Alert in ``detail.alert``: the outbox
that :mod:`core.delivery` delivers from) and delivery receipts. Functions take an open
connection and never commit; the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from core.db.events import Cohorts, in_scope, scope

RECEIPT_ENTITY = "alert_delivery"
"""``entity`` of a delivery receipt; its ``entity_id`` is ``<audit id>/<sink>``."""
SENT = "delivery.sent"
FAILED = "delivery.failed"


def write(
    conn: psycopg.Connection,
    *,
    actor: str,
    action: str,
    entity: str,
    entity_id: str | None = None,
    patient: str | None = None,
    detail: Mapping[str, Any] | None = None,
    at: datetime | None = None,
) -> int:
    """Append one audit row; returns its id. ``at`` defaults to the transaction's time."""
    row = conn.execute(
        """
        INSERT INTO audit_log (at, actor, action, entity, entity_id, patient, detail)
        VALUES (coalesce(%s, now()), %s, %s, %s, %s, %s, %s)
        RETURNING id
        """,
        (at, actor, action, entity, entity_id, patient, Jsonb(dict(detail or {}))),
    ).fetchone()
    return int(row[0])


def write_receipt(
    conn: psycopg.Connection,
    audit_id: int,
    sink: str,
    patient: str | None,
    *,
    ok: bool,
    attempt: int,
    error: str | None,
    at: datetime,
) -> None:
    """Record one delivery attempt of the alert change ``audit_id`` to ``sink``."""
    write(
        conn,
        actor="irtmon.delivery",
        action=SENT if ok else FAILED,
        entity=RECEIPT_ENTITY,
        entity_id=f"{audit_id}/{sink}",
        patient=patient,
        detail={
            "audit_id": audit_id,
            "sink": sink,
            "attempt": attempt,
            **({"error": error} if error else {}),
        },
        at=at,
    )


def pending_deliveries(
    conn: psycopg.Connection, sink: str, actions: Sequence[str], since: datetime, limit: int = 100
) -> list[dict[str, Any]]:
    """Alert changes (audit rows with ``detail.alert``) not yet delivered to ``sink``, oldest
    first, with their failed attempts so far (``failures``, ``last_failure``)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            """
            SELECT a.id, a.action, a.patient, a.detail -> 'alert' AS alert,
                   coalesce(f.failures, 0) AS failures, f.last_failure
            FROM audit_log a
            LEFT JOIN LATERAL (
                SELECT count(*) AS failures, max(d.at) AS last_failure
                FROM audit_log d
                WHERE d.entity = %(receipt)s AND d.entity_id = a.id::text || '/' || %(sink)s
                  AND d.action = %(failed)s
            ) f ON true
            WHERE a.entity = 'alert' AND a.action = ANY(%(actions)s) AND a.at >= %(since)s
              AND a.detail ? 'alert'
              AND NOT EXISTS (
                SELECT 1 FROM audit_log d
                WHERE d.entity = %(receipt)s AND d.entity_id = a.id::text || '/' || %(sink)s
                  AND d.action = %(sent)s)
            ORDER BY a.id
            LIMIT %(limit)s
            """,
            {
                "sink": sink,
                "actions": list(actions),
                "since": since,
                "limit": limit,
                "receipt": RECEIPT_ENTITY,
                "sent": SENT,
                "failed": FAILED,
            },
        )
        return cur.fetchall()


OUTBOX_LOCK = 0x1A7_A1E7
"""Advisory lock key: one delivery round at a time across workers."""


def try_lock_outbox(conn: psycopg.Connection) -> bool:
    """Take the outbox's session-level advisory lock without waiting; True if taken."""
    return bool(conn.execute("SELECT pg_try_advisory_lock(%s)", (OUTBOX_LOCK,)).fetchone()[0])


def unlock_outbox(conn: psycopg.Connection) -> None:
    conn.execute("SELECT pg_advisory_unlock(%s)", (OUTBOX_LOCK,))


def alert_actions(
    conn: psycopg.Connection, patient: str, *, cohorts: Cohorts
) -> list[dict[str, Any]]:
    """Audit rows of the changes of a patient's alerts, in time order; none outside
    ``cohorts``."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT at, actor, action, entity_id AS alert_id, detail FROM audit_log "
            f"WHERE patient = %(patient)s AND entity = 'alert' AND {in_scope('patient')} "
            "ORDER BY at, id",
            {"patient": patient, **scope(cohorts)},
        )
        return cur.fetchall()
