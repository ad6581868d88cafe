"""Read queries of the monitoring app. Pages call these; no SQL lives in a page file."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row


def patient_scores(
    conn: psycopg.Connection, patient: str, score_name: str | None = None
) -> list[dict[str, Any]]:
    """A patient's timepoint scores in time order (all model versions), as dicts."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            """
            SELECT observed_at, score_name, value, lower, upper, unit, model_name, model_version,
                   source_event_id, inputs, event_id
            FROM timepoint_scores
            WHERE patient = %s AND (%s::text IS NULL OR score_name = %s)
            ORDER BY observed_at, score_name, model_name, model_version
            """,
            (patient, score_name, score_name),
        )
        return cur.fetchall()


def cohort_daily(conn: psycopg.Connection, since: datetime) -> list[dict[str, Any]]:
    """Daily cohort summary per score (continuous aggregate on TimescaleDB, a view otherwise)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT day, score_name, n_scores, mean_value, min_value, max_value "
            "FROM cohort_daily WHERE day >= %s ORDER BY day, score_name",
            (since,),
        )
        return cur.fetchall()
