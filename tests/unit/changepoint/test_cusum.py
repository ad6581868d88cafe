"""CUSUM (statsmodels) as a second opinion."""

from __future__ import annotations

import numpy as np
import pytest

from models.changepoint import Cusum


@pytest.mark.parametrize("seed", range(4))
def test_detects_a_level_shift(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = np.r_[rng.normal(0.0, 0.05, 8), rng.normal(0.5, 0.05, 4)]
    result = Cusum(names=["burden"]).fit(x).predict()
    assert result.detected
    assert result.index == 8
    assert result.strength > 0.95
    assert result.signals == ("burden",)
    assert result.shifts["burden"] > 0.4
    assert "recursive_cusum" in result.detail["tests"]["burden"]


@pytest.mark.parametrize("seed", range(4))
def test_flat_series_is_not_a_break(seed: int) -> None:
    x = np.random.default_rng(50 + seed).normal(0.0, 0.05, 12)
    assert not Cusum().fit(x).predict().detected


def test_too_short_or_constant_gives_no_detection() -> None:
    assert not Cusum().fit([1.0, 2.0, 3.0]).predict().detected
    assert not Cusum().fit(np.ones(8)).predict().detected


def test_trend_model_absorbs_a_steady_slope() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(12.0)
    x = 0.05 * t + rng.normal(0, 0.02, 12)
    assert Cusum(trend=False).fit(x, t).predict().detected
    assert not Cusum(trend=True).fit(x, t).predict().detected


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="alpha"):
        Cusum(alpha=1.5)
    with pytest.raises(ValueError, match="finite"):
        Cusum().fit([0.0, np.nan, 1.0, 2.0])
    with pytest.raises(ValueError, match="fit"):
        Cusum().predict()
