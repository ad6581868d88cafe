"""Stored scores read back as :class:`schemas.TimepointScore` records (for exports and for
redeliveries)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from schemas import TimepointScore

__all__ = ["SCORE_COLUMNS", "patient_scores", "score_from_row"]

# The ``timepoint_scores`` columns that :func:`score_from_row` reads, in its order.
SCORE_COLUMNS = """
    event_id, patient, observed_at, source_event_id, score_name, value, lower, upper, unit,
    model_name, model_version, inputs
"""


def score_from_row(row: Sequence[Any]) -> TimepointScore:
    """A ``timepoint_scores`` row selected as :data:`SCORE_COLUMNS` as its event."""
    return TimepointScore(
        event_id=row[0],
        patient=row[1],
        occurred_at=row[2],
        source_event_id=row[3],
        score_name=row[4],
        value=row[5],
        lower=row[6],
        upper=row[7],
        unit=row[8],
        model_name=row[9],
        model_version=row[10],
        inputs=list(row[11])[:256],
    )


def patient_scores(
    conn: psycopg.Connection, patient: str, names: Sequence[str] | None = None
) -> list[TimepointScore]:
    """Every stored score of ``patient`` (optionally only ``names``), oldest first."""
    rows = conn.execute(
        f"""
        SELECT {SCORE_COLUMNS}
        FROM timepoint_scores
        WHERE patient = %s AND (%s::text[] IS NULL OR score_name = ANY(%s::text[]))
        ORDER BY observed_at, score_name, model_name, model_version
        """,
        (patient, list(names) if names else None, list(names) if names else None),
    ).fetchall()
    return [score_from_row(r) for r in rows]
