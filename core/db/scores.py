"""Scores, tumour measurements and features: ``timepoint_scores`` (a hypertable on
TimescaleDB), ``tumour_measurements``, ``acquisition_features`` and the ``cohort_daily``
aggregate.

Writes are idempotent upserts (a redelivery updates the same rows in place). Functions take an
open psycopg connection and never commit; the caller owns the transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from core.db import lesions
from core.db.events import Cohorts, in_scope, mark_scored, scope, upsert_patient, upsert_patients
from schemas import TimepointScore
from schemas.enums import IRECIST_SCORE
from schemas.results import FeatureSet, Measurement, Outcome

SCORE_COLUMNS = """
    event_id, patient, observed_at, source_event_id, score_name, value, lower, upper, unit,
    model_name, model_version, inputs
"""
"""The ``timepoint_scores`` columns that :func:`score_from_row` reads, in its order."""


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


# ----------------------------------------------------------------------------- writes


_UPSERT_SCORE = """
    INSERT INTO timepoint_scores (event_id, patient, observed_at, source_event_id, score_name,
                                  value, lower, upper, unit, model_name, model_version, inputs)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
    ON CONFLICT (event_id, observed_at) DO UPDATE SET
        value = EXCLUDED.value, lower = EXCLUDED.lower, upper = EXCLUDED.upper,
        unit = EXCLUDED.unit, inputs = EXCLUDED.inputs
"""


def _score_row(score: TimepointScore) -> tuple[Any, ...]:
    return (
        score.event_id,
        score.patient,
        score.occurred_at,
        score.source_event_id,
        score.score_name,
        score.value,
        score.lower,
        score.upper,
        score.unit,
        score.model_name,
        score.model_version,
        list(score.inputs),
    )


def upsert_score(conn: psycopg.Connection, score: TimepointScore) -> None:
    """Store one timepoint score; a second delivery updates the same row in place."""
    upsert_patient(conn, score.patient, score.occurred_at)
    conn.execute(_UPSERT_SCORE, _score_row(score))


_UPSERT_SCORES = """
    INSERT INTO timepoint_scores (event_id, patient, observed_at, source_event_id, score_name,
                                  value, lower, upper, unit, model_name, model_version, inputs)
    SELECT event_id, patient, observed_at, source_event_id, score_name, value, lower, upper,
           unit, model_name, model_version, ARRAY(SELECT jsonb_array_elements_text(inputs))
    FROM unnest(%s::uuid[], %s::text[], %s::timestamptz[], %s::uuid[], %s::text[],
                %s::float8[], %s::float8[], %s::float8[], %s::text[], %s::text[], %s::text[],
                %s::jsonb[])
         AS batch(event_id, patient, observed_at, source_event_id, score_name, value, lower,
                  upper, unit, model_name, model_version, inputs)
    ON CONFLICT (event_id, observed_at) DO UPDATE SET
        value = EXCLUDED.value, lower = EXCLUDED.lower, upper = EXCLUDED.upper,
        unit = EXCLUDED.unit, inputs = EXCLUDED.inputs
"""


def upsert_scores(conn: psycopg.Connection, batch: Sequence[TimepointScore]) -> None:
    """Store a batch of timepoint scores as :func:`upsert_score` for each, in order, would,
    in one statement (the batch's columns as arrays): the same event id twice in the batch
    leaves its last delivery, as two upserts would."""
    if not batch:
        return
    upsert_patients(conn, ((s.patient, s.occurred_at) for s in batch))
    last: dict[tuple[uuid.UUID, datetime], TimepointScore] = {}
    for s in batch:  # one row may be upserted only once per statement
        last[(s.event_id, s.occurred_at)] = s
    rows = list(last.values())
    conn.execute(
        _UPSERT_SCORES,
        (
            [s.event_id for s in rows],
            [s.patient for s in rows],
            [s.occurred_at for s in rows],
            [s.source_event_id for s in rows],
            [s.score_name for s in rows],
            [s.value for s in rows],
            [s.lower for s in rows],
            [s.upper for s in rows],
            [s.unit for s in rows],
            [s.model_name for s in rows],
            [s.model_version for s in rows],
            [Jsonb(list(s.inputs)) for s in rows],
        ),
    )


def upsert_measurement(
    conn: psycopg.Connection,
    source_event_id: uuid.UUID,
    patient: str,
    observed_at: datetime,
    m: Measurement,
) -> None:
    """Store one lesion measurement of an acquisition; a redelivery updates it in place."""
    conn.execute(
        """
        INSERT INTO tumour_measurements (source_event_id, lesion_id, patient, observed_at,
            series_uid, volume_ml, longest_diameter_mm, mask_source, registration_quality,
            model_name, model_version)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (source_event_id, lesion_id, observed_at) DO UPDATE SET
            volume_ml = EXCLUDED.volume_ml,
            longest_diameter_mm = EXCLUDED.longest_diameter_mm,
            mask_source = EXCLUDED.mask_source,
            registration_quality = EXCLUDED.registration_quality,
            model_name = EXCLUDED.model_name, model_version = EXCLUDED.model_version
        """,
        (
            source_event_id,
            m.lesion_id,
            patient,
            observed_at,
            m.series_uid,
            m.volume_ml,
            m.longest_diameter_mm,
            m.mask_source,
            m.registration_quality,
            m.model_name,
            m.model_version,
        ),
    )


def upsert_features(
    conn: psycopg.Connection,
    source_event_id: uuid.UUID,
    patient: str,
    observed_at: datetime,
    features: FeatureSet,
) -> None:
    """Store an acquisition's features and provenance (one row per extractor version)."""
    conn.execute(
        """
        INSERT INTO acquisition_features (source_event_id, patient, observed_at, extractor,
                                          extractor_version, features, provenance)
        VALUES (%s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (source_event_id, extractor, extractor_version) DO UPDATE SET
            features = EXCLUDED.features, provenance = EXCLUDED.provenance
        """,
        (
            source_event_id,
            patient,
            observed_at,
            features.extractor,
            features.version,
            Jsonb(features.values),
            Jsonb(features.provenance),
        ),
    )


def store_outcome(conn: psycopg.Connection, outcome: Outcome) -> None:
    """Store scores, measurements, features, every tracked lesion and their assessment
    (:func:`core.db.lesions.store_lesions`), and mark the acquisition scored."""
    for m in outcome.measurements:
        upsert_measurement(conn, outcome.source_event_id, outcome.patient, outcome.observed_at, m)
    if outcome.assessment is not None:
        upsert_patient(conn, outcome.patient, outcome.observed_at)
        lesions.store_lesions(
            conn,
            outcome.source_event_id,
            outcome.patient,
            outcome.observed_at,
            outcome.lesions,
            outcome.assessment,
            outcome.assessment.model_name,
            outcome.assessment.model_version,
        )
    for score in outcome.scores:
        upsert_score(conn, score)
    if outcome.features is not None:
        upsert_features(
            conn, outcome.source_event_id, outcome.patient, outcome.observed_at, outcome.features
        )
    mark_scored(conn, outcome.source_event_id)


# ----------------------------------------------------------------------------- reads


def scores_of_source(conn: psycopg.Connection, source_event_id: uuid.UUID) -> list[TimepointScore]:
    """Every stored score computed from one acquisition or biopsy, by score name."""
    rows = conn.execute(
        f"SELECT {SCORE_COLUMNS} FROM timepoint_scores WHERE source_event_id = %s "
        "ORDER BY score_name",
        (source_event_id,),
    ).fetchall()
    return [score_from_row(r) for r in rows]


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


def patient_score_rows(
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


def patient_scores_with_source(
    conn: psycopg.Connection, patient: str, *, cohorts: Cohorts
) -> list[dict[str, Any]]:
    """Every score of a patient (all model versions) with the kind and modality of the
    acquisition it was computed from (none outside ``cohorts``)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"""
            SELECT s.observed_at, s.score_name, s.value, s.lower, s.upper, s.unit, s.model_name,
                   s.model_version, s.source_event_id, s.inputs,
                   a.kind AS source_kind, a.modality AS source_modality,
                   a.series_uids AS source_series, a.specimen_id
            FROM timepoint_scores s
            LEFT JOIN acquisitions a ON a.event_id = s.source_event_id
            WHERE s.patient = %(patient)s AND {in_scope("s.patient")}
            ORDER BY s.observed_at, s.score_name, s.model_name, s.model_version
            """,
            {"patient": patient, **scope(cohorts)},
        )
        return cur.fetchall()


def latest_scores_by_source(
    conn: psycopg.Connection,
    patient: str,
    names: Sequence[str],
    until: datetime | None = None,
) -> list[dict[str, Any]]:
    """For each source event and score name among ``names``: the stored value of the promoted
    model version if it scored it, else of the newest (``source_event_id``, ``observed_at``,
    ``score_name``, ``value``, ``model``), up to ``until`` when given."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            """
            SELECT DISTINCT ON (s.source_event_id, s.score_name)
                   s.source_event_id, s.observed_at, s.score_name, s.value,
                   s.model_name || '/' || s.model_version AS model
            FROM timepoint_scores s
            LEFT JOIN model_registry m
                   ON m.name = s.model_name AND m.version = s.model_version
            WHERE s.patient = %s AND s.score_name = ANY(%s)
                  AND (%s::timestamptz IS NULL OR s.observed_at <= %s)
            ORDER BY s.source_event_id, s.score_name, s.observed_at,
                     coalesce(m.promoted, false) DESC, s.created_at DESC, s.model_version DESC
            """,
            (patient, list(names), until, until),
        )
        return cur.fetchall()


def patients_with_burden(
    conn: psycopg.Connection, patients: Sequence[str], burden_scores: Sequence[str]
) -> set[str]:
    """Those of ``patients`` with a tumour measurement or a score named in ``burden_scores``
    (the patients whose burden has been assessed at least once), in one query."""
    rows = conn.execute(
        """
        SELECT DISTINCT patient FROM tumour_measurements WHERE patient = ANY(%(p)s)
        UNION
        SELECT DISTINCT patient FROM timepoint_scores
        WHERE patient = ANY(%(p)s) AND score_name = ANY(%(names)s)
        """,
        {"p": list(patients), "names": list(burden_scores)},
    ).fetchall()
    return {r[0] for r in rows}


def measurements_by_source(conn: psycopg.Connection, patient: str) -> list[dict[str, Any]]:
    """Per acquisition: time, sum of longest diameters and of volumes (with the counts of
    lesions that have each), the lesion ids and the newest measuring model."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            """
            SELECT source_event_id, min(observed_at) AS observed_at,
                   sum(longest_diameter_mm) AS sld, count(longest_diameter_mm) AS n_d,
                   sum(volume_ml) AS vol, count(volume_ml) AS n_v,
                   array_agg(lesion_id ORDER BY lesion_id) AS lesions,
                   max(model_name || '/' || model_version) AS model
            FROM tumour_measurements
            WHERE patient = %s
            GROUP BY source_event_id
            ORDER BY 2, 1
            """,
            (patient,),
        )
        return cur.fetchall()


def target_measurements(
    conn: psycopg.Connection, patient: str, until: datetime | None = None
) -> list[tuple[uuid.UUID, datetime, str, float, float, dict[str, Any] | None]]:
    """The patient's scored scans with the target lesion's newest measurement and the newest
    stored features: (event id, time, modality, volume ml, longest diameter mm, features)."""
    until_clause = "" if until is None else " AND a.acquired_at <= %(until)s"
    return conn.execute(
        f"""
        SELECT a.event_id, a.acquired_at, a.modality, m.volume_ml, m.longest_diameter_mm,
               (SELECT f.features FROM acquisition_features f
                WHERE f.source_event_id = a.event_id ORDER BY f.created_at DESC LIMIT 1)
        FROM acquisitions a
        JOIN LATERAL (
            SELECT volume_ml, longest_diameter_mm FROM tumour_measurements t
            WHERE t.source_event_id = a.event_id AND t.lesion_id = 'target'
            ORDER BY t.created_at DESC LIMIT 1
        ) m ON true
        WHERE a.patient = %(patient)s AND a.kind = 'imaging'{until_clause}
        ORDER BY a.acquired_at, a.event_id
        """,
        {"patient": patient, "until": until},
    ).fetchall()


def pathology_values(
    conn: psycopg.Connection, patient: str, until: datetime | None
) -> list[tuple[datetime, dict[str, float]]]:
    """Per biopsy (oldest first): its time and the newest value of each ``pathology*`` score."""
    rows = conn.execute(
        """
        SELECT DISTINCT ON (source_event_id, score_name)
               source_event_id, observed_at, score_name, value
        FROM timepoint_scores
        WHERE patient = %s AND score_name LIKE 'pathology%%'
              AND (%s::timestamptz IS NULL OR observed_at <= %s)
        ORDER BY source_event_id, score_name, created_at DESC
        """,
        (patient, until, until),
    ).fetchall()
    by_event: dict[uuid.UUID, tuple[datetime, dict[str, float]]] = {}
    for event_id, at, name, value in rows:
        by_event.setdefault(event_id, (at, {}))[1][name] = float(value)
    return sorted(by_event.values(), key=lambda v: v[0])


def patient_burden(
    conn: psycopg.Connection, patient: str, *, cohorts: Cohorts
) -> list[dict[str, Any]]:
    """Tumour burden per scan: RECIST sum of longest diameters and total volume of the lesions
    measured on that acquisition (by the newest model version that measured it); none outside
    ``cohorts``."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"""
            WITH m AS (
                SELECT *, rank() OVER (PARTITION BY source_event_id
                                       ORDER BY model_version DESC, model_name) AS r
                FROM tumour_measurements
                WHERE patient = %(patient)s AND {in_scope("patient")}
            )
            SELECT m.source_event_id, min(m.observed_at) AS observed_at,
                   sum(m.longest_diameter_mm) AS sum_diameters_mm,
                   sum(m.volume_ml) AS total_volume_ml, count(*) AS n_lesions,
                   min(m.model_name) AS model_name, min(m.model_version) AS model_version,
                   array_agg(DISTINCT m.series_uid) FILTER (WHERE m.series_uid IS NOT NULL)
                       AS series_uids,
                   string_agg(DISTINCT m.mask_source, ', ') AS mask_sources,
                   min(a.modality) AS modality
            FROM m LEFT JOIN acquisitions a ON a.event_id = m.source_event_id
            WHERE m.r = 1
            GROUP BY m.source_event_id
            ORDER BY observed_at
            """,
            {"patient": patient, **scope(cohorts)},
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


def cohort_overview(conn: psycopg.Connection, cohorts: Cohorts) -> list[dict[str, Any]]:
    """One row per visible patient: last scan, current response probability and band (the
    promoted model version when it has scored the patient, else the newest), its trend, the
    latest iRECIST state code, and active alerts."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            """
            WITH pts AS (
                SELECT pseudonym, cohort, arm, first_seen_at FROM patients
                WHERE %(all)s OR cohort = ANY(%(cohorts)s)
            ), rp AS (
                SELECT s.patient, s.observed_at, s.value, s.lower, s.upper, s.model_name,
                       s.model_version, s.created_at, coalesce(m.promoted, false) AS promoted
                FROM timepoint_scores s
                JOIN pts ON pts.pseudonym = s.patient
                LEFT JOIN model_registry m ON m.name = s.model_name AND m.version = s.model_version
                WHERE s.score_name = 'response_probability'
            ), latest AS (
                SELECT DISTINCT ON (patient) patient, observed_at, value, lower, upper,
                       model_name, model_version
                FROM rp ORDER BY patient, promoted DESC, observed_at DESC, created_at DESC
            ), trend AS (
                SELECT rp.patient, array_agg(rp.value ORDER BY rp.observed_at) AS trend
                FROM rp JOIN latest l ON l.patient = rp.patient
                     AND l.model_name = rp.model_name AND l.model_version = rp.model_version
                GROUP BY rp.patient
            ), irecist AS (
                SELECT DISTINCT ON (s.patient) s.patient, s.value
                FROM timepoint_scores s JOIN pts ON pts.pseudonym = s.patient
                WHERE s.score_name = %(irecist)s
                ORDER BY s.patient, s.observed_at DESC, s.created_at DESC
            ), scans AS (
                SELECT a.patient, max(a.acquired_at) AS last_scan, count(*) AS n_scans
                FROM acquisitions a JOIN pts ON pts.pseudonym = a.patient
                WHERE a.kind = 'imaging' GROUP BY a.patient
            ), al AS (
                SELECT a.patient,
                       count(*) FILTER (WHERE a.status = 'open') AS open_alerts,
                       count(*) FILTER (WHERE a.status = 'acknowledged') AS acknowledged_alerts,
                       max(a.probability) AS alert_probability
                FROM alerts a JOIN pts ON pts.pseudonym = a.patient
                WHERE a.status IN ('open', 'acknowledged') GROUP BY a.patient
            )
            SELECT p.pseudonym AS patient, p.cohort, p.arm, p.first_seen_at,
                   scans.last_scan, coalesce(scans.n_scans, 0) AS n_scans,
                   latest.value AS response_probability, latest.lower, latest.upper,
                   latest.model_name, latest.model_version, latest.observed_at AS scored_at,
                   trend.trend, irecist.value AS irecist_code,
                   coalesce(al.open_alerts, 0) AS open_alerts,
                   coalesce(al.acknowledged_alerts, 0) AS acknowledged_alerts,
                   al.alert_probability
            FROM pts p
            LEFT JOIN scans ON scans.patient = p.pseudonym
            LEFT JOIN latest ON latest.patient = p.pseudonym
            LEFT JOIN trend ON trend.patient = p.pseudonym
            LEFT JOIN irecist ON irecist.patient = p.pseudonym
            LEFT JOIN al ON al.patient = p.pseudonym
            ORDER BY coalesce(al.open_alerts, 0) + coalesce(al.acknowledged_alerts, 0) > 0 DESC,
                     1 - coalesce(latest.value, 0.5) DESC, p.pseudonym
            """,
            {**scope(cohorts), "irecist": IRECIST_SCORE},
        )
        return cur.fetchall()


def scores_without_acquisitions(conn: psycopg.Connection, patients: Sequence[str] | None) -> int:
    """Stored scores whose source event is not an accepted acquisition."""
    params = {"all": patients is None, "patients": sorted(patients or ())}
    return int(
        conn.execute(
            "SELECT count(*) FROM timepoint_scores s "
            "WHERE (%(all)s OR patient = ANY(%(patients)s)) AND NOT EXISTS "
            "(SELECT 1 FROM acquisitions a WHERE a.event_id = s.source_event_id)",
            params,
        ).fetchone()[0]
    )


def duplicate_scores(conn: psycopg.Connection, patients: Sequence[str] | None) -> int:
    """Stored scores beyond the first of one source event, score name and model version."""
    params = {"all": patients is None, "patients": sorted(patients or ())}
    return int(
        conn.execute(
            """
            SELECT coalesce(sum(n - 1), 0) FROM (
                SELECT count(*) AS n FROM timepoint_scores
                WHERE %(all)s OR patient = ANY(%(patients)s)
                GROUP BY source_event_id, score_name, model_name, model_version
            ) g WHERE n > 1
            """,
            params,
        ).fetchone()[0]
    )


__all__ = [
    "SCORE_COLUMNS",
    "cohort_daily",
    "cohort_overview",
    "duplicate_scores",
    "latest_scores_by_source",
    "measurements_by_source",
    "pathology_values",
    "patient_burden",
    "patient_score_rows",
    "patient_scores",
    "patient_scores_with_source",
    "score_from_row",
    "scores_of_source",
    "scores_without_acquisitions",
    "store_outcome",
    "target_measurements",
    "upsert_features",
    "upsert_measurement",
    "upsert_score",
]


def slide_checks(
    conn: psycopg.Connection, patient: str, *, cohorts: Cohorts
) -> list[dict[str, Any]]:
    """The stain check and out-of-distribution measure of every slide behind a patient's
    immune signatures, oldest biopsy first; none outside ``cohorts``.

    They are stored with the signature, in the provenance of the biopsy's feature row (one per
    model version: ``provenance.slides[*].stain`` and ``.ood``, written by the biopsy agent).
    One row per slide: ``source_event_id``, ``observed_at``, ``model_name``,
    ``model_version``, ``slide``, ``stain`` (dict or None), ``ood`` (dict),
    ``uncertainty_weight``.
    """
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"""
            SELECT f.source_event_id, f.observed_at, f.extractor AS model_name,
                   f.extractor_version AS model_version, s ->> 'slide' AS slide,
                   s -> 'stain' AS stain, s -> 'ood' AS ood,
                   (s ->> 'uncertainty_weight')::float8 AS uncertainty_weight
            FROM acquisition_features f
            CROSS JOIN LATERAL jsonb_array_elements(f.provenance -> 'slides') AS s
            WHERE f.patient = %(patient)s AND {in_scope("f.patient")}
              AND jsonb_typeof(f.provenance -> 'slides') = 'array'
            ORDER BY f.observed_at, f.source_event_id, f.extractor_version, slide
            """,
            {"patient": patient, **scope(cohorts)},
        )
        return cur.fetchall()
