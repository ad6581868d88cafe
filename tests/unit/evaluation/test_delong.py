"""DeLong's AUC interval and paired test: pROC's published results, the O(m n) definition,
and the bootstrap."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.evaluation import metrics
from models.evaluation.delong import delong_auc, delong_covariance, delong_difference
from models.evaluation.estimate import IntervalMethod
from models.evaluation.resampling import bootstrap

ASAH = Path(__file__).parent / "reference" / "asah.csv"


@pytest.fixture(scope="module")
def asah() -> pd.DataFrame:
    return pd.read_csv(ASAH)


def test_single_auc_interval_is_procs_on_asah(asah: pd.DataFrame) -> None:
    # pROC tests/testthat/test-ci.auc.R: ci.auc(roc(aSAH$outcome, aSAH$ndka))
    y = asah.outcome.eq("Poor").to_numpy()
    est = delong_auc(y, asah.ndka)
    assert est.method is IntervalMethod.DELONG and est.n == 113
    np.testing.assert_allclose(
        [est.lower, est.value, est.upper],
        [0.501244999271703, 0.611957994579946, 0.722670989888189],
        rtol=1e-12,
    )


@pytest.mark.parametrize(
    ("a", "b", "z", "p", "lo", "hi"),
    [  # pROC tests/testthat/test-roc.test.R: roc.test(r.a, r.b), DeLong, paired
        (
            "wfns",
            "s100b",
            2.20898359144091,
            0.0271757822291882,
            0.0104061769564846,
            0.174214419249478,
        ),
        (
            "wfns",
            "ndka",
            2.79777591868904,
            0.00514557970691098,
            0.0634011709339876,
            0.3600405634833566,
        ),
        (
            "ndka",
            "s100b",
            -1.39077002573558,
            0.164295175223054,
            -0.2876917446341914,
            0.0488706064228094,
        ),
    ],
)
def test_paired_difference_is_procs_roc_test_on_asah(
    asah: pd.DataFrame, a: str, b: str, z: float, p: float, lo: float, hi: float
) -> None:
    y = asah.outcome.eq("Poor").to_numpy()
    est = delong_difference(y, asah[a], asah[b])
    np.testing.assert_allclose(est.details["z"], z, rtol=1e-10)
    np.testing.assert_allclose(est.details["p_value"], p, rtol=1e-10)
    np.testing.assert_allclose([est.lower, est.upper], [lo, hi], rtol=1e-10)
    np.testing.assert_allclose(est.value, est.details["auc"] - est.details["auc_baseline"])
    # reversing the pair flips the sign, keeps the p-value
    back = delong_difference(y, asah[b], asah[a])
    assert back.details["z"] == pytest.approx(-z) and back.details["p_value"] == pytest.approx(p)


def _placements_brute_force(y: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    """DeLong 1988 from its definition: psi(X, Y) over all m x n pairs."""
    pos, neg = s[y], s[~y]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    auc = psi.mean()
    var = v10.var(ddof=1) / len(pos) + v01.var(ddof=1) / len(neg)
    return float(auc), float(var)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_algorithm_equals_the_definition_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.random(157) < 0.35
    s = np.round(rng.normal(size=157) + y, 1)  # many ties
    aucs, cov = delong_covariance(y, s)
    auc, var = _placements_brute_force(y, s)
    assert aucs[0] == pytest.approx(auc, abs=1e-12)
    assert cov[0, 0] == pytest.approx(var, rel=1e-10)
    assert aucs[0] == pytest.approx(metrics.auc(y, s), abs=1e-12)


def test_delong_standard_error_agrees_with_the_bootstrap() -> None:
    rng = np.random.default_rng(5)
    y = rng.random(400) < 0.3
    a = rng.normal(size=400) + 1.2 * y
    b = 0.6 * a + rng.normal(size=400) * 0.8 + 0.3 * y
    single = delong_auc(y, a)
    boot = bootstrap(metrics.auc, y, a, strata=y, n_resamples=4000, seed=1)
    assert single.details["se"] == pytest.approx(boot.details["se"], rel=0.12)
    diff = delong_difference(y, a, b)

    def auc_diff(y_, p, q, weights=None):
        return metrics.auc(y_, p, weights) - metrics.auc(y_, q, weights)

    bdiff = bootstrap(auc_diff, y, a, b, strata=y, n_resamples=4000, seed=2)
    assert diff.details["se"] == pytest.approx(bdiff.details["se"], rel=0.12)
    assert diff.value == pytest.approx(bdiff.value)


def test_delong_interval_covers_at_its_level() -> None:
    """Over 400 simulated studies of 200 patients, the 95 % interval of the AUC difference
    covers the true difference about 95 % of the time."""
    rng = np.random.default_rng(11)
    true_a, true_b = 0.8, 0.7  # binormal AUCs, equal-variance: Phi(d / sqrt(2))
    from scipy.stats import norm

    da, db = np.sqrt(2) * norm.ppf(true_a), np.sqrt(2) * norm.ppf(true_b)
    covered = 0
    for _ in range(400):
        y = rng.random(200) < 0.4
        shared = rng.normal(size=200)
        a = da * y + 0.7 * shared + np.sqrt(1 - 0.49) * rng.normal(size=200)
        b = db * y + 0.7 * shared + np.sqrt(1 - 0.49) * rng.normal(size=200)
        est = delong_difference(y, a, b)
        covered += est.lower <= true_a - true_b <= est.upper
    assert 0.91 <= covered / 400 <= 0.99


def test_several_rows_per_patient_are_refused_unless_aggregated() -> None:
    y = np.array([1, 1, 0, 0, 1, 0, 1, 0])
    s = np.array([0.9, 0.8, 0.3, 0.1, 0.7, 0.4, 0.6, 0.2])
    groups = np.array(["a", "a", "b", "b", "c", "d", "e", "f"])
    with pytest.raises(ValueError, match="one row per patient"):
        delong_auc(y, s, groups=groups)
    with pytest.raises(ValueError, match="one row per patient"):
        delong_difference(y, s, s[::-1], groups=groups)
    est = delong_auc(y, s, groups=groups, aggregate="mean")
    assert est.n == 6
    # means: a 0.85, b 0.2, c 0.7, d 0.4, e 0.6, f 0.2: every positive above every negative
    assert est.value == 1.0
    with pytest.raises(ValueError, match="different outcomes"):
        delong_auc(np.array([1, 0, 0, 1]), s[:4], groups=["a", "a", "b", "c"], aggregate="max")
    with pytest.raises(ValueError, match="at least two positives"):
        delong_auc([1, 0, 0], [0.2, 0.1, 0.3])
