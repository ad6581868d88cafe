"""Weighted metrics: equal to the unweighted ones on repeated rows, to sklearn and statsmodels,
and computed for many weight vectors at once."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, brier_score_loss, roc_auc_score

from models.evaluation import metrics


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = rng.random(300) < 0.3
    s = np.round(rng.normal(size=300) + y, 1)  # ties
    p = 1 / (1 + np.exp(-(1.3 * s - 0.8)))
    return y, s, p


def test_weighted_metrics_equal_repeated_rows(data) -> None:
    y, s, p = data
    rng = np.random.default_rng(1)
    w = rng.integers(0, 4, size=(6, y.size))
    for b in range(6):
        rows = np.repeat(np.arange(y.size), w[b])
        for fn, args in (
            (metrics.auc, (y, s)),
            (metrics.brier, (y, p)),
            (metrics.ece, (y, p)),
            (partial(metrics.sensitivity, threshold=0.4), (y, p)),
            (partial(metrics.specificity, threshold=0.4), (y, p)),
            (metrics.calibration_slope, (y, p)),
            (metrics.calibration_intercept, (y, p)),
        ):
            many = fn(*args, weights=w)
            assert many.shape == (6,)
            once = fn(*(a[rows] for a in args))
            assert many[b] == pytest.approx(once, rel=1e-7, abs=1e-9), fn


def test_metrics_agree_with_sklearn(data) -> None:
    y, s, p = data
    assert metrics.auc(y, s) == pytest.approx(roc_auc_score(y, s))
    assert metrics.brier(y, p) == pytest.approx(brier_score_loss(y, p))
    rng = np.random.default_rng(2)
    yc = rng.integers(0, 3, 200)
    pc = np.where(rng.random(200) < 0.6, yc, rng.integers(0, 3, 200))
    w = rng.integers(0, 3, 200)
    assert metrics.balanced_accuracy(yc, pc) == pytest.approx(balanced_accuracy_score(yc, pc))
    assert metrics.balanced_accuracy(yc, pc, w) == pytest.approx(
        balanced_accuracy_score(yc, pc, sample_weight=w)
    )
    # a class predicted but absent from y counts as an error, quietly
    assert metrics.balanced_accuracy([0, 0, 1, 1], [0, 2, 1, 1]) == 0.75
    assert metrics.sensitivity([1, 1, 0, 0], [0.9, 0.2, 0.8, 0.1]) == 0.5
    assert metrics.specificity([1, 1, 0, 0], [0.9, 0.2, 0.8, 0.1]) == 0.5


def test_undefined_values_are_nan_not_errors() -> None:
    w = np.array([[1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 1, 0]])
    got = metrics.auc([1, 1, 0, 0], [0.9, 0.8, 0.2, 0.1], weights=w)
    assert np.isnan(got[0]) and np.isnan(got[1]) and got[2] == 1.0


def test_recalibration_is_the_maximum_likelihood_fit() -> None:
    import statsmodels.api as sm

    rng = np.random.default_rng(3)
    x = rng.normal(size=500)
    y = rng.random(500) < 1 / (1 + np.exp(-(0.3 + 0.7 * x)))
    p = 1 / (1 + np.exp(-x))
    a, b = metrics.recalibration(y, p)
    fit = sm.GLM(y.astype(float), sm.add_constant(x), family=sm.families.Binomial()).fit()
    assert (a, b) == pytest.approx(tuple(fit.params), rel=1e-8)
    off = sm.GLM(y.astype(float), np.ones((500, 1)), family=sm.families.Binomial(), offset=x).fit()
    assert metrics.calibration_intercept(y, p) == pytest.approx(off.params[0], rel=1e-8)
    # complete separation has no finite slope
    assert np.isnan(metrics.calibration_slope([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]))


def test_ece_uses_equal_mass_bins_and_keeps_ties_together() -> None:
    # 4 bins of 2 rows: (0.1, 0.2) obs 0 -> |0 - 0.3| * 2; (0.3, 0.4) obs 1 -> |2 - 0.7|;
    # (0.5, 0.6) obs 1/2 -> |1 - 1.1|; (0.7, 0.8) obs 1 -> |2 - 1.5|: ECE = (0.3+1.3+0.1+0.5)/8
    y = np.array([0, 0, 1, 1, 0, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    assert metrics.ece(y, p, n_bins=4) == pytest.approx(2.2 / 8)
    # one bin: the calibration-in-the-large gap
    assert metrics.ece(y, p, n_bins=1) == pytest.approx(abs(y.sum() - p.sum()) / 8)
    # a run of equal predictions never straddles two bins: its order does not matter
    p_tied = np.array([0.1, 0.2, 0.3, 0.3, 0.3, 0.6, 0.7, 0.8])
    e1 = metrics.ece(y, p_tied, n_bins=4)
    e2 = metrics.ece(y[[0, 1, 4, 3, 2, 5, 6, 7]], p_tied, n_bins=4)
    assert e1 == pytest.approx(e2)


def test_weighted_median_and_ratios() -> None:
    v = np.array([3.0, 1.0, 2.0, 10.0])
    assert metrics.weighted_median(v) == 2.5 == np.median(v)
    assert metrics.weighted_median(v[:3]) == 2.0
    assert metrics.weighted_median(v, np.array([0, 1, 1, 0])) == 1.5
    assert metrics.weighted_median(v, np.array([0, 3, 1, 0])) == 1.0
    assert metrics.ratio_of_sums([1, 0, 2], [1.0, 2.0, 1.0]) == 0.75
    assert metrics.mean([1.0, 3.0], [3, 1]) == 1.5
