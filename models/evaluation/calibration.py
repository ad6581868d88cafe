"""Calibration of a probability, one row per patient: slope and intercept of the logistic
recalibration, ECE over equal-mass bins, each with a patient bootstrap interval, and the
reliability table behind a calibration plot.

The slope ``b`` and the joint intercept come from ``logit P(y) = a + b logit(p)``; the
reported intercept is calibration-in-the-large, ``a`` with ``b`` fixed at 1 (Van Calster et
al., J Clin Epidemiol 2016: "weak calibration"). Ideal: slope 1, intercept 0, ECE 0. The ECE
of a perfectly calibrated model is not 0 on a finite sample: :func:`ece_noise_floor` tells
what it would be on the same predictions.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from models.evaluation import metrics
from models.evaluation.alerts import wilson
from models.evaluation.estimate import Estimate, IntervalMethod
from models.evaluation.resampling import DEFAULT_LEVEL, DEFAULT_RESAMPLES, bootstrap
from models.evaluation.rows import Aggregate, one_row_per_patient

DEFAULT_BINS = 10


def calibration_summary(
    y: ArrayLike,
    p: ArrayLike,
    *,
    groups: ArrayLike | None = None,
    aggregate: Aggregate | str | None = None,
    n_bins: int = DEFAULT_BINS,
    level: float = DEFAULT_LEVEL,
    n_resamples: int = DEFAULT_RESAMPLES,
    method: IntervalMethod | str = IntervalMethod.BOOTSTRAP_BCA,
    seed: int = 0,
) -> dict[str, Estimate]:
    """Slope, intercept (in the large) and ECE with patient bootstrap intervals.

    Several rows of one patient are refused unless ``aggregate`` says how to combine them
    (see :func:`models.evaluation.rows.one_row_per_patient`). Resamples are not stratified by
    outcome: calibration depends on the prevalence, whose sampling variation belongs in the
    interval (a stratified bootstrap would hide it).

    Returns
    -------
    dict
        ``slope``, ``intercept``, ``ece`` (equal-mass bins), ``brier``.
    """
    yp, pp, _ = one_row_per_patient(y, p, groups, aggregate)
    yb = np.asarray(yp).astype(bool)
    stats: dict[str, Any] = {
        "slope": metrics.calibration_slope,
        "intercept": metrics.calibration_intercept,
        "ece": partial(metrics.ece, n_bins=n_bins),
        "brier": metrics.brier,
    }
    out = {
        name: bootstrap(
            fn,
            yb,
            pp,
            n_resamples=n_resamples,
            level=level,
            method=method,
            seed=seed,
        )
        for name, fn in stats.items()
    }
    out["ece"].details["bins"] = n_bins
    out["ece"].details["binning"] = "equal mass"
    return out


def reliability_table(
    y: ArrayLike,
    p: ArrayLike,
    *,
    groups: ArrayLike | None = None,
    aggregate: Aggregate | str | None = None,
    n_bins: int = DEFAULT_BINS,
    level: float = DEFAULT_LEVEL,
) -> list[dict[str, float]]:
    """Equal-mass bins of ``p`` (one row per patient): per bin its range, patient count,
    mean predicted probability, observed rate and the observed rate's Wilson interval.
    The bins are those of :func:`models.evaluation.metrics.ece`."""
    yp, pp, _ = one_row_per_patient(y, p, groups, aggregate)
    yb = np.asarray(yp).astype(bool)
    pp = np.asarray(pp, dtype=float)
    bins = equal_mass_bins(pp, n_bins)
    rows = []
    for b in range(n_bins):
        sel = bins == b
        if not sel.any():
            continue
        obs = wilson(int(yb[sel].sum()), int(sel.sum()), level=level)
        rows.append(
            {
                "bin": b,
                "p_min": float(pp[sel].min()),
                "p_max": float(pp[sel].max()),
                "n": int(sel.sum()),
                "mean_predicted": float(pp[sel].mean()),
                "observed": obs.value,
                "observed_lower": obs.lower,
                "observed_upper": obs.upper,
            }
        )
    return rows


def equal_mass_bins(p: ArrayLike, n_bins: int = DEFAULT_BINS) -> np.ndarray:
    """Bin of each row (0..n_bins-1): sorted by ``p``, cut into bins of equal count; a run
    of equal values goes where its middle falls (as in :func:`models.evaluation.metrics.ece`)."""
    pp = np.asarray(p, dtype=float)
    order = np.argsort(pp, kind="stable")
    xs = pp[order]
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]]) if xs.size else np.array([], int)
    sizes = np.diff(np.r_[starts, xs.size])
    mid = np.cumsum(sizes) - sizes / 2.0
    level_bin = np.clip(np.floor(mid / max(xs.size, 1) * n_bins), 0, n_bins - 1).astype(int)
    out = np.empty(pp.size, dtype=int)
    out[order] = np.repeat(level_bin, sizes)
    return out


def ece_noise_floor(
    p: ArrayLike, *, n_bins: int = DEFAULT_BINS, draws: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """(median, 90th percentile) of the equal-mass ECE that a perfectly calibrated model
    would show on these predictions (outcomes drawn as Bernoulli(p)): the ECE's floor at
    this sample size, to read an observed ECE against."""
    rng = np.random.default_rng(seed)
    pp = np.asarray(p, dtype=float)
    values = [metrics.ece(rng.uniform(size=pp.size) < pp, pp, n_bins=n_bins) for _ in range(draws)]
    return float(np.median(values)), float(np.percentile(values, 90))
