"""What scoring one acquisition or biopsy produces, as the database stores it.

Plain, picklable dataclasses: the science runs in a worker's process pool and hands these back;
:mod:`core.db.scores` stores them in one transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from schemas.enums import (
    IRecistState,
    LesionOrigin,
    LesionRole,
    LesionStatus,
    Organ,
    RecistResponse,
)
from schemas.events import TimepointScore

SUM_DIAMETERS_SCORE = "tumour_sum_diameters_mm"
"""RECIST 1.1 sum of diameters of the target lesions (short axis for nodes), mm."""
IN_FIELD_SUM_SCORE = "in_field_sum_mm"
"""Sum of RECIST diameters of every lesion in the radiotherapy field, mm."""
OUT_OF_FIELD_SUM_SCORE = "out_of_field_sum_mm"
"""Sum of RECIST diameters of every lesion not known to be in the radiotherapy field, mm."""
NEW_LESIONS_SCORE = "new_lesion_count"
"""New lesions present (seen) at the timepoint."""
LESION_SCORES = (SUM_DIAMETERS_SCORE, IN_FIELD_SUM_SCORE, OUT_OF_FIELD_SUM_SCORE, NEW_LESIONS_SCORE)


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
class LesionRow:
    """One tracked lesion at one acquisition (``lesion_measurements``): its identity, RECIST
    role, measures, how its mask was obtained, and why it was not measured when it was not."""

    tracking_uid: str
    tracking_id: str
    label: str
    organ: Organ
    is_node: bool
    in_field: bool | None
    """In the radiotherapy field, outside it, or unknown (None: counted out of field)."""
    role: LesionRole
    status: LesionStatus
    match: str
    """What the matching did (``models.imaging.matching.MatchStatus`` value)."""
    long_axis_mm: float | None = None
    short_axis_mm: float | None = None
    volume_ml: float | None = None
    origin: LesionOrigin | None = None
    mask_source: str | None = None
    """``seg``, ``rtstruct`` or ``propagated`` (None when not measured)."""
    segment_number: int | None = None
    """SEG segment or RTSTRUCT ROI number in the study's annotation (None when propagated)."""
    reference_uid: str | None = None
    """SOP Instance UID of the SEG or RTSTRUCT it was read from."""
    series_uid: str | None = None
    distance_mm: float | None = None
    overlap: float | None = None
    failure: str | None = None
    """Why it was not evaluable (the failure's message naming the segment or ROI)."""
    features: dict[str, float | None] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        *,
        measures: tuple[float, float, float] | None,
        not_evaluable: bool = False,
        origin: LesionOrigin | None = None,
        mask_source: str | None = None,
        segment_number: int | None = None,
        series_uid: str | None = None,
        **identity: Any,
    ) -> LesionRow:
        """The row of one tracked lesion, ``measures`` (long axis mm, short axis mm, volume ml)
        rounded as stored, or None when it was not measured: then it is not seen (not evaluable
        when said) and where a measure would have come from (origin, mask source, segment,
        series) is left empty. ``identity``: the other fields (tracking UID and id, label,
        organ, node, in field, role, match, reference UID, distance, overlap, failure,
        features)."""
        if measures is None:
            status = LesionStatus.NOT_EVALUABLE if not_evaluable else LesionStatus.NOT_SEEN
            return cls(status=status, **identity)
        long_mm, short_mm, volume_ml = measures
        return cls(
            status=LesionStatus.SEEN,
            long_axis_mm=round(float(long_mm), 3),
            short_axis_mm=round(float(short_mm), 3),
            volume_ml=round(float(volume_ml), 4),
            origin=origin,
            mask_source=mask_source,
            segment_number=segment_number,
            series_uid=series_uid,
            **identity,
        )

    @property
    def diameter_mm(self) -> float | None:
        """RECIST diameter: short axis of a node, long axis otherwise; 0 when not seen, None
        when not evaluable."""
        if self.status is LesionStatus.NOT_EVALUABLE:
            return None
        if self.status is LesionStatus.NOT_SEEN:
            return 0.0
        return self.short_axis_mm if self.is_node else self.long_axis_mm


@dataclass(frozen=True)
class LesionAssessment:
    """RECIST 1.1 and iRECIST at one acquisition over every tracked lesion
    (``lesion_assessments``), with the sums derived from the lesions and the tracking state the
    next acquisition starts from."""

    timepoint: int
    """0 for the baseline, then 1, 2, ... in the order the acquisitions were tracked."""
    irecist: IRecistState
    recist: RecistResponse | None
    """Overall RECIST 1.1 response (None at baseline)."""
    target: RecistResponse | None
    nontarget: RecistResponse | None
    reason: str
    sum_mm: float
    """RECIST 1.1 sum of diameters of the target lesions (short axis for nodes)."""
    nadir_mm: float | None
    in_field_sum_mm: float
    out_of_field_sum_mm: float
    total_volume_ml: float
    new_lesions: int
    """New lesions present (seen)."""
    new_appeared: int
    """New lesions first seen here."""
    seen: int
    not_evaluable: int
    tracking_state: dict[str, Any]
    """``models.imaging.matching.TrackingState.to_dict()`` after this acquisition."""
    model_name: str
    model_version: str
    failures: list[dict[str, Any]] = field(default_factory=list)
    """Lesions of this study that could not be read or measured, each naming its segment/ROI."""


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
    lesions: list[LesionRow] = field(default_factory=list)
    assessment: LesionAssessment | None = None


__all__ = [
    "IN_FIELD_SUM_SCORE",
    "LESION_SCORES",
    "NEW_LESIONS_SCORE",
    "OUT_OF_FIELD_SUM_SCORE",
    "SUM_DIAMETERS_SCORE",
    "FeatureSet",
    "LesionAssessment",
    "LesionRow",
    "Measurement",
    "Outcome",
]
