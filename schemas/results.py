"""What scoring one acquisition or biopsy produces, as the database stores it.

Plain, picklable dataclasses: the science runs in a worker's process pool and hands these back;
:mod:`core.db.scores` stores them in one transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from schemas.events import TimepointScore


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
class FeatureSet:
    """All features of one acquisition with their provenance."""

    extractor: str
    version: str
    values: dict[str, float | None]
    provenance: object


@dataclass
class Outcome:
    """What one acquisition or biopsy produced."""

    source_event_id: uuid.UUID
    patient: str
    scores: list[TimepointScore] = field(default_factory=list)
    measurements: list[Measurement] = field(default_factory=list)
    observed_at: datetime | None = None
    features: FeatureSet | None = None


__all__ = ["FeatureSet", "Measurement", "Outcome"]
