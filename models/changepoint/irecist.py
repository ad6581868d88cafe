"""RECIST 1.1 and iRECIST on tumour burden (sum of longest diameters), as a state machine.

Rules (Eisenhauer et al. 2009; Seymour et al., Lancet Oncol 2017):

* **Baseline** is the first assessment; the **nadir** is the smallest sum seen so far, baseline
  included.
* **Progression by RECIST 1.1**: the sum is at least 20 per cent over the nadir *and* at least
  5 mm over it, or new lesions appear. Under iRECIST the first such assessment is **iUPD**
  (unconfirmed progression).
* **Confirmation** (iCPD) at the next assessment 4 to 8 weeks after iUPD: a further increase of
  at least 5 mm in the sum over the iUPD sum, or new lesions (beyond those seen at iUPD), or
  unequivocal non-target progression. An assessment earlier than the window cannot confirm
  (the state stays iUPD); one later than the window confirms only when
  ``accept_late_confirmation`` (the default: the next assessment is what iRECIST asks for, and
  follow-up intervals of 9 weeks are common).
* **Reset**: after iUPD, an assessment that no longer meets the progression criteria (iSD,
  iPR or iCR: the sum is under the threshold and no new lesion is present) resets the
  machine; a later progression is a new iUPD. iCPD is final.
* **Response**: iCR when the sum is 0 and no new lesion; iPR at a 30 per cent decrease from
  baseline; iSD otherwise.

States are coded as in ``schemas.enums.IRecistState`` (iCR 0, iPR 1, iSD 2, iUPD 3,
iCPD 4), so an ``irecist_state`` score can store :attr:`IrecistState.code`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Self

import numpy as np
from numpy.typing import ArrayLike

from models.changepoint.result import ChangeResult

BURDEN_SIGNAL = "tumour_sum_diameters_mm"
NEW_LESION_SIGNAL = "new_lesions"


class IrecistState(StrEnum):
    """iRECIST overall response at one assessment."""

    ICR = "iCR"
    IPR = "iPR"
    ISD = "iSD"
    IUPD = "iUPD"
    ICPD = "iCPD"
    INE = "iNE"

    @property
    def code(self) -> int:
        """Numeric code stored as the ``irecist_state`` score (iCR 0 ... iCPD 4, iNE 5)."""
        return list(IrecistState).index(self)


@dataclass(frozen=True)
class IrecistConfig:
    """Thresholds of the RECIST 1.1 / iRECIST rules (the published values by default)."""

    progression_fraction: float = 0.20
    progression_min_mm: float = 5.0
    partial_response_fraction: float = 0.30
    confirm_min_mm: float = 5.0
    confirm_window_weeks: tuple[float, float] = (4.0, 8.0)
    accept_late_confirmation: bool = True

    def __post_init__(self) -> None:
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


@dataclass(frozen=True)
class Assessment:
    """The state at one timepoint and why."""

    index: int
    time: Any
    sum_mm: float
    nadir_mm: float
    state: IrecistState
    reason: str


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


class Irecist:
    """iRECIST state machine over a burden series, one assessment at a time.

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
        self._baseline: float | None = None
        self._nadir = np.inf
        self._iupd: Assessment | None = None
        self._iupd_new_lesions = 0
        self._max_new = 0
        return self

    @property
    def state(self) -> IrecistState | None:
        return self.assessments_[-1].state if self.assessments_ else None

    def update(self, sum_mm: float, time: Any, new_lesions: int = 0) -> Self:
        """Assess one timepoint: the sum of diameters (mm), its time (days or datetime) and the
        number of new (non-baseline) lesions present at it (``bool`` works too). Lesions count
        as appearing when the number exceeds every earlier assessment's."""
        cfg = self.config
        v = float(sum_mm)
        if not np.isfinite(v) or v < 0:
            raise ValueError(f"sum of diameters must be finite and >= 0, got {sum_mm}")
        n_new = int(new_lesions)
        i = len(self.assessments_)
        if self._baseline is None:
            self._baseline = v
            self._nadir = v
            state = IrecistState.ICR if v == 0 else IrecistState.ISD
            self.assessments_.append(Assessment(i, time, v, v, state, "baseline"))
            return self
        nadir = self._nadir
        prior = self.state
        growth = v >= nadir * (1 + cfg.progression_fraction) and v - nadir >= cfg.progression_min_mm
        appeared = n_new > self._max_new  # lesions not present at any earlier assessment
        progressing = growth or appeared
        if prior is IrecistState.ICPD:
            state, reason = IrecistState.ICPD, "iCPD is final"
        elif prior is IrecistState.IUPD and self._iupd is not None:
            weeks = (_days(time) - _days(self._iupd.time)) / 7.0
            lo, hi = cfg.confirm_window_weeks
            in_window = lo <= weeks <= hi or (weeks > hi and cfg.accept_late_confirmation)
            further = v - self._iupd.sum_mm >= cfg.confirm_min_mm
            more_new = n_new > self._iupd_new_lesions
            if not (growth or n_new > 0):  # new lesions still present keep iUPD
                state, reason = self._response(v), "reset: no longer meets progression after iUPD"
                self._iupd = None
            elif in_window and (further or more_new):
                why = (
                    f"further increase of >= {cfg.confirm_min_mm:.0f} mm"
                    if further
                    else ("new lesions")
                )
                state, reason = IrecistState.ICPD, f"iCPD: {why} {weeks:.1f} weeks after iUPD"
            elif not in_window and weeks < lo:
                state, reason = IrecistState.IUPD, f"iUPD: {weeks:.1f} weeks is before the window"
            elif not in_window:
                state, reason = IrecistState.IUPD, f"iUPD: {weeks:.1f} weeks is after the window"
            else:
                state, reason = IrecistState.IUPD, "iUPD persists: not confirmed"
        elif progressing:
            why = (
                "new lesions"
                if appeared and not growth
                else (
                    f"sum {v:.1f} mm >= {100 * cfg.progression_fraction:.0f}% and "
                    f"{cfg.progression_min_mm:.0f} mm over nadir {nadir:.1f} mm"
                )
            )
            state, reason = IrecistState.IUPD, f"iUPD: {why}"
        else:
            state = self._response(v)
            reason = state.value
        a = Assessment(i, time, v, nadir, state, reason)
        if state is IrecistState.IUPD and prior is not IrecistState.IUPD:
            self._iupd = a
            self._iupd_new_lesions = n_new
        self.assessments_.append(a)
        self._nadir = min(self._nadir, v)
        self._max_new = max(self._max_new, n_new)
        return self

    def _response(self, v: float) -> IrecistState:
        assert self._baseline is not None
        if v == 0:
            return IrecistState.ICR
        if v <= self._baseline * (1 - self.config.partial_response_fraction):
            return IrecistState.IPR
        return IrecistState.ISD

    def fit(
        self, sums_mm: ArrayLike, times: ArrayLike, new_lesions: ArrayLike | None = None
    ) -> Self:
        """Assess a whole series in order."""
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

    def predict(self) -> ChangeResult:
        """Detected at iCPD; the change is the iUPD it confirms (or the open iUPD, with
        strength 0.5)."""
        if not self.assessments_:
            raise ValueError("no assessments: call update() or fit() first")
        states = [a.state for a in self.assessments_]
        index, strength = None, 0.0
        if IrecistState.ICPD in states:
            first_cpd = states.index(IrecistState.ICPD)
            index = first_cpd
            while index > 0 and states[index - 1] is IrecistState.IUPD:
                index -= 1
            strength = 1.0
        elif states[-1] is IrecistState.IUPD:
            index = len(states) - 1
            while index > 0 and states[index - 1] is IrecistState.IUPD:
                index -= 1
            strength = 0.5
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
                "states": [a.state.value for a in self.assessments_],
                "reasons": [a.reason for a in self.assessments_],
            },
        )
