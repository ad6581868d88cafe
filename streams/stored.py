"""Stored scores read back as :class:`schemas.TimepointScore` records (for exports)."""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

from schemas import TimepointScore

__all__ = ["patient_scores"]


def patient_scores(
    conn: psycopg.Connection, patient: str, names: Sequence[str] | None = None
) -> list[TimepointScore]:
    """Every stored score of ``patient`` (optionally only ``names``), oldest first."""
    rows = conn.execute(
        """
        SELECT event_id, patient, observed_at, source_event_id, score_name, value, lower, upper,
               unit, model_name, model_version, inputs
        FROM timepoint_scores
        WHERE patient = %s AND (%s::text[] IS NULL OR score_name = ANY(%s::text[]))
        ORDER BY observed_at, score_name, model_name, model_version
        """,
        (patient, list(names) if names else None, list(names) if names else None),
    ).fetchall()
    return [
        TimepointScore(
            event_id=r[0],
            patient=r[1],
            occurred_at=r[2],
            source_event_id=r[3],
            score_name=r[4],
            value=r[5],
            lower=r[6],
            upper=r[7],
            unit=r[8],
            model_name=r[9],
            model_version=r[10],
            inputs=list(r[11])[:256],
        )
        for r in rows
    ]
