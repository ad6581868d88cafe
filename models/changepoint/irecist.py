"""RECIST 1.1 and iRECIST as a state machine, over every lesion or over a single burden sum.

Rules (Eisenhauer et al., Eur J Cancer 2009; Seymour et al., Lancet Oncol 2017, iRECIST):

* **Baseline** is the first assessment; the **nadir** is the smallest target sum seen so far,
  baseline included. The category responses (target, non-target, overall RECIST 1.1) come from
  :mod:`models.changepoint.recist`.
* **iUPD**: the first assessment that meets RECIST 1.1 progression in any category: the target
  sum at least 20 per cent and 5 mm over the nadir, unequivocal non-target progression, or new
  lesions (a new lesion first seen now; or, once new lesions have come and gone, new target
  lesions whose sum is again 20 per cent and 5 mm over its nadir, or new non-target lesions
  progressing as non-target lesions do).
* **Confirmation** (iCPD) at the next assessment 4 to 8 weeks after iUPD, by any of (Seymour
  2017, table 2 and "confirming progression"): a further increase of at least 5 mm of the
  target sum over its value at iUPD when the targets made iUPD (increases add up over
  assessments); target progression newly met when they did not; a further increase of the
  non-target lesions (which need not be unequivocal) when they made iUPD, or unequivocal
  non-target progression newly met; a new lesion not present at iUPD; the new target lesions'
  sum 5 mm over its value at iUPD; an increase of the new non-target lesions present at iUPD.
  "Any increase" of a measured volume is taken as at least ``confirm_volume_increase`` (25 per
  cent by default: a project choice, so measurement noise alone cannot confirm; set 0 for the
  letter of the rule). An assessment earlier than the window cannot confirm (the state stays
  iUPD); one later than the window confirms only when ``accept_late_confirmation`` (the
  default: the next assessment is what iRECIST asks for, and follow-up intervals of 9 weeks are
  common).
* **Remains iUPD** while progression criteria are still met in some category or new lesions are
  still present, unconfirmed ("if no change is seen in new lesions, assignment remains iUPD").
* **Reset**: after iUPD, an assessment that meets progression in no category and shows no new
  lesion is iSD, iPR or iCR, and the machine resets; a later progression is a new iUPD. iCPD is
  final.
* **Response**: the overall RECIST 1.1 response with an i: iCR, iPR, iSD; RECIST's
  non-CR/non-PD (non-target disease only) is reported as iSD; iNE when a target lesion could
  not be evaluated and nothing shows progression (an open iUPD stays open across it).

Two entry points share these rules: :meth:`Irecist.assess` takes every lesion of a timepoint
(:class:`~models.changepoint.recist.Timepoint`); :meth:`Irecist.update` takes a single sum of
diameters and a count of new lesions (the burden series of earlier releases), read as one
target lesion and that many new non-target lesions.

States are the one iRECIST vocabulary, :class:`schemas.enums.IRecistState` (iCR 0, iPR 1,
iSD 2, iUPD 3, iCPD 4, iNE 5: the code an ``irecist_state`` score stores).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

import numpy as np
from numpy.typing import ArrayLike

from models.changepoint.recist import (
    LesionMeasure,
    RecistConfig,
    Timepoint,
    nontarget_response,
    nontarget_volume,
    overall_response,
    sum_of_diameters,
    target_response,
)
from models.changepoint.result import ChangeResult
from schemas.enums import IRecistState, LesionRole, RecistResponse

BURDEN_SIGNAL = "tumour_sum_diameters_mm"
NEW_LESION_SIGNAL = "new_lesions"


@dataclass(frozen=True)
class IrecistConfig:
    """Thresholds of the RECIST 1.1 / iRECIST rules (the published values by default)."""

    progression_fraction: float = 0.20
    progression_min_mm: float = 5.0
    partial_response_fraction: float = 0.30
    confirm_min_mm: float = 5.0
    confirm_window_weeks: tuple[float, float] = (4.0, 8.0)
    accept_late_confirmation: bool = True
    confirm_volume_increase: float = 0.25
    """Smallest relative increase of a non-target (or new non-target) volume that confirms."""
    recist: RecistConfig = field(default_factory=RecistConfig)

    def __post_init__(self) -> None:
        if isinstance(self.recist, Mapping):  # from a site's settings (JSON)
            object.__setattr__(self, "recist", RecistConfig(**self.recist))
        lo, hi = self.confirm_window_weeks
        if not 0 <= lo <= hi:
            raise ValueError(
                f"confirm_window_weeks must be (low, high) with 0 <= low <= high, "
                f"got {self.confirm_window_weeks}"
            )
        if self.progression_fraction <= 0 or self.progression_min_mm < 0:
            raise ValueError("progression thresholds must be positive")
        if not 0 < self.partial_response_fraction < 1:
            raise ValueError("partial_response_fraction must be in (0, 1)")
        if self.confirm_volume_increase < 0:
            raise ValueError("confirm_volume_increase must be >= 0")

    def rules(self) -> RecistConfig:
        """The RECIST 1.1 thresholds with this config's progression and response values."""
        from dataclasses import replace

        return replace(
            self.recist,
            progression_fraction=self.progression_fraction,
            progression_min_mm=self.progression_min_mm,
            partial_response_fraction=self.partial_response_fraction,
        )


@dataclass(frozen=True)
class Assessment:
    """The state at one timepoint and why, with the RECIST 1.1 responses behind it."""

    index: int
    time: Any
    sum_mm: float
    """Sum of diameters of the target lesions (of the evaluable ones when ``target`` is NE)."""
    nadir_mm: float
    """Smallest target sum before this assessment, baseline included."""
    state: IRecistState
    reason: str
    recist: RecistResponse | None = None
    """RECIST 1.1 overall response at this timepoint (None at baseline)."""
    target: RecistResponse | None = None
    nontarget: RecistResponse | None = None
    new_lesions: int = 0
    """New lesions present (seen) at this timepoint."""
    new_appeared: int = 0
    """New lesions first seen at this timepoint."""
    new_target_sum_mm: float = 0.0
    nontarget_volume_ml: float | None = None


def _days(t: Any) -> float:
    """Days as a float from a number of days, a datetime or a timedelta-like value."""
    if hasattr(t, "timestamp"):
        return t.timestamp() / 86400.0
    return float(t)


def recist_progression(
    sums_mm: ArrayLike, new_lesions: ArrayLike | None = None, config: IrecistConfig | None = None
) -> int | None:
    """Index of the first RECIST 1.1 progression (20 per cent and 5 mm over the nadir, or new
    lesions), or ``None``. The plain, unconfirmed rule that iRECIST refines."""
    cfg = config or IrecistConfig()
    s = np.asarray(sums_mm, dtype=float)
    new = np.zeros(len(s), bool) if new_lesions is None else np.asarray(new_lesions, bool)
    nadir = np.inf
    for i, v in enumerate(s):
        if i > 0 and (
            new[i]
            or (v >= nadir * (1 + cfg.progression_fraction) and v - nadir >= cfg.progression_min_mm)
        ):
            return i
        nadir = min(nadir, v)
    return None


@dataclass
class _Iupd:
    """What an open iUPD was made of, for its confirmation."""

    assessment: Assessment
    target_pd: bool
    nontarget_pd: bool
    nontarget_volume: float | None
    new_seen: frozenset[str]
    """Every new lesion seen up to and including the iUPD."""
    new_target_sum: float
    new_nontarget_volumes: dict[str, float]


@dataclass
class _Nadirs:
    baseline_sum: float = 0.0
    target_sum: float = np.inf
    nontarget_volume: float | None = None
    overall_volume: float | None = None
    """Smallest volume of every target and non-target lesion together."""
    new_target_sum: float | None = None
    new_nontarget_volume: float | None = None
    new_ever: set[str] = field(default_factory=set)


def _min(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


class Irecist:
    """iRECIST state machine, one assessment at a time.

    Parameters
    ----------
    config:
        Thresholds and the confirmation window (:class:`IrecistConfig`).
    """

    def __init__(self, *, config: IrecistConfig | None = None) -> None:
        self.config = config or IrecistConfig()
        self.reset()

    def reset(self) -> Self:
        self.assessments_: list[Assessment] = []
        self._nadir = _Nadirs()
        self._iupd: _Iupd | None = None
        return self

    @property
    def state(self) -> IRecistState | None:
        return self.assessments_[-1].state if self.assessments_ else None

    # ------------------------------------------------------------------ entry points

    def update(self, sum_mm: float, time: Any, new_lesions: int = 0) -> Self:
        """Assess one timepoint from a sum of diameters (mm), its time (days or datetime) and
        the number of new (non-baseline) lesions present at it (``bool`` works too). Lesions
        count as appearing when the number exceeds every earlier assessment's."""
        v = float(sum_mm)
        if not np.isfinite(v) or v < 0:
            raise ValueError(f"sum of diameters must be finite and >= 0, got {sum_mm}")
        lesions = [
            LesionMeasure("sum", LesionRole.TARGET, long_axis_mm=v, seen=v > 0),
            *(
                LesionMeasure(f"new-{k + 1}", LesionRole.NEW_NON_TARGET)
                for k in range(int(new_lesions))
            ),
        ]
        return self.assess(Timepoint(time, tuple(lesions)))

    def assess(self, timepoint: Timepoint) -> Self:
        """Assess one timepoint from every tracked lesion (roles already assigned: target and
        non-target at baseline, new target / new non-target for lesions first seen later)."""
        if not self.assessments_:
            return self._baseline(timepoint)
        return self._follow_up(timepoint)

    def fit(
        self, sums_mm: ArrayLike, times: ArrayLike, new_lesions: ArrayLike | None = None
    ) -> Self:
        """Assess a whole burden series in order (see :meth:`update`)."""
        s = list(np.asarray(sums_mm, dtype=float))
        ts = list(times)
        if len(ts) != len(s):
            raise ValueError(f"{len(ts)} times for {len(s)} sums")
        new = [0] * len(s) if new_lesions is None else [int(x) for x in new_lesions]
        if len(new) != len(s):
            raise ValueError(f"{len(new)} new-lesion counts for {len(s)} sums")
        self.reset()
        for v, t, n in zip(s, ts, new, strict=True):
            self.update(v, t, n)
        return self

    def fit_timepoints(self, timepoints: Sequence[Timepoint]) -> Self:
        """Assess every timepoint in order (see :meth:`assess`)."""
        self.reset()
        for tp in timepoints:
            self.assess(tp)
        return self

    # ------------------------------------------------------------------ rules

    def _baseline(self, tp: Timepoint) -> Self:
        targets = tp.of(LesionRole.TARGET)
        total, _ = sum_of_diameters(targets)
        nt_volume = nontarget_volume(tp.of(LesionRole.NON_TARGET))
        self._nadir = _Nadirs(
            baseline_sum=total,
            target_sum=total,
            nontarget_volume=nt_volume,
            overall_volume=nontarget_volume(tp.of(LesionRole.TARGET, LesionRole.NON_TARGET)),
        )
        # no response is defined at baseline: reported as iSD (iCR for a zero target sum)
        state = IRecistState.ICR if targets and total == 0 else IRecistState.ISD
        self.assessments_.append(
            Assessment(0, tp.time, total, total, state, "baseline", nontarget_volume_ml=nt_volume)
        )
        return self

    def _follow_up(self, tp: Timepoint) -> Self:
        cfg = self.config
        rules = cfg.rules()
        nadir = self._nadir
        i = len(self.assessments_)
        prior = self.state

        targets = tp.of(LesionRole.TARGET)
        t_resp, t_sum = target_response(targets, nadir.baseline_sum, nadir.target_sum, rules)
        nontargets = tp.of(LesionRole.NON_TARGET)
        nt_volume = nontarget_volume(nontargets)
        overall_volume = nontarget_volume([*targets, *nontargets])  # the sum of their volumes
        nt_resp = nontarget_response(
            nontargets,
            nadir.nontarget_volume,
            tp.nontarget_unequivocal_progression,
            rules,
            overall=(overall_volume, nadir.overall_volume) if targets else None,
        )
        new = [m for m in tp.lesions if m.role.is_new and m.seen]
        new_uids = frozenset(m.tracking_uid for m in new)
        appeared = new_uids - nadir.new_ever
        nlt_sum, _ = sum_of_diameters(new, (LesionRole.NEW_TARGET,))
        nlnt = {
            m.tracking_uid: float(m.volume_ml)
            for m in new
            if m.role is LesionRole.NEW_NON_TARGET and m.volume_ml is not None
        }
        nlnt_volume = sum(nlnt.values()) if nlnt else None
        # RECIST 1.1 progression of the new lesions, outside an open iUPD
        new_pd = bool(appeared)
        if nadir.new_target_sum is not None and nlt_sum > 0:
            new_pd |= nlt_sum >= nadir.new_target_sum * (1 + rules.progression_fraction) and (
                nlt_sum - nadir.new_target_sum >= rules.progression_min_mm
            )
        if nadir.new_nontarget_volume is not None and nlnt_volume is not None:
            new_pd |= nlnt_volume >= nadir.new_nontarget_volume * (
                1 + rules.nontarget_progression_volume_fraction
            ) and (nlnt_volume - nadir.new_nontarget_volume >= rules.nontarget_progression_min_ml)

        recist = overall_response(t_resp, nt_resp, bool(new_uids))
        t_pd = t_resp is RecistResponse.PD
        nt_pd = nt_resp is RecistResponse.PD
        progressing = t_pd or nt_pd or bool(new_uids)
        plain = overall_response(t_resp, nt_resp, new_pd)

        iupd = self._iupd
        if prior is IRecistState.ICPD:
            state, reason = IRecistState.ICPD, "iCPD is final"
        elif iupd is not None and (progressing or plain is RecistResponse.NE):
            why = self._confirmation(
                iupd, t_pd, t_sum, nt_pd, nt_volume, tp, new_uids, nlt_sum, nlnt
            )
            weeks = (_days(tp.time) - _days(iupd.assessment.time)) / 7.0
            lo, hi = cfg.confirm_window_weeks
            in_window = lo <= weeks <= hi or (weeks > hi and cfg.accept_late_confirmation)
            if why and in_window:
                state, reason = IRecistState.ICPD, f"iCPD: {why} {weeks:.1f} weeks after iUPD"
            elif why and weeks < lo:
                state, reason = IRecistState.IUPD, f"iUPD: {weeks:.1f} weeks is before the window"
            elif why:
                state, reason = IRecistState.IUPD, f"iUPD: {weeks:.1f} weeks is after the window"
            elif progressing:
                state, reason = IRecistState.IUPD, "iUPD persists: not confirmed"
            else:
                state, reason = IRecistState.INE, "iNE: not evaluable; the iUPD stays open"
        elif iupd is not None:
            state = _istate(plain)
            reason = f"reset: {state.label}, no longer meets progression after iUPD"
            self._iupd = None
        elif plain is RecistResponse.PD:
            state = IRecistState.IUPD
            reason = "iUPD: " + ", ".join(
                w
                for w, hit in (
                    (
                        f"target sum {t_sum:.1f} mm >= {100 * rules.progression_fraction:.0f}% "
                        f"and {rules.progression_min_mm:.0f} mm over nadir "
                        f"{nadir.target_sum:.1f} mm",
                        t_pd,
                    ),
                    ("unequivocal non-target progression", nt_pd),
                    ("new lesions" if appeared else "new lesions progressing", new_pd),
                )
                if hit
            )
        else:
            state = _istate(plain)
            reason = state.label
        a = Assessment(
            i,
            tp.time,
            t_sum,
            nadir.target_sum,
            state,
            reason,
            recist=recist,
            target=t_resp,
            nontarget=nt_resp,
            new_lesions=len(new_uids),
            new_appeared=len(appeared),
            new_target_sum_mm=nlt_sum,
            nontarget_volume_ml=nt_volume,
        )
        if state is IRecistState.IUPD and self._iupd is None:
            self._iupd = _Iupd(
                a,
                t_pd,
                nt_pd,
                nt_volume,
                frozenset(nadir.new_ever | new_uids),
                nlt_sum,
                dict(nlnt),
            )
        self.assessments_.append(a)
        # nadirs, from evaluable values only
        if t_resp is not RecistResponse.NE and targets:
            nadir.target_sum = min(nadir.target_sum, t_sum)
        nadir.nontarget_volume = _min(nadir.nontarget_volume, nt_volume)
        nadir.overall_volume = _min(nadir.overall_volume, overall_volume)
        if nadir.new_ever or new_uids:
            nadir.new_target_sum = _min(nadir.new_target_sum, nlt_sum)
            nadir.new_nontarget_volume = _min(nadir.new_nontarget_volume, nlnt_volume or 0.0)
        nadir.new_ever |= new_uids
        return self

    def _confirmation(
        self,
        iupd: _Iupd,
        t_pd: bool,
        t_sum: float,
        nt_pd: bool,
        nt_volume: float | None,
        tp: Timepoint,
        new_uids: frozenset[str],
        nlt_sum: float,
        nlnt: dict[str, float],
    ) -> str:
        """Why this assessment confirms the open iUPD ("" when it does not)."""
        cfg = self.config
        grow = 1 + cfg.confirm_volume_increase
        reasons = []
        if t_pd and iupd.target_pd and t_sum - iupd.assessment.sum_mm >= cfg.confirm_min_mm:
            reasons.append(f"target sum up >= {cfg.confirm_min_mm:.0f} mm since iUPD")
        elif t_pd and not iupd.target_pd:
            reasons.append("target progression newly met")
        if nt_pd and not iupd.nontarget_pd:
            reasons.append("non-target progression newly met")
        elif iupd.nontarget_pd:
            if tp.nontarget_unequivocal_progression is not None:  # the reader's call governs
                if tp.nontarget_unequivocal_progression:
                    reasons.append("non-target lesions progressed further (reader)")
            elif (
                nt_volume is not None
                and iupd.nontarget_volume is not None
                and nt_volume > iupd.nontarget_volume * grow
            ):
                reasons.append("non-target lesions grew further")
        more = new_uids - iupd.new_seen
        if more:
            reasons.append(f"{len(more)} new lesion(s) since iUPD")
        if iupd.new_target_sum > 0 and nlt_sum - iupd.new_target_sum >= cfg.confirm_min_mm:
            reasons.append(f"new target lesions' sum up >= {cfg.confirm_min_mm:.0f} mm")
        before = {u: v for u, v in iupd.new_nontarget_volumes.items() if u in nlnt}
        if before and sum(nlnt[u] for u in before) > sum(before.values()) * grow:
            reasons.append("new non-target lesions grew")
        return "; ".join(reasons)

    def predict(self) -> ChangeResult:
        """Detected at iCPD; the change is the iUPD it confirms (or the open iUPD, with
        strength 0.5)."""
        if not self.assessments_:
            raise ValueError("no assessments: call update() or fit() first")
        index, strength = progression_start([a.state for a in self.assessments_])
        shift = {}
        if index is not None:
            a = self.assessments_[index]
            shift[BURDEN_SIGNAL] = a.sum_mm - a.nadir_mm
        return ChangeResult(
            detector="irecist",
            detected=strength == 1.0,
            index=index,
            time=self.assessments_[index].time if index is not None else None,
            strength=strength,
            signals=(BURDEN_SIGNAL,) if index is not None else (),
            shifts=shift,
            detail={
                "states": [a.state.label for a in self.assessments_],
                "reasons": [a.reason for a in self.assessments_],
            },
        )


def progression_start(states: Sequence[IRecistState]) -> tuple[int | None, float]:
    """Where the progression of a sequence of iRECIST states began, and how sure it is: the
    iUPD that the first iCPD confirms (strength 1), else the start of an open iUPD at the end
    (strength 0.5), else ``(None, 0)``."""
    states = list(states)
    if IRecistState.ICPD in states:
        first_cpd = states.index(IRecistState.ICPD)
        index = first_cpd
        while index > 0 and states[index - 1] in (IRecistState.IUPD, IRecistState.INE):
            index -= 1
        while states[index] is not IRecistState.IUPD and index < first_cpd:
            index += 1
        return index, 1.0
    if states and states[-1] is IRecistState.IUPD:
        index = len(states) - 1
        while index > 0 and states[index - 1] is IRecistState.IUPD:
            index -= 1
        return index, 0.5
    return None, 0.0


def _istate(response: RecistResponse) -> IRecistState:
    """The iRECIST state of a RECIST 1.1 overall response (non-CR/non-PD reads as iSD)."""
    return {
        RecistResponse.CR: IRecistState.ICR,
        RecistResponse.PR: IRecistState.IPR,
        RecistResponse.SD: IRecistState.ISD,
        RecistResponse.NON_CR_NON_PD: IRecistState.ISD,
        RecistResponse.PD: IRecistState.IUPD,
        RecistResponse.NE: IRecistState.INE,
    }[response]
