"""What :func:`~models.imaging.study.analyse_study` returns: a :class:`LesionResult` per tracked
lesion and the :class:`StudyResult` of the study (an
:class:`~models.imaging.pipeline.ImagingResult` whose single-lesion fields describe the primary
lesion, with every lesion, the failures, the tracking state and the assessment added)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.changepoint.irecist import Assessment
from models.imaging.annotations import Lesion, LesionFailure
from models.imaging.burden import Burden
from models.imaging.features import Feature
from models.imaging.lesion import MaskSource
from models.imaging.matching import MatchStatus, TrackingState, TrackingUpdate
from models.imaging.pipeline import Baseline, ImagingResult
from schemas.enums import LesionRole, Organ

__all__ = ["LesionResult", "StudyResult"]


@dataclass
class LesionResult:
    """One tracked lesion at this study: its measures and features, or why there are none."""

    tracking_uid: str
    tracking_id: str
    role: LesionRole
    status: MatchStatus
    """baseline, by_uid, matched, new, not_seen or not_evaluable."""
    label: str
    organ: Organ
    is_node: bool
    in_field: bool | None
    burden: Burden | None = None
    """Long axis, short axis and volume; None when not seen or not evaluable."""
    features: dict[str, Feature] = field(default_factory=dict)
    source: MaskSource | None = None
    number: int = 0
    """Segment or ROI number in the annotation (0 when propagated or not seen)."""
    reference_uid: str = ""
    """SOP Instance UID of the SEG or RTSTRUCT it was read from."""
    centre_mm: tuple[float, float, float] | None = None
    """Centre on this scan (patient coordinates)."""
    reference_centre_mm: tuple[float, float, float] | None = None
    """Centre in the reference (baseline) frame, through the study's registration."""
    distance_mm: float | None = None
    overlap: float | None = None
    quality: dict[str, Any] | None = None
    """Propagation quality of a propagated lesion."""
    features_problem: str | None = None
    """Why some features are missing (a lesion too small for radiomics), else None."""
    mask: np.ndarray | None = field(default=None, repr=False)

    @property
    def seen(self) -> bool:
        return self.burden is not None

    @property
    def diameter_mm(self) -> float:
        """RECIST diameter (short axis of a node, long axis otherwise); 0 when not measured."""
        if self.burden is None:
            return 0.0
        return self.burden.short_axis_mm if self.is_node else self.burden.longest_diameter_mm

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary (no mask)."""
        b = self.burden
        return {
            "tracking_uid": self.tracking_uid,
            "tracking_id": self.tracking_id,
            "role": self.role.value,
            "status": self.status.value,
            "label": self.label,
            "organ": self.organ.value,
            "is_node": self.is_node,
            "in_field": self.in_field,
            "long_axis_mm": round(b.longest_diameter_mm, 3) if b else None,
            "short_axis_mm": round(b.short_axis_mm, 3) if b else None,
            "volume_ml": round(b.volume_ml, 4) if b else None,
            "diameter_slice": b.diameter_slice if b else None,
            "source": self.source.value if self.source else None,
            "number": self.number,
            "reference_uid": self.reference_uid,
            "centre_mm": _rounded(self.centre_mm),
            "reference_centre_mm": _rounded(self.reference_centre_mm),
            "distance_mm": None if self.distance_mm is None else round(self.distance_mm, 2),
            "overlap": None if self.overlap is None else round(self.overlap, 4),
            "quality": self.quality,
            "features": {k: v.as_dict() for k, v in sorted(self.features.items())},
            "features_problem": self.features_problem,
        }


def _rounded(v: tuple[float, ...] | None) -> list[float] | None:
    return None if v is None else [round(float(x), 2) for x in v]


@dataclass
class StudyResult(ImagingResult):
    """Every lesion of a study, and the single-lesion fields of :class:`ImagingResult`.

    ``burden``, ``features`` and ``mask`` describe the primary lesion: the one in the
    radiotherapy field when known (the largest such), else the largest target, else the largest
    lesion measured. ``study_features`` are over all lesions.
    """

    lesions: list[LesionResult] = field(default_factory=list)
    failures: list[LesionFailure] = field(default_factory=list)
    tracking: TrackingState | None = None
    """The state after this study: pass it to the next study's :func:`analyse_study`."""
    update: TrackingUpdate | None = field(default=None, repr=False)
    assessment: Assessment | None = None
    """RECIST 1.1 (``recist``, ``target``, ``nontarget``) and iRECIST (``state``) here."""
    study_features: dict[str, Feature] = field(default_factory=dict)
    primary_uid: str = ""

    def as_baseline(self) -> Baseline:
        """This study as the baseline of later follow-ups (every lesion, with its UID)."""
        kept = [
            Lesion(
                mask=r.mask,
                label=r.label,
                number=r.number,
                source=r.source or MaskSource.GIVEN,
                reference_uid=r.reference_uid,
                tracking_id=r.tracking_id,
                tracking_uid=r.tracking_uid,
                organ=r.organ,
                is_node=r.is_node,
                in_field=r.in_field,
            )
            for r in self.lesions
            if r.mask is not None
        ]
        return Baseline(
            self.volume,
            self.mask,
            self.series_uid,
            lesions=kept,
            frame_of_reference_uid=str(self.provenance.get("frame_of_reference_uid", "")),
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary (no arrays)."""
        out = super().to_dict()
        a = self.assessment
        out.update(
            {
                "lesions": [r.to_dict() for r in self.lesions],
                "failures": [f.as_dict() for f in self.failures],
                "primary_tracking_uid": self.primary_uid,
                "study_features": {k: v.as_dict() for k, v in sorted(self.study_features.items())},
                "assessment": None
                if a is None
                else {
                    "irecist": a.state.label,
                    "irecist_code": a.state.code,
                    "recist": a.recist.value if a.recist else None,
                    "target": a.target.value if a.target else None,
                    "nontarget": a.nontarget.value if a.nontarget else None,
                    "sum_mm": round(a.sum_mm, 3) if np.isfinite(a.sum_mm) else None,
                    "nadir_mm": round(a.nadir_mm, 3) if np.isfinite(a.nadir_mm) else None,
                    "new_lesions": a.new_lesions,
                    "new_appeared": a.new_appeared,
                    "reason": a.reason,
                },
            }
        )
        return out
