"""The ``dead_letters`` table's reads, payload retention, and replay records.

A dead letter is written by the worker (:func:`core.db.events.insert_dead_letter`). Its original
bytes (``payload``, ``message_key``) are readable only by the ``irtmon_deadletters`` role
(migration 0007) and are erased after the retention period (:func:`erase_payloads`); the
metadata (topic, partition, offset, error class, reason, patient) stays. Replays are recorded
in the audit log (``entity = 'dead_letter'``, ``action = 'dead_letter.replayed'``). Functions
take an open connection and never commit; the caller owns the transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from core.db import audit

ENTITY = "dead_letter"
REPLAYED = "dead_letter.replayed"


@dataclass(frozen=True)
class DeadLetterFilter:
    """Which dead letters to list or replay; every field unset matches all."""

    topic: str | None = None
    error_class: str | None = None
    since: datetime | None = None
    patient: str | None = None
    limit: int = 100


@dataclass(frozen=True)
class DeadLetterRow:
    """One dead letter; ``payload`` and ``key`` only where asked for (and not yet erased)."""

    event_id: uuid.UUID
    source_topic: str
    source_partition: int
    source_offset: int
    failed_event_id: uuid.UUID | None
    patient: str | None
    error_class: str
    reason: str
    dead_lettered_at: datetime
    payload_bytes: int | None
    payload_erased_at: datetime | None
    payload: bytes | None = None
    key: bytes | None = None


_COLUMNS = (
    "event_id, source_topic, source_partition, source_offset, failed_event_id, patient, "
    "error_class, reason, dead_lettered_at, octet_length(payload), payload_erased_at"
)


def _row(values: tuple[Any, ...], with_payload: bool) -> DeadLetterRow:
    if with_payload:
        *meta, payload, key = values
        return DeadLetterRow(
            *meta,
            payload=bytes(payload) if payload is not None else None,
            key=bytes(key) if key is not None else None,
        )
    return DeadLetterRow(*values)


def find(
    conn: psycopg.Connection, filters: DeadLetterFilter, *, with_payload: bool = False
) -> list[DeadLetterRow]:
    """Dead letters matching ``filters``, oldest first (at most ``filters.limit``)."""
    columns = _COLUMNS + (", payload, message_key" if with_payload else "")
    rows = conn.execute(
        f"""
        SELECT {columns} FROM dead_letters
        WHERE (%(topic)s::text IS NULL OR source_topic = %(topic)s)
          AND (%(error_class)s::text IS NULL OR error_class = %(error_class)s)
          AND (%(since)s::timestamptz IS NULL OR dead_lettered_at >= %(since)s)
          AND (%(patient)s::text IS NULL OR patient = %(patient)s)
        ORDER BY dead_lettered_at, source_topic, source_partition, source_offset
        LIMIT %(limit)s
        """,
        {
            "topic": filters.topic,
            "error_class": filters.error_class,
            "since": filters.since,
            "patient": filters.patient,
            "limit": filters.limit,
        },
    ).fetchall()
    return [_row(r, with_payload) for r in rows]


def get(conn: psycopg.Connection, event_id: uuid.UUID) -> DeadLetterRow | None:
    """One dead letter with its bytes (None where they were erased), or None if unknown."""
    row = conn.execute(
        f"SELECT {_COLUMNS}, payload, message_key FROM dead_letters WHERE event_id = %s",
        (event_id,),
    ).fetchone()
    return None if row is None else _row(row, True)


def erase_payloads(conn: psycopg.Connection, older_than: datetime) -> int:
    """Erase the original bytes of dead letters from before ``older_than``; how many.

    Reads no payload (the worker's role may not): ``payload_erased_at`` says what is left."""
    cur = conn.execute(
        """
        UPDATE dead_letters SET payload = NULL, message_key = NULL, payload_erased_at = now()
        WHERE dead_lettered_at < %s AND payload_erased_at IS NULL
        """,
        (older_than,),
    )
    return cur.rowcount


def replayed(conn: psycopg.Connection, event_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    """Those of ``event_ids`` (dead-letter ids) whose replay is recorded in the audit log."""
    ids = [str(e) for e in event_ids]
    rows = conn.execute(
        "SELECT DISTINCT entity_id FROM audit_log "
        "WHERE entity = %s AND action = %s AND entity_id = ANY(%s)",
        (ENTITY, REPLAYED, ids),
    ).fetchall()
    return {uuid.UUID(r[0]) for r in rows}


def record_replay(
    conn: psycopg.Connection, letter: DeadLetterRow, *, actor: str, detail: dict[str, Any]
) -> int:
    """Audit one replay of ``letter`` (through the one audit writer); the audit row's id."""
    return audit.write(
        conn,
        actor=actor,
        action=REPLAYED,
        entity=ENTITY,
        entity_id=str(letter.event_id),
        patient=letter.patient,
        detail={
            "source_topic": letter.source_topic,
            "source_partition": letter.source_partition,
            "source_offset": letter.source_offset,
            "error_class": letter.error_class,
            "failed_event_id": str(letter.failed_event_id) if letter.failed_event_id else None,
            **detail,
        },
    )
