"""One patient's series as the detectors see it: one row per burden assessment."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from schemas.enums import IRecistState

SUM_DIAMETERS = "tumour_sum_diameters_mm"
VOLUME = "tumour_volume_ml"
RESPONSE_PROBABILITY = "response_probability"
IMMUNE_SCORE = "ct_immune_score"


def _optional(values: ArrayLike | None, n: int, name: str) -> np.ndarray | None:
    if values is None:
        return None
    arr = np.asarray(values, dtype=float)
    if arr.shape != (n,):
        raise ValueError(
            f"{name} has shape {arr.shape}; expected ({n},), one per timepoint (NaN where missing)"
        )
    return None if np.all(np.isnan(arr)) else arr


@dataclass(frozen=True)
class PatientSeries:
    """Burden assessments in time order, with the other scores as of each assessment.

    Parameters
    ----------
    times:
        Assessment times: datetimes (timezone-aware) or days as numbers, increasing.
    sum_diameters_mm:
        Sum of longest diameters of the measured lesions (RECIST burden), one per assessment.
    volume_ml:
        Total tumour volume, when measured (NaN where missing).
    response_probability:
        The response model's latest P(response) at each assessment (NaN where missing).
    immune_score:
        The CT immune score at each assessment (NaN where missing).
    new_lesions:
        Number of new (non-baseline) lesions present at each assessment.
    irecist_states:
        The iRECIST state of each assessment when it was assessed over every tracked lesion
        (the stored per-lesion assessment, baseline included); ``None``: the rule assesses the
        sum of diameters and the new-lesion counts itself.
    in_field_sum_mm, out_of_field_sum_mm:
        Sums of RECIST diameters of the lesions in and outside the radiotherapy field, when the
        lesions are tracked (NaN where missing).
    model_versions:
        ``{score name: "model/version"}`` of the inputs, for the alert's provenance.
    """

    times: tuple[Any, ...]
    sum_diameters_mm: np.ndarray
    volume_ml: np.ndarray | None = None
    response_probability: np.ndarray | None = None
    immune_score: np.ndarray | None = None
    new_lesions: np.ndarray | None = None
    model_versions: dict[str, str] = field(default_factory=dict)
    irecist_states: tuple[IRecistState, ...] | None = None
    in_field_sum_mm: np.ndarray | None = None
    out_of_field_sum_mm: np.ndarray | None = None

    def __post_init__(self) -> None:
        s = np.asarray(self.sum_diameters_mm, dtype=float)
        n = len(s)
        if len(self.times) != n:
            raise ValueError(f"{len(self.times)} times for {n} burden values")
        if n and (not np.all(np.isfinite(s)) or np.any(s < 0)):
            raise ValueError("sum_diameters_mm must be finite and non-negative at every timepoint")
        d = _days_array(self.times)
        if np.any(np.diff(d) <= 0):
            raise ValueError("times must be strictly increasing")
        object.__setattr__(self, "times", tuple(self.times))
        object.__setattr__(self, "sum_diameters_mm", s)
        object.__setattr__(self, "volume_ml", _optional(self.volume_ml, n, "volume_ml"))
        object.__setattr__(
            self,
            "response_probability",
            _optional(self.response_probability, n, "response_probability"),
        )
        object.__setattr__(self, "immune_score", _optional(self.immune_score, n, "immune_score"))
        new = np.zeros(n, int) if self.new_lesions is None else np.asarray(self.new_lesions, int)
        if new.shape != (n,):
            raise ValueError(f"new_lesions has shape {new.shape}; expected ({n},)")
        object.__setattr__(self, "new_lesions", new)
        if self.irecist_states is not None:
            states = tuple(IRecistState(v) for v in self.irecist_states)
            if len(states) != n:
                raise ValueError(f"{len(states)} iRECIST states for {n} assessments")
            object.__setattr__(self, "irecist_states", states)
        for name in ("in_field_sum_mm", "out_of_field_sum_mm"):
            object.__setattr__(self, name, _optional(getattr(self, name), n, name))

    def __len__(self) -> int:
        return len(self.sum_diameters_mm)

    @property
    def days(self) -> np.ndarray:
        """Days since the first assessment."""
        d = _days_array(self.times)
        return d - d[0] if len(d) else d

    def head(self, n: int) -> PatientSeries:
        """The first ``n`` assessments (what was known at assessment ``n - 1``)."""

        def cut(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[:n]

        return PatientSeries(
            times=self.times[:n],
            sum_diameters_mm=self.sum_diameters_mm[:n],
            volume_ml=cut(self.volume_ml),
            response_probability=cut(self.response_probability),
            immune_score=cut(self.immune_score),
            new_lesions=cut(self.new_lesions),
            model_versions=dict(self.model_versions),
            irecist_states=None if self.irecist_states is None else self.irecist_states[:n],
            in_field_sum_mm=cut(self.in_field_sum_mm),
            out_of_field_sum_mm=cut(self.out_of_field_sum_mm),
        )


def _days_array(times: tuple[Any, ...] | list[Any]) -> np.ndarray:
    out = []
    for t in times:
        if isinstance(t, datetime):
            out.append(t.timestamp() / 86400.0)
        else:
            out.append(float(t))
    return np.asarray(out, dtype=float)
