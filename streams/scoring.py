"""The seam between the agents and the science of ``models/``.

An agent builds a *request* (checked paths, the patient's history from the database), runs the
pure scoring function in the CPU pool, and stores its *outcome* in one transaction. Requests
and outcomes are plain picklable dataclasses, so scoring runs in another process.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import psycopg

from models.exceptions import ModelError
from schemas import BiopsyAcquired, ImagingAcquired, TimepointScore
from streams import sinks
from streams.inputs import resolve_under_roots


@dataclass(frozen=True)
class Measurement:
    """A tumour measurement of one lesion at one acquisition."""

    lesion_id: str
    volume_ml: float
    longest_diameter_mm: float
    mask_source: str
    registration_quality: float | None
    series_uid: str | None
    model_name: str
    model_version: str


@dataclass(frozen=True)
class Baseline:
    """The patient's baseline acquisition (planning CT with a contour), when there is one."""

    event_id: uuid.UUID
    path: Path
    lesion_path: Path | None


@dataclass
class ImagingRequest:
    event: ImagingAcquired
    series_dir: Path | None  # None for DICOMweb locations
    lesion_path: Path | None
    baseline: Baseline | None = None


@dataclass
class BiopsyRequest:
    event: BiopsyAcquired
    slide_paths: list[Path]


@dataclass
class Outcome:
    """What one acquisition or biopsy produced."""

    source_event_id: uuid.UUID
    patient: str
    scores: list[TimepointScore] = field(default_factory=list)
    measurements: list[Measurement] = field(default_factory=list)
    observed_at: datetime | None = None


def imaging_request(event: ImagingAcquired, roots: Sequence[Path]) -> ImagingRequest:
    """Check the event's files (inside the data roots, present) before anything runs."""
    series_dir = None
    if event.location.kind == "folder":
        series_dir = resolve_under_roots(event.location.path, roots)
    lesion_path = None
    if event.lesion is not None and event.lesion.path is not None:
        lesion_path = resolve_under_roots(event.lesion.path, roots)
    return ImagingRequest(event=event, series_dir=series_dir, lesion_path=lesion_path)


def biopsy_request(event: BiopsyAcquired, roots: Sequence[Path]) -> BiopsyRequest:
    return BiopsyRequest(event, [resolve_under_roots(s.path, roots) for s in event.slides])


def with_history(conn: psycopg.Connection, request: ImagingRequest) -> ImagingRequest:
    """Add the patient's baseline (earliest imaging acquisition with a lesion reference)."""
    row = conn.execute(
        """
        SELECT event_id, location->>'path', payload->'lesion'->>'path'
        FROM acquisitions
        WHERE patient = %s AND kind = 'imaging' AND payload->'lesion' IS NOT NULL
              AND payload->'lesion' <> 'null'::jsonb AND acquired_at <= %s
        ORDER BY acquired_at, event_id
        LIMIT 1
        """,
        (request.event.patient, request.event.occurred_at),
    ).fetchone()
    if row and row[1]:
        request.baseline = Baseline(row[0], Path(row[1]), Path(row[2]) if row[2] else None)
    return request


def score_imaging(request: ImagingRequest) -> Outcome:
    """Score one acquisition (runs in the CPU pool)."""
    raise ModelError("the imaging models are not installed in this build")


def score_biopsy(request: BiopsyRequest) -> Outcome:
    """Score one biopsy (runs in the CPU pool)."""
    raise ModelError("the pathology model is not installed in this build")


def store_outcome(conn: psycopg.Connection, outcome: Outcome) -> None:
    """Store scores and measurements and mark the acquisition scored (one transaction)."""
    for m in outcome.measurements:
        sinks.upsert_measurement(
            conn, outcome.source_event_id, outcome.patient, outcome.observed_at, m
        )
    for score in outcome.scores:
        sinks.upsert_score(conn, score)
    conn.execute(
        "UPDATE acquisitions SET status = 'scored' WHERE event_id = %s", (outcome.source_event_id,)
    )
