"""Metrics with intervals, and paired differences against a baseline.

- :func:`metric_interval`: any metric with a patient bootstrap interval (optionally stratified
  by the patient's outcome);
- :func:`auc_interval`: the AUC with DeLong's interval (one row per patient);
- :func:`difference_interval`: a metric of a model minus the same metric of a baseline on the
  same patients, by the paired patient bootstrap (both scored on every resample);
- :func:`auc_difference`: the paired AUC difference by DeLong.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from models.evaluation.delong import delong_auc, delong_difference
from models.evaluation.estimate import Estimate, IntervalMethod
from models.evaluation.resampling import (
    DEFAULT_LEVEL,
    DEFAULT_RESAMPLES,
    bootstrap,
    is_weighted,
)
from models.evaluation.rows import Aggregate

auc_interval = delong_auc
auc_difference = delong_difference


def _strata(y: ArrayLike, stratify: bool) -> np.ndarray | None:
    if not stratify:
        return None
    yy = np.asarray(y)
    return yy if np.unique(yy).size <= 2 else None


def metric_interval(
    metric: Callable[..., Any],
    y: ArrayLike,
    p: ArrayLike,
    *,
    groups: ArrayLike | None = None,
    stratify: bool = False,
    level: float = DEFAULT_LEVEL,
    n_resamples: int = DEFAULT_RESAMPLES,
    method: IntervalMethod | str = IntervalMethod.BOOTSTRAP_BCA,
    seed: int = 0,
) -> Estimate:
    """``metric(y, p)`` with a patient bootstrap interval.

    ``metric`` is weighted (has a ``weights`` parameter, fast) or plain, see
    :mod:`models.evaluation.resampling`. Several rows per patient are resampled together.
    ``stratify`` keeps each outcome's patient count when ``y`` has at most two values (``y``
    must then be the same on every row of a patient): right for metrics conditional on the
    class (AUC, sensitivity, specificity, balanced accuracy), wrong for those that depend on
    the prevalence (Brier, ECE, calibration), whose interval it would make too narrow.
    """
    return bootstrap(
        metric,
        y,
        p,
        groups=groups,
        strata=_strata(y, stratify),
        n_resamples=n_resamples,
        level=level,
        method=method,
        seed=seed,
    )


def difference_interval(
    metric: Callable[..., Any],
    y: ArrayLike,
    p: ArrayLike,
    baseline: ArrayLike,
    *,
    groups: ArrayLike | None = None,
    stratify: bool = False,
    level: float = DEFAULT_LEVEL,
    n_resamples: int = DEFAULT_RESAMPLES,
    method: IntervalMethod | str = IntervalMethod.BOOTSTRAP_BCA,
    seed: int = 0,
) -> Estimate:
    """``metric(y, p) - metric(y, baseline)`` with a paired patient bootstrap interval.

    ``details`` adds ``model`` and ``baseline``: the two metrics on the data as observed.
    """
    if is_weighted(metric):

        def diff(y_: Any, a: Any, b: Any, weights: Any = None) -> Any:
            return metric(y_, a, weights=weights) - metric(y_, b, weights=weights)

    else:

        def diff(y_: Any, a: Any, b: Any) -> Any:  # type: ignore[misc]
            va, vb = metric(y_, a), metric(y_, b)
            return float("nan") if va is None or vb is None else va - vb

    est = bootstrap(
        diff,
        y,
        p,
        baseline,
        groups=groups,
        strata=_strata(y, stratify),
        n_resamples=n_resamples,
        level=level,
        method=method,
        seed=seed,
    )
    yy, a, b = np.asarray(y), np.asarray(p), np.asarray(baseline)
    est.details["model"] = float(metric(yy, a))
    est.details["baseline"] = float(metric(yy, b))
    return est


__all__ = [
    "Aggregate",
    "auc_difference",
    "auc_interval",
    "difference_interval",
    "metric_interval",
]
