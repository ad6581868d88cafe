"""The patient-level bootstrap: patients are resampled, strata kept, both paths agree, BCa
matches scipy's, and it is fast."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy import stats

from models.evaluation import metrics
from models.evaluation.compare import difference_interval, metric_interval
from models.evaluation.estimate import IntervalMethod
from models.evaluation.resampling import bootstrap, replicates, resample_counts


def test_resampling_draws_patients_and_keeps_strata() -> None:
    rng = np.random.default_rng(0)
    strata = np.array([0] * 30 + [1] * 10)
    counts = resample_counts(np.arange(40), 40, n_resamples=500, rng=rng, strata=strata)
    assert counts.shape == (500, 40)
    assert (counts[:, :30].sum(axis=1) == 30).all() and (counts[:, 30:].sum(axis=1) == 10).all()
    assert 0.3 < (counts == 0).mean() < 0.42  # about 1/e of patients left out per resample


def test_a_patient_is_resampled_with_all_its_rows() -> None:
    """A plain statistic sees whole patients (rows of a patient always together) and a fresh
    id per draw, so a patient drawn twice counts as two patients."""
    groups = np.repeat(np.arange(50), 3)
    first_row = np.tile([1.0, 0.0, 0.0], 50)
    seen = []

    def check(x, groups):
        ids, n_rows = np.unique(groups, return_counts=True)
        seen.append(len(ids))
        assert (n_rows == 3).all()
        return x.sum() / len(ids)  # one first row per patient: always 1

    est = bootstrap(check, first_row, groups=groups, n_resamples=50, seed=3)
    assert est.value == 1.0 and est.lower == est.upper == 1.0 and est.n == 50
    assert set(seen) == {50, 49}  # 50 draws (+1 with the data, 50 jackknife samples of 49)


def test_weighted_and_plain_paths_give_the_same_replicates() -> None:
    rng = np.random.default_rng(1)
    y = np.repeat(rng.random(80) < 0.4, 2)
    s = rng.normal(size=160) + y
    g = np.repeat(np.arange(80), 2)
    v1, b1, j1 = replicates(metrics.auc, y, s, groups=g, strata=y, n_resamples=200, seed=9)
    v2, b2, j2 = replicates(
        lambda a, b: metrics.auc(a, b), y, s, groups=g, strata=y, n_resamples=200, seed=9
    )
    assert v1 == pytest.approx(v2)
    np.testing.assert_allclose(b1, b2, rtol=1e-12)
    np.testing.assert_allclose(j1, j2, rtol=1e-12)


def test_bca_and_percentile_match_scipy_for_a_mean() -> None:
    rng = np.random.default_rng(2)
    x = rng.exponential(size=120)  # skewed: BCa and percentile differ
    for ours, theirs in (
        (IntervalMethod.BOOTSTRAP_BCA, "BCa"),
        (IntervalMethod.BOOTSTRAP_PERCENTILE, "percentile"),
    ):
        mine = bootstrap(metrics.mean, x, n_resamples=20000, method=ours, seed=4)
        ref = stats.bootstrap((x,), np.mean, n_resamples=20000, method=theirs, random_state=5)
        assert mine.lower == pytest.approx(ref.confidence_interval.low, abs=0.012)
        assert mine.upper == pytest.approx(ref.confidence_interval.high, abs=0.012)
        assert mine.method is ours


def test_bootstrap_is_seeded() -> None:
    rng = np.random.default_rng(3)
    y = rng.random(100) < 0.5
    s = rng.normal(size=100) + y
    a = metric_interval(metrics.auc, y, s, seed=7)
    b = metric_interval(metrics.auc, y, s, seed=7)
    c = metric_interval(metrics.auc, y, s, seed=8)
    assert (a.lower, a.upper) == (b.lower, b.upper) != (c.lower, c.upper)
    assert not a.details["stratified"] and a.details["invalid_resamples"] == 0


def test_paired_difference_against_a_baseline() -> None:
    rng = np.random.default_rng(4)
    y = rng.random(300) < 0.4
    good = rng.normal(size=300) + 1.5 * y
    weak = rng.normal(size=300) + 0.3 * y
    est = difference_interval(metrics.brier, y, 1 / (1 + np.exp(-good)), 1 / (1 + np.exp(-weak)))
    assert est.upper < 0  # the better model has a lower Brier score
    assert est.value == pytest.approx(est.details["model"] - est.details["baseline"])
    same = difference_interval(metrics.auc, y, good, good)
    assert same.value == same.lower == same.upper == 0.0


def test_two_thousand_resamples_of_an_auc_over_400_patients_take_well_under_a_second() -> None:
    rng = np.random.default_rng(6)
    y = rng.random(400) < 0.3
    s = rng.normal(size=400) + y
    bootstrap(metrics.auc, y, s, strata=y, n_resamples=50)  # warm up
    start = time.perf_counter()
    est = bootstrap(metrics.auc, y, s, strata=y, n_resamples=2000, seed=1)
    elapsed = time.perf_counter() - start
    assert est.has_interval
    assert elapsed < 1.0, f"{elapsed:.2f} s"


def test_chunked_evaluation_equals_one_pass(monkeypatch) -> None:
    """Resamples and jackknife samples are evaluated in memory-bounded chunks; the chunk
    size changes nothing."""
    from models.evaluation import resampling as bmod

    rng = np.random.default_rng(8)
    y = rng.random(90) < 0.4
    s = rng.normal(size=90) + y
    whole = replicates(metrics.auc, y, s, strata=y, n_resamples=300, seed=2)
    monkeypatch.setattr(bmod, "_CELLS_PER_CHUNK", 90 * 7)  # 7 samples per chunk
    chunked = replicates(metrics.auc, y, s, strata=y, n_resamples=300, seed=2)
    np.testing.assert_array_equal(whole[1], chunked[1])
    np.testing.assert_array_equal(whole[2], chunked[2])
    loo = [metrics.auc(np.delete(y, k), np.delete(s, k)) for k in range(90)]
    np.testing.assert_allclose(whole[2], loo, rtol=1e-12)
