"""A patient's history as the response model sees it, and the inputs it takes from it.

Everything here is pure. :func:`response_inputs` builds the inputs of one timepoint from the
history *as known at that time*: scans, biopsies, laboratory values and treatment after ``at``
are dropped before anything is computed, so a later timepoint can never change an earlier score
(tested).

A scan carries its primary lesion's burden (``volume_ml``, ``diameter_mm``: the irradiated
lesion when known) and, when every lesion was read (:func:`models.imaging.analyse_study`), a
:class:`LesionReadout`: the RECIST 1.1 sum of diameters of the target lesions, the in-field and
out-of-field sums, the total volume, the new lesions and the RECIST 1.1 / iRECIST assessment of
that timepoint (each computed from that timepoint and the earlier ones only). Inputs a history
cannot give (no readout, no PD-L1) are set to a neutral value with a flag saying so.

The same function serves training (histories built from a cohort manifest) and the worker
(histories built from the database), so what the model learned on is what it scores on.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from schemas.enums import IRecistState, RecistResponse

if TYPE_CHECKING:  # typing only: the imaging package is heavy and this module is not
    from models.imaging.lesion_results import StudyResult

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


STUDY_FEATURES = {
    "sum_diameters_mm": "lesions_sum_diameters_mm",
    "in_field_mm": "lesions_in_field_sum_mm",
    "out_of_field_mm": "lesions_out_of_field_sum_mm",
    "total_volume_ml": "lesions_total_volume_ml",
    "new_lesions": "lesions_new_count",
}
""":class:`LesionReadout` field -> the study feature of :func:`models.imaging.analyse_study`."""


@dataclass(frozen=True)
class LesionReadout:
    """Every lesion of one scan, summed, with the RECIST 1.1 / iRECIST assessment there.

    ``sum_diameters_mm``: RECIST 1.1 sum of diameters of the target lesions (short axis for
    nodes). ``in_field_mm`` / ``out_of_field_mm``: RECIST diameters summed over the lesions in
    the radiotherapy field / every other lesion, new lesions included (both None when no lesion
    of the patient is marked in the field: the split is unknown). ``total_volume_ml``: every
    lesion measured. ``new_lesions``: new lesions present. ``recist``: the overall RECIST 1.1
    response (None at baseline); ``irecist``: the iRECIST state (None at baseline).
    """

    sum_diameters_mm: float
    total_volume_ml: float
    new_lesions: int = 0
    in_field_mm: float | None = None
    out_of_field_mm: float | None = None
    recist: RecistResponse | None = None
    irecist: IRecistState | None = None
    lesions_seen: int | None = None

    @classmethod
    def from_study(cls, result: StudyResult, *, field_known: bool | None = None) -> LesionReadout:
        """The readout of a :func:`models.imaging.analyse_study` result.

        ``field_known``: whether the in-field / out-of-field split is known (default: some
        tracked lesion of the patient is marked in the field).
        """
        values = {k: v.value for k, v in result.study_features.items()}
        if field_known is None:
            tracked = result.tracking.lesions if result.tracking is not None else ()
            field_known = any(t.in_field for t in tracked) or any(
                r.in_field for r in result.lesions
            )
        a = result.assessment
        baseline = a is None or a.recist is None
        return cls.from_features(
            values,
            recist=None if baseline else a.recist,
            irecist=None if baseline else a.state,
            field_known=field_known,
        )

    @classmethod
    def from_features(
        cls,
        features: Mapping[str, Any],
        *,
        recist: RecistResponse | str | None = None,
        irecist: IRecistState | int | str | None = None,
        field_known: bool = True,
    ) -> LesionReadout | None:
        """The readout from stored study features (``lesions_*``, :data:`STUDY_FEATURES`) and
        the stored assessment; None when the features lack the sum of diameters."""

        def get(name: str) -> float | None:
            v = features.get(STUDY_FEATURES[name])
            return None if v is None or not math.isfinite(float(v)) else float(v)

        total = get("sum_diameters_mm")
        if total is None:
            return None
        return cls(
            sum_diameters_mm=total,
            total_volume_ml=get("total_volume_ml") or 0.0,
            new_lesions=int(get("new_lesions") or 0),
            in_field_mm=get("in_field_mm") if field_known else None,
            out_of_field_mm=get("out_of_field_mm") if field_known else None,
            recist=None if recist is None else RecistResponse(recist),
            irecist=None if irecist is None else _irecist(irecist),
            lesions_seen=None
            if features.get("lesions_seen_count") is None
            else int(features["lesions_seen_count"]),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "sum_diameters_mm": self.sum_diameters_mm,
            "total_volume_ml": self.total_volume_ml,
            "new_lesions": self.new_lesions,
            "in_field_mm": self.in_field_mm,
            "out_of_field_mm": self.out_of_field_mm,
            "recist": None if self.recist is None else self.recist.value,
            "irecist": None if self.irecist is None else self.irecist.label,
            "lesions_seen": self.lesions_seen,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LesionReadout:
        return cls(
            sum_diameters_mm=float(d["sum_diameters_mm"]),
            total_volume_ml=float(d.get("total_volume_ml") or 0.0),
            new_lesions=int(d.get("new_lesions") or 0),
            in_field_mm=None if d.get("in_field_mm") is None else float(d["in_field_mm"]),
            out_of_field_mm=None
            if d.get("out_of_field_mm") is None
            else float(d["out_of_field_mm"]),
            recist=None if d.get("recist") is None else RecistResponse(d["recist"]),
            irecist=None if d.get("irecist") is None else _irecist(d["irecist"]),
            lesions_seen=None if d.get("lesions_seen") is None else int(d["lesions_seen"]),
        )


def _irecist(value: IRecistState | int | str) -> IRecistState:
    """An iRECIST state from itself, its code (0-5) or its label (``iUPD``...)."""
    if isinstance(value, IRecistState):
        return value
    if isinstance(value, str) and not value.isdigit():
        for state in IRecistState:
            if state.label.lower() == value.lower():
                return state
        raise ValueError(f"unknown iRECIST state {value!r}")
    return IRecistState(int(value))


@dataclass(frozen=True)
class Scan:
    """One CT or PCCT acquisition: its primary lesion's burden, its features and, when every
    lesion was read, the :class:`LesionReadout`."""

    at: datetime
    volume_ml: float
    diameter_mm: float
    features: Mapping[str, float | None] = field(default_factory=dict)
    pcct: bool = False
    key: str = ""  # source event id or manifest key
    lesions: LesionReadout | None = None


@dataclass(frozen=True)
class Biopsy:
    """One biopsy scored by the pathology model (the teacher)."""

    at: datetime
    signature: Signature


@dataclass(frozen=True)
class LabResult:
    """Laboratory values reported with a specimen (``BiopsyAcquired.lab``), at its time."""

    at: datetime
    pd_l1_tps: float | None = None
    """PD-L1 tumour proportion score, per cent (0-100)."""


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
    labs: tuple[LabResult, ...] = ()

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
            labs=tuple(sorted((r for r in self.labs if r.at <= at), key=lambda r: r.at)),
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
"""The primary lesion's trajectory (the irradiated lesion when known; story v1's only one)."""
RECIST_INPUTS = (
    "recist_ordinal",
    "recist_sum_change_vs_baseline",
    "recist_sum_change_vs_nadir",
)
"""RECIST 1.1 over every target lesion as an ordinal score: the overall response (CR 0, PR 1,
SD 2, PD 3; baseline and non-CR/non-PD 2) and the target sum's relative change from baseline
and from the nadir. Without a lesion readout: the primary lesion as the only target."""
LESION_INPUTS = (
    "has_lesion_readout",
    "log_sum_vs_baseline",
    "log_sum_vs_nadir",
    "log_sum_slope_per_week",
    "log_total_volume_vs_baseline",
    "log_total_volume_vs_nadir",
    "log_total_volume_slope_per_week",
    "new_lesion_count",
    "new_lesion_any",
    "irecist_ordinal",
    "irecist_iupd",
    "irecist_icpd",
)
"""Every lesion (:class:`LesionReadout`): target sum and total volume trajectories, new
lesions, the iRECIST state (iCR 0, iPR 1, iSD 2, iUPD 3, iCPD 4; baseline and iNE 2)."""
IN_FIELD_INPUTS = (
    "has_in_field",
    "log_in_field_vs_baseline",
    "log_in_field_vs_nadir",
    "log_in_field_slope_per_week",
)
"""The lesions in the radiotherapy field: their RECIST diameters summed, as a trajectory."""
OUT_OF_FIELD_INPUTS = (
    "has_out_of_field",
    "log_out_of_field_vs_baseline",
    "log_out_of_field_vs_nadir",
    "log_out_of_field_slope_per_week",
)
"""Every other lesion (new lesions included), as a trajectory: the abscopal readout."""
IMMUNE_INPUTS = (
    "ct_immune_score",
    "ct_immune_score_mean",
    "ct_p_inflamed",
    "ct_p_desert",
    "ct_log_til",
)
BIOPSY_INPUTS = ("has_biopsy", "biopsy_immune_score", "biopsy_p_desert", "biopsy_log_til")
PD_L1_INPUTS = ("pd_l1_tps", "pd_l1_ge1", "pd_l1_ge50", "pd_l1_missing")
"""PD-L1 TPS at baseline (the first value known), a clinical input: the fraction (0-1) and the
clinical cut-offs 1 % and 50 %; when none is known, 0 with ``pd_l1_missing`` 1."""
TREATMENT_INPUTS = ("weeks_since_rt_start", "ici_cycles", "is_pcct")
ALL_BURDEN_INPUTS = (
    BURDEN_INPUTS + RECIST_INPUTS + LESION_INPUTS + IN_FIELD_INPUTS + OUT_OF_FIELD_INPUTS
)
"""Everything burden says: the primary lesion, RECIST 1.1, every lesion, in and out of field."""
ALL_INPUTS = ALL_BURDEN_INPUTS + IMMUNE_INPUTS + BIOPSY_INPUTS + PD_L1_INPUTS + TREATMENT_INPUTS

RECIST_ORDINAL = {
    RecistResponse.CR: 0.0,
    RecistResponse.PR: 1.0,
    RecistResponse.SD: 2.0,
    RecistResponse.NON_CR_NON_PD: 2.0,
    RecistResponse.NE: 2.0,
    RecistResponse.PD: 3.0,
}
IRECIST_ORDINAL = {
    IRecistState.ICR: 0.0,
    IRecistState.IPR: 1.0,
    IRecistState.ISD: 2.0,
    IRecistState.INE: 2.0,
    IRecistState.IUPD: 3.0,
    IRecistState.ICPD: 4.0,
}
SUM_FLOOR_MM = 10.0
"""Smallest baseline or nadir sum a relative change is taken against (a patient whose target
lesions all vanished would otherwise divide by zero): RECIST's smallest measurable lesion."""
OFFSET_MM = 1.0
OFFSET_ML = 0.01
"""Added to sums and volumes before a log ratio, so a sum that reaches 0 stays finite."""
WEEK_S = 604800.0
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


def _trajectory(
    values: Sequence[float], times: Sequence[datetime], offset: float
) -> tuple[float, float, float]:
    """(log vs baseline, log vs nadir, log slope per week) of a series, the last value current:
    ``log((v + offset) / (ref + offset))``; the nadir is the smallest earlier value (0 with one
    value), the slope is over the last interval (0 with one value)."""
    cur = values[-1] + offset
    vs_base = math.log(cur / (values[0] + offset))
    if len(values) < 2:
        return vs_base, 0.0, 0.0
    vs_nadir = math.log(cur / (min(values[:-1]) + offset))
    weeks = max((times[-1] - times[-2]).total_seconds() / WEEK_S, 0.5)
    return vs_base, vs_nadir, math.log(cur / (values[-2] + offset)) / weeks


def _recist_inputs(scans: Sequence[Scan], out: dict[str, float]) -> None:
    """:data:`RECIST_INPUTS` from the scans' readouts, else from the primary lesion."""
    readout = scans[-1].lesions is not None and scans[0].lesions is not None
    with_readout = [s for s in scans if s.lesions is not None] if readout else []
    if readout:
        sums = [s.lesions.sum_diameters_mm for s in with_readout]  # type: ignore[union-attr]
        current = with_readout[-1].lesions
        assert current is not None
        category = RECIST_ORDINAL[current.recist] if current.recist is not None else 2.0
    else:
        sums = [s.diameter_mm for s in scans]
        category = {"PD": 3.0, "PR": 1.0}.get(recist_category(sums), 2.0)
    out["recist_ordinal"] = category
    out["recist_sum_change_vs_baseline"] = (sums[-1] - sums[0]) / max(sums[0], SUM_FLOOR_MM)
    if len(sums) > 1:
        nadir = min(sums[:-1])
        out["recist_sum_change_vs_nadir"] = (sums[-1] - nadir) / max(nadir, SUM_FLOOR_MM)


def _lesion_inputs(scans: Sequence[Scan], out: dict[str, float]) -> None:
    """:data:`LESION_INPUTS`, :data:`IN_FIELD_INPUTS`, :data:`OUT_OF_FIELD_INPUTS`: from the
    scans that carry a readout, when the first (baseline) and the current scan both do."""
    out["irecist_ordinal"] = 2.0
    if scans[0].lesions is None or scans[-1].lesions is None:
        return
    known = [s for s in scans if s.lesions is not None]
    readouts = [s.lesions for s in known if s.lesions is not None]
    times = [s.at for s in known]
    cur = readouts[-1]
    out["has_lesion_readout"] = 1.0
    (
        out["log_sum_vs_baseline"],
        out["log_sum_vs_nadir"],
        out["log_sum_slope_per_week"],
    ) = _trajectory([r.sum_diameters_mm for r in readouts], times, OFFSET_MM)
    (
        out["log_total_volume_vs_baseline"],
        out["log_total_volume_vs_nadir"],
        out["log_total_volume_slope_per_week"],
    ) = _trajectory([r.total_volume_ml for r in readouts], times, OFFSET_ML)
    out["new_lesion_count"] = float(cur.new_lesions)
    out["new_lesion_any"] = float(cur.new_lesions > 0)
    if cur.irecist is not None:
        out["irecist_ordinal"] = IRECIST_ORDINAL[cur.irecist]
        out["irecist_iupd"] = float(cur.irecist is IRecistState.IUPD)
        out["irecist_icpd"] = float(cur.irecist is IRecistState.ICPD)
    for name, attr in (("in_field", "in_field_mm"), ("out_of_field", "out_of_field_mm")):
        values = [getattr(r, attr) for r in readouts]
        if values[0] is None or values[-1] is None or values[0] <= 0:
            continue  # the split is unknown, or no such lesion at baseline
        pairs = [(v, t) for v, t in zip(values, times, strict=True) if v is not None]
        out[f"has_{name}"] = 1.0
        (
            out[f"log_{name}_vs_baseline"],
            out[f"log_{name}_vs_nadir"],
            out[f"log_{name}_slope_per_week"],
        ) = _trajectory([v for v, _ in pairs], [t for _, t in pairs], OFFSET_MM)


def _pd_l1_inputs(labs: Sequence[LabResult], out: dict[str, float]) -> None:
    """:data:`PD_L1_INPUTS` from the first PD-L1 TPS known (the baseline, diagnostic one)."""
    tps = next((r.pd_l1_tps for r in labs if r.pd_l1_tps is not None), None)
    if tps is None or not math.isfinite(tps):
        out["pd_l1_missing"] = 1.0
        return
    out["pd_l1_tps"] = min(max(tps, 0.0), 100.0) / 100.0
    out["pd_l1_ge1"] = float(tps >= 1.0)
    out["pd_l1_ge50"] = float(tps >= 50.0)


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

    Returns
    -------
    dict
        Every name of :data:`ALL_INPUTS` (module docstring; each group's docstring defines
        its inputs): finite numbers, neutral values with a flag where the history cannot say.

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
        weeks = max((cur.at - scans[-2].at).total_seconds() / WEEK_S, 0.5)
        out["log_volume_slope_per_week"] = _log_ratio(vols[-1], vols[-2]) / weeks
    category = recist_category(diams)
    out["recist_pd"] = float(category == "PD")
    out["recist_pr"] = float(category == "PR")
    _recist_inputs(scans, out)
    _lesion_inputs(scans, out)

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
    _pd_l1_inputs(known.labs, out)

    t = known.treatment
    if t.rt_start is not None:
        out["weeks_since_rt_start"] = (cur.at - t.rt_start).total_seconds() / WEEK_S
    out["ici_cycles"] = float(len(t.ici_doses))
    out["is_pcct"] = float(cur.pcct)
    return out
