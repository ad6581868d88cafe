"""The combined decision rule: detectors' evidence -> one calibrated probability -> a flag.

At every assessment ``t`` the rule computes features from what is known at ``t`` only:

=================  ===========================================================================
``rise``           log(sum of diameters / nadir before t)
``step``           log(sum_t / sum_{t-1})
``volume_rise``    log(volume / volume nadir before t) (3 x ``rise`` without volumes)
``persist``        min of the last two log steps of volume (> 0: two consecutive increases)
``bocpd``          BOCPD's probability of an upward change within the last two assessments
                   (log burden and log volume, Normal-Gamma / Student-t, hazard 1/10)
``cusum``          1 - p of the statsmodels CUSUM test on log burden, when the break is upward
``immune``         mean CT immune score so far (0.5, the neutral score, when not measured)
``response``       logit of the latest response probability (0 when not measured)
``early_rise``     ``rise`` when t is within ``early_window_weeks`` of the first assessment
                   (where pseudo-progression concentrates)
``iupd``/``icpd``  the iRECIST state at t
=================  ===========================================================================

The iRECIST state at t is the series' own when it carries one (``irecist_states``: the stored
assessment over every tracked lesion, with iRECIST's new-lesion rules); otherwise the rule
assesses the sum of diameters and the new-lesion counts itself (:meth:`Irecist.update`).

``P(non-response has begun | features) = sigmoid(w . features + b)``, a logistic model fitted
on a story-v2 tuning cohort from the trained models' own outputs (``python -m
bench.changepoint_pipeline fit``; label: the patient's true RECIST progression has happened).
The coefficients shipped here come from that command (:data:`DEFAULT_COEFFICIENTS`), and so do
the policy defaults of :class:`DecisionConfig` (threshold 0.35, no early-window confirmation),
chosen by the objective stated in that benchmark: no more responder false alarms per
patient-year than RECIST 1.1 and at most a quarter of its pseudo-progression alarms on the
tuning cohort, then the earliest detection of progression.

A ``suspected_non_response`` flag fires at the first assessment where the probability reaches
the site's ``threshold`` (with ``confirm="repeat"``: at two consecutive assessments) once
``min_timepoints`` assessments exist. A ``confirmed_progression`` flag fires at iCPD when
``flag_confirmed_progression``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal, Self

import numpy as np
from scipy.optimize import minimize

from models.changepoint.bocpd import Bocpd
from models.changepoint.cusum import Cusum
from models.changepoint.irecist import BURDEN_SIGNAL, Irecist, IrecistConfig, progression_start
from models.changepoint.result import ChangeResult
from models.changepoint.series import (
    IMMUNE_SCORE,
    RESPONSE_PROBABILITY,
    SUM_DIAMETERS,
    VOLUME,
    PatientSeries,
)
from schemas.enums import IRecistState

RULE_NAME = "irtmon-changepoint"
RULE_VERSION = "1.0.0"

HPD_SUM_INCREASE = 0.40
"""Matos et al., Clin Cancer Res 2020;26:1846: hyperprogression at the first evaluation when
the sum of target diameters is more than 40 % over baseline."""
HPD_NEW_LESIONS = 2
"""Matos et al. 2020: or at least two new lesions (in an organ already involved)."""

FEATURES = (
    "rise",
    "step",
    "volume_rise",
    "persist",
    "bocpd",
    "cusum",
    "immune",
    "response",
    "early_rise",
    "iupd",
    "icpd",
)


@dataclass(frozen=True)
class Coefficients:
    """Weights of the logistic combination (one per feature) and its intercept."""

    intercept: float
    weights: dict[str, float]
    version: str = "uncalibrated"

    def __post_init__(self) -> None:
        unknown = set(self.weights) - set(FEATURES)
        if unknown:
            raise ValueError(f"unknown features {sorted(unknown)}; known: {FEATURES}")

    def vector(self) -> np.ndarray:
        return np.array([self.weights.get(f, 0.0) for f in FEATURES])


# Fitted by `python -m bench.changepoint_pipeline fit` on the story-v2 tuning cohort
# (v2-tune-22202, 150 patients, 6 scans each) from the outputs of the evaluated models (v2-d:
# ct-signature and response, response-v2-d) scored as the worker scores them, with the stored
# per-lesion iRECIST states; label: the patient's true RECIST progression has happened. The
# policy file beside the evaluation protocol keeps the fit and every policy tried
# (docs/evaluation/changepoint-policy-v2.json). The previous coefficients (vclinic2-seed2026-n1000,
# fitted on simulated scores of story v1) weighted early growth at -9.3, which taught the rule
# to ignore rises in the first 12 weeks, where hyperprogression happens; fitted on story v2's
# hyperprogressions the weight is positive.
DEFAULT_COEFFICIENTS = Coefficients(
    intercept=-6.2874,
    weights={
        "rise": 0.0975,
        "step": 1.205,
        "volume_rise": 1.0875,
        "persist": -0.3569,
        "bocpd": 1.4949,
        "cusum": 0.1831,
        "immune": 0.4671,
        "response": -0.9881,
        "early_rise": 1.5721,
        "iupd": 2.4324,
        "icpd": 3.562,
    },
    version="v2-tune-22202-models-v2-d",
)


@dataclass(frozen=True)
class DecisionConfig:
    """A site's alerting policy.

    Parameters
    ----------
    threshold:
        Calibrated probability at which ``suspected_non_response`` fires (default: the
        objective's choice on the tuning cohort, module docstring).
    min_timepoints:
        Fewest assessments (baseline included) before any flag.
    confirm:
        ``"none"``: flag at the first assessment over the threshold; ``"repeat"``: only when two
        consecutive assessments are over it (slower, fewer false alarms).
    early_window_weeks:
        The pseudo-progression window after the first assessment (feature ``early_rise``).
    confirm_early:
        Within that window, hold a flag until the next assessment is over the threshold too
        (the iRECIST idea, applied only where pseudo-progression concentrates). Off by default:
        on the tuning cohort it delayed every hyperprogression by one scan and spared no
        pseudo-progression that the response probability did not already spare.
    hyperprogression_bypass:
        With ``confirm_early``: do not hold a flag for confirmation at a scan that already meets
        a RECIST-based definition of hyperprogression at the first evaluation (Matos et al.,
        Clin Cancer Res 2020;26:1846): the sum of diameters more than 40 % over baseline
        (:data:`HPD_SUM_INCREASE`), or at least two new lesions (:data:`HPD_NEW_LESIONS`;
        Matos counts two new lesions in an organ already involved, or spread to a new organ:
        the series carries counts, not organs). Off by default.
    flag_confirmed_progression:
        Also raise ``confirmed_progression`` at iRECIST iCPD.
    irecist:
        RECIST / iRECIST thresholds and confirmation window.
    coefficients:
        The calibrated logistic combination.
    """

    threshold: float = 0.35
    min_timepoints: int = 2
    confirm: Literal["none", "repeat"] = "none"
    early_window_weeks: float = 12.0
    confirm_early: bool = False
    hyperprogression_bypass: bool = False
    flag_confirmed_progression: bool = True
    irecist: IrecistConfig = field(default_factory=IrecistConfig)
    coefficients: Coefficients = field(default_factory=lambda: DEFAULT_COEFFICIENTS)

    def __post_init__(self) -> None:
        if not 0 < self.threshold < 1:
            raise ValueError(f"threshold must be a probability in (0, 1), got {self.threshold}")
        if self.min_timepoints < 2:
            raise ValueError(
                f"min_timepoints must be at least 2 (a baseline and one follow-up), "
                f"got {self.min_timepoints}"
            )
        if self.confirm not in ("none", "repeat"):
            raise ValueError(f"confirm must be 'none' or 'repeat', got {self.confirm!r}")
        if self.early_window_weeks < 0:
            raise ValueError("early_window_weeks must be >= 0")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> DecisionConfig:
        """Build from a site's settings (a dict, e.g. parsed JSON); unknown keys are refused."""
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown decision settings {sorted(unknown)}; known: {sorted(known)}")
        kw = dict(values)
        if isinstance(kw.get("irecist"), Mapping):
            irc = dict(kw["irecist"])
            if "confirm_window_weeks" in irc:
                irc["confirm_window_weeks"] = tuple(irc["confirm_window_weeks"])
            kw["irecist"] = IrecistConfig(**irc)
        if isinstance(kw.get("coefficients"), Mapping):
            kw["coefficients"] = Coefficients(**kw["coefficients"])
        return cls(**kw)

    def to_mapping(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Flag:
    """One raised flag."""

    kind: str  # schemas.enums.AlertKind value
    index: int  # assessment at which it fired
    change_index: int  # estimated start of the change
    probability: float
    signals: tuple[str, ...]


@dataclass(frozen=True)
class Decision:
    """What the rule concluded over a patient's series."""

    probabilities: np.ndarray  # per assessment (NaN before min_timepoints)
    flags: tuple[Flag, ...]
    detectors: dict[str, ChangeResult]
    states: tuple[IRecistState, ...]  # iRECIST state per assessment
    model_versions: dict[str, str]

    @property
    def flagged(self) -> bool:
        return bool(self.flags)

    def flag(self, kind: str) -> Flag | None:
        return next((f for f in self.flags if f.kind == kind), None)


def _logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))


def _last_finite(a: np.ndarray | None, t: int) -> float | None:
    if a is None:
        return None
    vals = a[: t + 1]
    vals = vals[np.isfinite(vals)]
    return float(vals[-1]) if len(vals) else None


NEUTRAL_IMMUNE = 0.5
"""The ``immune`` feature of a patient with no CT immune score yet: the middle of the score's
0-to-1 range, as the response model reads a missing score (:mod:`models.response.history`) and
as a missing response probability enters ``response`` (logit 0). Until 2026-12-02 it was 0, the
low end: a burden-only series read as an immune-cold patient. Harmless with the shipped immune
weight (0.47); the policy fitted with the v2-h models weights the score at 3.95
(docs/evaluation/changepoint-policy-v2-h.json), and with 0 for a missing score it flagged
steady growth without scores a scan later than RECIST 1.1."""


def features(
    series: PatientSeries, early_window_weeks: float = 12.0, irecist: IrecistConfig | None = None
) -> np.ndarray:
    """Feature matrix (assessments x :data:`FEATURES`); row ``t`` uses assessments 0..t only."""
    n = len(series)
    out = np.zeros((n, len(FEATURES)))
    if n == 0:
        return out
    ls = np.log(np.maximum(series.sum_diameters_mm, 1.0))
    vol = series.volume_ml
    if vol is not None and np.all(np.isfinite(vol)) and np.all(vol > 0):
        lv = np.log(vol)
    else:
        lv = 3.0 * ls  # a sphere's volume goes as the cube of its diameter
    days = series.days
    machine = Irecist(config=irecist)
    bocpd = Bocpd(
        expected_run=10.0, mu0=0.0, kappa0=0.05, alpha0=2.0, beta0=[0.06**2, 0.15**2], window=2
    )
    col = {name: i for i, name in enumerate(FEATURES)}
    given = series.irecist_states
    for t in range(n):
        if given is None:
            machine.update(series.sum_diameters_mm[t], days[t], int(series.new_lesions[t]))
        state = given[t] if given is not None else machine.state
        bocpd.update([ls[t] - ls[0], lv[t] - lv[0]])
        if t == 0:
            continue
        f = out[t]
        f[col["rise"]] = ls[t] - ls[:t].min()
        f[col["step"]] = ls[t] - ls[t - 1]
        f[col["volume_rise"]] = lv[t] - lv[:t].min()
        if t >= 2:
            f[col["persist"]] = min(lv[t] - lv[t - 1], lv[t - 1] - lv[t - 2])
        res = bocpd.predict()
        recent = bocpd.strength_history_[-1]
        if res.index is not None and res.shifts.get("x0", 0.0) > 0 and res.index >= t - 1:
            f[col["bocpd"]] = recent
        if t >= 3:
            c = Cusum(min_size=4).fit(ls[: t + 1] - ls[0]).predict()
            if c.shifts.get("x0", 0.0) > 0:
                f[col["cusum"]] = c.strength
        imm = series.immune_score
        vals = np.array([]) if imm is None else imm[: t + 1][np.isfinite(imm[: t + 1])]
        f[col["immune"]] = float(vals.mean()) if len(vals) else NEUTRAL_IMMUNE
        rp = _last_finite(series.response_probability, t)
        f[col["response"]] = _logit(rp) if rp is not None else 0.0
        if days[t] <= early_window_weeks * 7:
            f[col["early_rise"]] = f[col["rise"]]
        f[col["iupd"]] = float(state is IRecistState.IUPD)
        f[col["icpd"]] = float(state is IRecistState.ICPD)
    return out


class DecisionRule:
    """BOCPD, CUSUM and iRECIST combined by a calibrated logistic model into alert flags.

    Parameters
    ----------
    config:
        The site's policy (:class:`DecisionConfig`).
    """

    def __init__(self, *, config: DecisionConfig | None = None) -> None:
        self.config = config or DecisionConfig()

    def fit(self, series: PatientSeries) -> Self:
        """Evaluate the rule over ``series`` (assessment by assessment, no look-ahead)."""
        cfg = self.config
        self.series_ = series
        n = len(series)
        self.features_ = features(series, cfg.early_window_weeks, cfg.irecist)
        z = self.features_ @ cfg.coefficients.vector() + cfg.coefficients.intercept
        p = 1.0 / (1.0 + np.exp(-z))
        p[: max(cfg.min_timepoints - 1, 1)] = np.nan
        self.probabilities_ = p
        days = series.days
        self.irecist_ = Irecist(config=cfg.irecist).fit(
            series.sum_diameters_mm, days, series.new_lesions
        )
        ls = np.log(np.maximum(series.sum_diameters_mm, 1.0))
        self.bocpd_ = Bocpd(
            expected_run=10.0, kappa0=0.05, beta0=0.06**2, names=[SUM_DIAMETERS]
        ).fit(ls - ls[0] if n else ls)
        self.cusum_ = Cusum(names=[SUM_DIAMETERS]).fit(ls - ls[0] if n else ls)
        return self

    def _signals(self, t: int) -> tuple[str, ...]:
        s = self.series_
        moved = []
        f = dict(zip(FEATURES, self.features_[t], strict=True))
        if f["rise"] > 0:
            moved.append(SUM_DIAMETERS)
        if s.volume_ml is not None and f["volume_rise"] > 0:
            moved.append(VOLUME)
        rp = s.response_probability
        if rp is not None and np.isfinite(rp[t]) and rp[t] < np.nanmax(rp[: t + 1]):
            moved.append(RESPONSE_PROBABILITY)
        imm = s.immune_score
        if imm is not None and np.isfinite(imm[t]) and imm[t] < np.nanmean(imm[: t + 1]):
            moved.append(IMMUNE_SCORE)
        return tuple(moved)

    def hyperprogression_at(self, t: int) -> bool:
        """Whether assessment ``t`` meets the RECIST-based hyperprogression criterion
        (:data:`HPD_SUM_INCREASE` over baseline, or :data:`HPD_NEW_LESIONS` new lesions)."""
        s = self.series_.sum_diameters_mm
        grown = bool(s[0] > 0 and s[t] > (1.0 + HPD_SUM_INCREASE) * s[0])
        return grown or int(self.series_.new_lesions[t]) >= HPD_NEW_LESIONS

    def _change_index(self, t: int) -> int:
        """Start of the current rise: the assessment after the last nadir before ``t``."""
        ls = self.series_.sum_diameters_mm[: t + 1]
        nadir = int(np.argmin(ls[:t])) if t > 0 else 0
        return min(nadir + 1, t)

    def _states(self) -> tuple[IRecistState, ...]:
        """The iRECIST state per assessment: the series' own (assessed over every lesion) when
        it carries them, else the rule's assessment of the sum of diameters."""
        given = self.series_.irecist_states
        if given is not None:
            return tuple(given)
        return tuple(a.state for a in self.irecist_.assessments_)

    def _irecist_result(self) -> ChangeResult:
        if self.series_.irecist_states is None:
            return self.irecist_.predict()
        states = self._states()
        index, strength = progression_start(states)
        s = self.series_.sum_diameters_mm
        shifts = {}
        if index is not None:
            shifts[BURDEN_SIGNAL] = float(s[index] - (s[:index].min() if index else s[0]))
        return ChangeResult(
            detector="irecist",
            detected=strength == 1.0,
            index=index,
            time=self.series_.times[index] if index is not None else None,
            strength=strength,
            signals=(BURDEN_SIGNAL,) if index is not None else (),
            shifts=shifts,
            detail={"states": [st.label for st in states], "source": "lesions"},
        )

    def predict(self) -> Decision:
        if not hasattr(self, "series_"):
            raise ValueError("call fit() first")
        cfg = self.config
        p = self.probabilities_
        n = len(p)
        flags: list[Flag] = []
        over = np.nan_to_num(p, nan=0.0) >= cfg.threshold
        for t in range(n):
            if t + 1 < cfg.min_timepoints or not over[t]:
                continue
            early = self.series_.days[t] <= cfg.early_window_weeks * 7
            hold = cfg.confirm_early and early
            if hold and cfg.hyperprogression_bypass and self.hyperprogression_at(t):
                hold = False
            needs_repeat = cfg.confirm == "repeat" or hold
            if needs_repeat and not (t > 0 and over[t - 1]):
                continue
            flags.append(
                Flag(
                    "suspected_non_response",
                    t,
                    self._change_index(t),
                    float(p[t]),
                    self._signals(t),
                )
            )
            break
        states = self._states()
        if cfg.flag_confirmed_progression and IRecistState.ICPD in states:
            t = states.index(IRecistState.ICPD)
            start, _ = progression_start(states)
            prob = float(p[t]) if np.isfinite(p[t]) else 1.0
            flags.append(
                Flag(
                    "confirmed_progression",
                    t,
                    start if start is not None else t,
                    max(prob, 0.95),
                    (SUM_DIAMETERS,),
                )
            )
        versions = {
            "decision_rule": f"{RULE_NAME}/{RULE_VERSION}",
            "coefficients": cfg.coefficients.version,
        }
        versions.update(self.series_.model_versions)
        return Decision(
            probabilities=p,
            flags=tuple(flags),
            detectors={
                "bocpd": self.bocpd_.predict() if n else ChangeResult("bocpd", False),
                "cusum": self.cusum_.predict() if n else ChangeResult("cusum", False),
                "irecist": self._irecist_result() if n else ChangeResult("irecist", False),
            },
            states=states,
            model_versions=versions,
        )


def calibrate(
    rows: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    l2: float = 0.1,
    version: str = "calibrated",
) -> Coefficients:
    """Fit the logistic combination (L2-penalised maximum likelihood, intercept unpenalised).

    ``rows[i]`` is :func:`features` of patient ``i`` and ``labels[i]`` its 0/1 label per
    assessment (1: non-response has begun); assessment 0 (the baseline) is left out.
    """
    x_all = np.vstack([r[1:] for r in rows])
    y = np.concatenate([np.asarray(lab, float)[1:] for lab in labels])
    if x_all.shape[0] != y.shape[0]:
        raise ValueError("one label per assessment is needed")

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = x_all @ w[1:] + w[0]
        p = 1.0 / (1.0 + np.exp(-z))
        nll = np.sum(np.logaddexp(0.0, z) - y * z)
        g = p - y
        grad = np.concatenate([[g.sum()], x_all.T @ g + 2 * l2 * w[1:]])
        return nll + l2 * float(w[1:] @ w[1:]), grad

    res = minimize(loss, np.zeros(x_all.shape[1] + 1), jac=True, method="L-BFGS-B")
    w = res.x
    return Coefficients(
        intercept=round(float(w[0]), 4),
        weights={f: round(float(v), 4) for f, v in zip(FEATURES, w[1:], strict=True)},
        version=version,
    )


def with_coefficients(config: DecisionConfig, coefficients: Coefficients) -> DecisionConfig:
    return replace(config, coefficients=coefficients)
