"""Intervals for alert and change-point evaluation: proportions (Wilson), event rates per
patient-year (Poisson exact, or a patient bootstrap), and median detection delays
(patient bootstrap).

Conventions for the callers (the change-point benchmark): one value per patient; a delay is
the detector's first flag minus the reference's (RECIST 1.1, or the true change), in scans or
in days, so a negative delay is earlier; a patient never flagged is given a censoring value
(for example one scan past the last) rather than dropped, and the median stays meaningful
while fewer than half are censored.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import chi2, norm

from models.evaluation import metrics
from models.evaluation.estimate import Estimate, IntervalMethod
from models.evaluation.resampling import DEFAULT_LEVEL, DEFAULT_RESAMPLES, bootstrap


def wilson(successes: int, total: int, *, level: float = DEFAULT_LEVEL) -> Estimate:
    """A proportion with its Wilson score interval (Wilson 1927; Newcombe 1998, method 3)."""
    if total < 0 or not 0 <= successes <= total:
        raise ValueError(f"need 0 <= successes <= total, got {successes} of {total}")
    if total == 0:
        nan = float("nan")
        return Estimate(nan, nan, nan, level, IntervalMethod.WILSON, 0, {"successes": 0})
    z = norm.ppf(0.5 + level / 2.0)
    phat = successes / total
    denom = 1.0 + z * z / total
    centre = (phat + z * z / (2 * total)) / denom
    half = z * np.sqrt(phat * (1 - phat) / total + z * z / (4 * total * total)) / denom
    return Estimate(
        value=phat,
        # bounded to [0, 1] and around the estimate (rounding can put p = 0 or 1 outside)
        lower=float(min(max(0.0, centre - half), phat)),
        upper=float(max(min(1.0, centre + half), phat)),
        level=level,
        method=IntervalMethod.WILSON,
        n=int(total),
        details={"successes": int(successes)},
    )


def poisson_rate(
    events: int, exposure: float, *, level: float = DEFAULT_LEVEL, units: int | None = None
) -> Estimate:
    """Events per unit of exposure with the exact (Garwood 1936) Poisson interval.

    ``units`` is the number of patients behind the exposure (reported as ``n``). The exact
    interval assumes events occur independently at one rate; when patients differ, prefer
    :func:`false_alarm_rate` with ``method='bootstrap'``.
    """
    if events < 0 or exposure <= 0:
        raise ValueError(f"need events >= 0 and exposure > 0, got {events} and {exposure}")
    alpha = 1.0 - level
    lower = 0.0 if events == 0 else chi2.ppf(alpha / 2.0, 2 * events) / 2.0
    upper = chi2.ppf(1.0 - alpha / 2.0, 2 * events + 2) / 2.0
    return Estimate(
        value=events / exposure,
        lower=float(lower / exposure),
        upper=float(upper / exposure),
        level=level,
        method=IntervalMethod.POISSON_EXACT,
        n=int(units) if units is not None else 0,
        details={"events": int(events), "exposure": float(exposure)},
    )


def false_alarm_rate(
    alarms: ArrayLike,
    years: ArrayLike,
    *,
    method: IntervalMethod | str = IntervalMethod.POISSON_EXACT,
    level: float = DEFAULT_LEVEL,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Estimate:
    """False alarms per patient-year from one count and one follow-up time per patient.

    ``method``: :attr:`IntervalMethod.POISSON_EXACT` (sums, exact interval) or a bootstrap
    method (patients resampled; the rate is a ratio of sums), which allows patients to differ
    in their alarm rates.
    """
    a = np.asarray(alarms, dtype=float)
    t = np.asarray(years, dtype=float)
    if a.shape != t.shape or a.ndim != 1:
        raise ValueError(f"one alarm count and one exposure per patient, got {a.shape}, {t.shape}")
    if (t < 0).any() or (a < 0).any():
        raise ValueError("alarm counts and exposures must be non-negative")
    method = IntervalMethod(method)
    if method is IntervalMethod.POISSON_EXACT:
        return poisson_rate(int(np.rint(a.sum())), float(t.sum()), level=level, units=a.size)
    est = bootstrap(
        metrics.ratio_of_sums,
        a,
        t,
        n_resamples=n_resamples,
        level=level,
        method=method,
        seed=seed,
    )
    est.details.update({"events": int(np.rint(a.sum())), "exposure": float(t.sum())})
    return est


def median_delay(
    delays: ArrayLike,
    *,
    level: float = DEFAULT_LEVEL,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Estimate:
    """Median of per-patient delays (scans or days) with a patient bootstrap percentile
    interval (BCa is not used: the jackknife misjudges a median's acceleration)."""
    d = np.asarray(delays, dtype=float)
    if d.ndim != 1 or not np.isfinite(d).all():
        raise ValueError(
            "delays must be one finite number per patient (give a never-flagged patient a "
            "censoring value, such as one scan past the last)"
        )
    est = bootstrap(
        metrics.weighted_median,
        d,
        n_resamples=n_resamples,
        level=level,
        method=IntervalMethod.BOOTSTRAP_PERCENTILE,
        seed=seed,
    )
    est.details["mean"] = float(d.mean()) if d.size else float("nan")
    return est
