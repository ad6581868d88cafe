"""Every lesion of every scan: ``lesion_measurements`` (one row per tracked lesion per imaging
acquisition; a hypertable on TimescaleDB) and ``lesion_assessments`` (one row per acquisition:
RECIST 1.1 and iRECIST over its lesions, the sums derived from them, and the tracking state the
next acquisition starts from).

Writes are idempotent: rows are keyed by the acquisition (and the lesion's tracking UID), so a
redelivery or a re-score rewrites the same rows, and a lesion no longer tracked at a re-scored
acquisition is removed with it. Functions take an open psycopg connection and never commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from core.db.events import Cohorts, in_scope, scope
from schemas.results import LesionAssessment, LesionRow

LESION_COLUMNS = """
    l.source_event_id, l.observed_at, l.tracking_uid, l.tracking_id, l.label, l.organ,
    l.is_node, l.in_field, l.role, l.status, l.match, l.long_axis_mm, l.short_axis_mm,
    l.volume_ml, l.origin, l.mask_source, l.segment_number, l.reference_uid, l.series_uid,
    l.distance_mm, l.overlap, l.failure, l.model_name, l.model_version
"""
"""The ``lesion_measurements`` columns the reads return (``features`` only when asked)."""

ASSESSMENT_COLUMNS = """
    s.source_event_id, s.observed_at, s.timepoint, s.irecist_state, s.recist,
    s.target_response, s.nontarget_response, s.reason, s.sum_diameters_mm, s.nadir_mm,
    s.in_field_sum_mm, s.out_of_field_sum_mm, s.total_volume_ml, s.new_lesions, s.new_appeared,
    s.lesions_seen, s.lesions_not_evaluable, s.failures, s.model_name, s.model_version
"""


# ----------------------------------------------------------------------------- writes


def _value(v: Any) -> Any:
    return None if v is None else getattr(v, "value", v)


def store_lesions(
    conn: psycopg.Connection,
    source_event_id: uuid.UUID,
    patient: str,
    observed_at: datetime,
    rows: Sequence[LesionRow],
    assessment: LesionAssessment | None,
    model_name: str,
    model_version: str,
) -> None:
    """Store every tracked lesion of one acquisition and its assessment; a second call with
    the same acquisition rewrites the same rows (and drops lesions it no longer tracks)."""
    conn.execute(
        "DELETE FROM lesion_measurements WHERE source_event_id = %s "
        "AND NOT (tracking_uid = ANY(%s))",
        (source_event_id, [r.tracking_uid for r in rows]),
    )
    with conn.cursor() as cur:
        cur.executemany(
            """
            INSERT INTO lesion_measurements (
                source_event_id, tracking_uid, patient, observed_at, tracking_id, label, organ,
                is_node, in_field, role, status, match, long_axis_mm, short_axis_mm, volume_ml,
                origin, mask_source, segment_number, reference_uid, series_uid, distance_mm,
                overlap, failure, features, model_name, model_version)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
                    %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (source_event_id, tracking_uid, observed_at) DO UPDATE SET
                tracking_id = EXCLUDED.tracking_id, label = EXCLUDED.label,
                organ = EXCLUDED.organ, is_node = EXCLUDED.is_node,
                in_field = EXCLUDED.in_field, role = EXCLUDED.role, status = EXCLUDED.status,
                match = EXCLUDED.match, long_axis_mm = EXCLUDED.long_axis_mm,
                short_axis_mm = EXCLUDED.short_axis_mm, volume_ml = EXCLUDED.volume_ml,
                origin = EXCLUDED.origin, mask_source = EXCLUDED.mask_source,
                segment_number = EXCLUDED.segment_number,
                reference_uid = EXCLUDED.reference_uid, series_uid = EXCLUDED.series_uid,
                distance_mm = EXCLUDED.distance_mm, overlap = EXCLUDED.overlap,
                failure = EXCLUDED.failure, features = EXCLUDED.features,
                model_name = EXCLUDED.model_name, model_version = EXCLUDED.model_version
            """,
            [
                (
                    source_event_id,
                    r.tracking_uid,
                    patient,
                    observed_at,
                    r.tracking_id,
                    r.label,
                    _value(r.organ),
                    r.is_node,
                    r.in_field,
                    _value(r.role),
                    _value(r.status),
                    r.match,
                    r.long_axis_mm,
                    r.short_axis_mm,
                    r.volume_ml,
                    _value(r.origin),
                    r.mask_source,
                    r.segment_number,
                    r.reference_uid,
                    r.series_uid,
                    r.distance_mm,
                    r.overlap,
                    r.failure,
                    Jsonb(r.features),
                    model_name,
                    model_version,
                )
                for r in rows
            ],
        )
    if assessment is None:
        conn.execute(
            "DELETE FROM lesion_assessments WHERE source_event_id = %s", (source_event_id,)
        )
        return
    a = assessment
    conn.execute(
        """
        INSERT INTO lesion_assessments (
            source_event_id, patient, observed_at, timepoint, irecist_state, recist,
            target_response, nontarget_response, reason, sum_diameters_mm, nadir_mm,
            in_field_sum_mm, out_of_field_sum_mm, total_volume_ml, new_lesions, new_appeared,
            lesions_seen, lesions_not_evaluable, failures, tracking_state, model_name,
            model_version)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
                %s, %s)
        ON CONFLICT (source_event_id) DO UPDATE SET
            observed_at = EXCLUDED.observed_at, timepoint = EXCLUDED.timepoint,
            irecist_state = EXCLUDED.irecist_state, recist = EXCLUDED.recist,
            target_response = EXCLUDED.target_response,
            nontarget_response = EXCLUDED.nontarget_response, reason = EXCLUDED.reason,
            sum_diameters_mm = EXCLUDED.sum_diameters_mm, nadir_mm = EXCLUDED.nadir_mm,
            in_field_sum_mm = EXCLUDED.in_field_sum_mm,
            out_of_field_sum_mm = EXCLUDED.out_of_field_sum_mm,
            total_volume_ml = EXCLUDED.total_volume_ml, new_lesions = EXCLUDED.new_lesions,
            new_appeared = EXCLUDED.new_appeared, lesions_seen = EXCLUDED.lesions_seen,
            lesions_not_evaluable = EXCLUDED.lesions_not_evaluable,
            failures = EXCLUDED.failures, tracking_state = EXCLUDED.tracking_state,
            model_name = EXCLUDED.model_name, model_version = EXCLUDED.model_version
        """,
        (
            source_event_id,
            patient,
            observed_at,
            a.timepoint,
            int(a.irecist),
            _value(a.recist),
            _value(a.target),
            _value(a.nontarget),
            a.reason,
            a.sum_mm,
            a.nadir_mm,
            a.in_field_sum_mm,
            a.out_of_field_sum_mm,
            a.total_volume_ml,
            a.new_lesions,
            a.new_appeared,
            a.seen,
            a.not_evaluable,
            Jsonb(a.failures),
            Jsonb(a.tracking_state),
            a.model_name,
            a.model_version,
        ),
    )


# ----------------------------------------------------------------------------- reads


def tracking_state_before(
    conn: psycopg.Connection, patient: str, at: datetime, exclude: uuid.UUID | None = None
) -> dict[str, Any] | None:
    """The tracking state after the patient's latest assessed acquisition before ``at``
    (``exclude``: the acquisition being scored, so a re-score starts from the same state), or
    None when no acquisition of the patient has been assessed before."""
    row = conn.execute(
        """
        SELECT tracking_state FROM lesion_assessments
        WHERE patient = %s AND observed_at < %s AND source_event_id IS DISTINCT FROM %s
        ORDER BY observed_at DESC, source_event_id DESC
        LIMIT 1
        """,
        (patient, at, exclude),
    ).fetchone()
    return None if row is None else row[0]


def has_lesions(conn: psycopg.Connection, patient: str) -> bool:
    """Whether any acquisition of ``patient`` has tracked lesions."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM lesion_assessments WHERE patient = %s)", (patient,)
    ).fetchone()
    return bool(row and row[0])


def patient_lesions(
    conn: psycopg.Connection, patient: str, *, cohorts: Cohorts, features: bool = False
) -> list[dict[str, Any]]:
    """Every lesion row of ``patient``, oldest acquisition first, then by tracking id (L1, L2,
    ... in number order), with the acquisition's modality; none outside ``cohorts``."""
    extra = ", l.features" if features else ""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"""
            SELECT {LESION_COLUMNS}{extra}, a.modality
            FROM lesion_measurements l
            LEFT JOIN acquisitions a ON a.event_id = l.source_event_id
            WHERE l.patient = %(patient)s AND {in_scope("l.patient")}
            ORDER BY l.observed_at, l.source_event_id,
                     length(l.tracking_id), l.tracking_id
            """,
            {"patient": patient, **scope(cohorts)},
        )
        return cur.fetchall()


def lesions_of_source(
    conn: psycopg.Connection, source_event_id: uuid.UUID, *, cohorts: Cohorts
) -> list[dict[str, Any]]:
    """The lesion rows of one acquisition, by tracking id (none when its patient is outside
    ``cohorts``)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"""
            SELECT {LESION_COLUMNS}
            FROM lesion_measurements l
            WHERE l.source_event_id = %(source)s AND {in_scope("l.patient")}
            ORDER BY length(l.tracking_id), l.tracking_id
            """,
            {"source": source_event_id, **scope(cohorts)},
        )
        return cur.fetchall()


def patient_assessments(
    conn: psycopg.Connection, patient: str, *, cohorts: Cohorts, tracking_state: bool = False
) -> list[dict[str, Any]]:
    """Every per-acquisition assessment of ``patient``, oldest first; none outside
    ``cohorts``."""
    extra = ", s.tracking_state" if tracking_state else ""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"""
            SELECT {ASSESSMENT_COLUMNS}{extra}
            FROM lesion_assessments s
            WHERE s.patient = %(patient)s AND {in_scope("s.patient")}
            ORDER BY s.observed_at, s.source_event_id
            """,
            {"patient": patient, **scope(cohorts)},
        )
        return cur.fetchall()


def dicom_outputs(
    conn: psycopg.Connection, source_event_id: uuid.UUID, *, cohorts: Cohorts
) -> dict[str, Any]:
    """The SEG and SR irtmon wrote for an acquisition (``{"seg": {"path": ...}, ...}`` from the
    newest feature row's provenance), or ``{}`` (also when its patient is outside
    ``cohorts``)."""
    row = conn.execute(
        f"""
        SELECT provenance -> 'dicom_outputs' FROM acquisition_features
        WHERE source_event_id = %(source)s AND provenance ? 'dicom_outputs'
          AND {in_scope("patient")}
        ORDER BY created_at DESC LIMIT 1
        """,
        {"source": source_event_id, **scope(cohorts)},
    ).fetchone()
    return dict(row[0]) if row and row[0] else {}


def duplicate_lesion_rows(conn: psycopg.Connection, patients: Sequence[str] | None) -> int:
    """Lesion rows beyond the first of one acquisition and tracking UID (0 when idempotent)."""
    params = {"all": patients is None, "patients": sorted(patients or ())}
    return int(
        conn.execute(
            """
            SELECT coalesce(sum(n - 1), 0) FROM (
                SELECT count(*) AS n FROM lesion_measurements
                WHERE %(all)s OR patient = ANY(%(patients)s)
                GROUP BY source_event_id, tracking_uid
            ) g WHERE n > 1
            """,
            params,
        ).fetchone()[0]
    )


__all__ = [
    "dicom_outputs",
    "duplicate_lesion_rows",
    "has_lesions",
    "lesions_of_source",
    "patient_assessments",
    "patient_lesions",
    "store_lesions",
    "tracking_state_before",
]
