"""A patient's history as the response model sees it, and the inputs it takes from it.

Everything here is pure. :func:`response_inputs` builds the inputs of one timepoint from the
history *as known at that time*: scans, biopsies and treatment after ``at`` are dropped before
anything is computed, so a later timepoint can never change an earlier score (tested).

The same function serves training (histories built from a cohort manifest) and the worker
(histories built from the database), so what the model learned on is what it scores on.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

PHENOTYPE_NAMES = ("inflamed", "excluded", "desert")


@dataclass(frozen=True)
class Signature:
    """An immune signature: phenotype probabilities and TIL density (per mm²)."""

    p_inflamed: float
    p_excluded: float
    p_desert: float
    til_density: float

    @property
    def immune_score(self) -> float:
        """0 (desert) to 1 (inflamed): inflamed 1, excluded 0.5, desert 0, probability-weighted."""
        return self.p_inflamed + 0.5 * self.p_excluded

    def as_dict(self) -> dict[str, float]:
        return {
            "p_inflamed": self.p_inflamed,
            "p_excluded": self.p_excluded,
            "p_desert": self.p_desert,
            "til_density": self.til_density,
        }


@dataclass(frozen=True)
class Scan:
    """One CT or PCCT acquisition: its target-lesion burden and its features."""

    at: datetime
    volume_ml: float
    diameter_mm: float
    features: Mapping[str, float | None] = field(default_factory=dict)
    pcct: bool = False
    key: str = ""  # source event id or manifest key


@dataclass(frozen=True)
class Biopsy:
    """One biopsy scored by the pathology model (the teacher)."""

    at: datetime
    signature: Signature


@dataclass(frozen=True)
class Treatment:
    """Radiotherapy start and immunotherapy doses (times)."""

    rt_start: datetime | None = None
    ici_doses: tuple[datetime, ...] = ()


@dataclass(frozen=True)
class History:
    """What is known of one patient (in any order; functions sort and cut by time)."""

    scans: tuple[Scan, ...]
    biopsies: tuple[Biopsy, ...] = ()
    treatment: Treatment = Treatment()

    def as_of(self, at: datetime) -> History:
        """The history known at ``at``: nothing later than it."""
        t = self.treatment
        return History(
            scans=tuple(sorted((s for s in self.scans if s.at <= at), key=lambda s: s.at)),
            biopsies=tuple(sorted((b for b in self.biopsies if b.at <= at), key=lambda b: b.at)),
            treatment=Treatment(
                rt_start=t.rt_start if t.rt_start is not None and t.rt_start <= at else None,
                ici_doses=tuple(sorted(d for d in t.ici_doses if d <= at)),
            ),
        )


SignatureFn = Callable[[Scan], Signature | None]
"""The CT virtual biopsy of one scan (None when no model is available)."""

BURDEN_INPUTS = (
    "log_volume_vs_baseline",
    "log_volume_vs_nadir",
    "log_diameter_vs_baseline",
    "log_diameter_vs_nadir",
    "log_volume_slope_per_week",
    "recist_pd",
    "recist_pr",
)
IMMUNE_INPUTS = (
    "ct_immune_score",
    "ct_immune_score_mean",
    "ct_p_inflamed",
    "ct_p_desert",
    "ct_log_til",
)
BIOPSY_INPUTS = ("has_biopsy", "biopsy_immune_score", "biopsy_p_desert", "biopsy_log_til")
TREATMENT_INPUTS = ("weeks_since_rt_start", "ici_cycles", "is_pcct")
ALL_INPUTS = BURDEN_INPUTS + IMMUNE_INPUTS + BIOPSY_INPUTS + TREATMENT_INPUTS

RECIST_PD_FRACTION = 0.20
RECIST_PD_MM = 5.0
RECIST_PR_FRACTION = 0.30


def recist_category(diameters_mm: Sequence[float]) -> str:
    """RECIST 1.1 response of the last assessment of a target-lesion diameter series.

    PD: at least 20 % and 5 mm above the nadir (smallest earlier value, baseline included);
    PR: at least 30 % below baseline; SD otherwise; the baseline itself is ``"baseline"``.
    """
    if len(diameters_mm) == 0:
        raise ValueError("no diameters")
    if len(diameters_mm) == 1:
        return "baseline"
    last, base = diameters_mm[-1], diameters_mm[0]
    nadir = min(diameters_mm[:-1])
    if last - nadir >= RECIST_PD_MM and last >= nadir * (1.0 + RECIST_PD_FRACTION):
        return "PD"
    if last <= base * (1.0 - RECIST_PR_FRACTION):
        return "PR"
    return "SD"


def _log_ratio(a: float, b: float) -> float:
    return math.log(max(a, 1e-3) / max(b, 1e-3))


def response_inputs(
    history: History, at: datetime, signature: SignatureFn | None = None
) -> dict[str, float]:
    """The response model's inputs at ``at`` (the time of a scan in the history).

    Parameters
    ----------
    history
        The patient's history; anything after ``at`` is ignored.
    at
        The timepoint; the latest scan at or before it is the current scan.
    signature
        The CT virtual biopsy, applied to each scan up to ``at``; None leaves the immune
        inputs at their neutral values.

    Raises
    ------
    ValueError
        No scan at or before ``at``.
    """
    known = history.as_of(at)
    scans = known.scans
    if not scans:
        raise ValueError(f"no scan at or before {at.isoformat()}")
    vols = [s.volume_ml for s in scans]
    diams = [s.diameter_mm for s in scans]
    cur = scans[-1]
    out: dict[str, float] = dict.fromkeys(ALL_INPUTS, 0.0)
    out["log_volume_vs_baseline"] = _log_ratio(vols[-1], vols[0])
    out["log_diameter_vs_baseline"] = _log_ratio(diams[-1], diams[0])
    if len(scans) > 1:
        out["log_volume_vs_nadir"] = _log_ratio(vols[-1], min(vols[:-1]))
        out["log_diameter_vs_nadir"] = _log_ratio(diams[-1], min(diams[:-1]))
        weeks = max((cur.at - scans[-2].at).total_seconds() / 604800.0, 0.5)
        out["log_volume_slope_per_week"] = _log_ratio(vols[-1], vols[-2]) / weeks
    category = recist_category(diams)
    out["recist_pd"] = float(category == "PD")
    out["recist_pr"] = float(category == "PR")

    out["ct_immune_score"] = 0.5
    out["ct_immune_score_mean"] = 0.5
    out["ct_p_inflamed"] = 1.0 / 3.0
    out["ct_p_desert"] = 1.0 / 3.0
    if signature is not None:
        sigs = [sig for sig in (signature(s) for s in scans) if sig is not None]
        if sigs:
            last = sigs[-1]
            out["ct_immune_score"] = last.immune_score
            out["ct_immune_score_mean"] = sum(s.immune_score for s in sigs) / len(sigs)
            out["ct_p_inflamed"] = last.p_inflamed
            out["ct_p_desert"] = last.p_desert
            out["ct_log_til"] = math.log1p(max(last.til_density, 0.0))

    out["biopsy_immune_score"] = 0.5
    out["biopsy_p_desert"] = 1.0 / 3.0
    if known.biopsies:
        b = known.biopsies[-1].signature
        out["has_biopsy"] = 1.0
        out["biopsy_immune_score"] = b.immune_score
        out["biopsy_p_desert"] = b.p_desert
        out["biopsy_log_til"] = math.log1p(max(b.til_density, 0.0))

    t = known.treatment
    if t.rt_start is not None:
        out["weeks_since_rt_start"] = (cur.at - t.rt_start).total_seconds() / 604800.0
    out["ici_cycles"] = float(len(t.ici_doses))
    out["is_pcct"] = float(cur.pcct)
    return out
