"""Idempotent database sinks: every write is an upsert keyed by the event id.

Delivery is at least once, so each function here may see the same event twice (a replay, a
restart before the offset commit) and must leave the same rows behind. Functions take an open
psycopg connection and do not commit; the caller commits, then commits the Kafka offset.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING

import psycopg
from psycopg.types.json import Jsonb

from schemas.events import (
    BiopsyAcquired,
    DeadLetter,
    ImagingAcquired,
    TimepointScore,
    TreatmentEvent,
)

if TYPE_CHECKING:
    from streams.scoring import FeatureSet, Measurement


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


def upsert_score(conn: psycopg.Connection, score: TimepointScore) -> None:
    """Store one timepoint score; a second delivery updates the same row in place."""
    upsert_patient(conn, score.patient, score.occurred_at)
    conn.execute(
        """
        INSERT INTO timepoint_scores (event_id, patient, observed_at, source_event_id, score_name,
                                      value, lower, upper, unit, model_name, model_version, inputs)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (event_id, observed_at) DO UPDATE SET
            value = EXCLUDED.value, lower = EXCLUDED.lower, upper = EXCLUDED.upper,
            unit = EXCLUDED.unit, inputs = EXCLUDED.inputs
        """,
        (
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
        ),
    )


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
