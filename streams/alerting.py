"""The seam between the change-point agent and the decision layer.

The change-point issue replaces :func:`evaluate` with the detectors (BOCPD, CUSUM, iRECIST)
and the combined rule, and adds alert delivery. Until then no alert is raised.
"""

from __future__ import annotations

import psycopg

from schemas import Alert


def evaluate(conn: psycopg.Connection, patient: str) -> list[Alert]:
    """Re-evaluate ``patient``'s stored series; return alerts opened or updated (none yet)."""
    del conn, patient
    return []
