"""BOCPD: a mean shift is found where it is, a flat series raises nothing."""

from __future__ import annotations

import numpy as np
import pytest

from models.changepoint import Bocpd


@pytest.mark.parametrize("seed", range(5))
def test_detects_a_mean_shift(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = np.r_[rng.normal(0.0, 0.05, 8), rng.normal(0.5, 0.05, 4)]
    result = Bocpd(beta0=0.05**2, names=["burden"]).fit(x).predict()
    assert result.detected
    assert result.index == 8
    assert result.strength > 0.9
    assert result.signals == ("burden",)
    assert result.shifts["burden"] == pytest.approx(0.5, abs=0.1)


@pytest.mark.parametrize("seed", range(5))
def test_flat_series_raises_nothing(seed: int) -> None:
    x = np.random.default_rng(100 + seed).normal(0.0, 0.05, 12)
    result = Bocpd(beta0=0.05**2).fit(x).predict()
    assert not result.detected
    assert result.signals == ()


def test_online_updates_match_fit_and_recent_probability_jumps_at_the_change() -> None:
    rng = np.random.default_rng(1)
    x = np.r_[rng.normal(0.0, 0.05, 6), rng.normal(0.6, 0.05, 3)]
    online = Bocpd(beta0=0.05**2)
    for v in x:
        online.update(v)
    batch = Bocpd(beta0=0.05**2).fit(x)
    np.testing.assert_allclose(online.run_length_posterior, batch.run_length_posterior)
    recent = online.strength_history_
    assert max(recent[:6]) < 0.5 < recent[6]
    assert online.run_length_posterior.sum() == pytest.approx(1.0)


def test_multivariate_names_the_signal_that_moved() -> None:
    rng = np.random.default_rng(3)
    a = np.r_[rng.normal(0, 0.05, 7), rng.normal(0.5, 0.05, 3)]
    b = rng.normal(0, 0.05, 10)
    result = Bocpd(beta0=0.05**2, names=["burden", "immune"]).fit(np.c_[a, b]).predict()
    assert result.detected and result.index == 7
    assert result.signals == ("burden",)


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="expected_run"):
        Bocpd(expected_run=1)
    with pytest.raises(ValueError, match="beta0"):
        Bocpd(beta0=0)
    with pytest.raises(ValueError, match="finite"):
        Bocpd().update(float("nan"))
    with pytest.raises(ValueError, match="fit"):
        Bocpd().predict()
    b = Bocpd().update([0.0, 1.0])
    with pytest.raises(ValueError, match="expected 2"):
        b.update(0.0)
