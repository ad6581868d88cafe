"""Calibration with intervals, alert intervals (Wilson, Poisson, delays) and the target rule."""

from __future__ import annotations

import numpy as np
import pytest

from models.evaluation import (
    Direction,
    Estimate,
    IntervalMethod,
    Target,
    Verdict,
    calibration_summary,
    ece_noise_floor,
    false_alarm_rate,
    judge,
    median_delay,
    poisson_rate,
    reliability_table,
    render,
    wilson,
)


def _sample(n: int, seed: int, temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, n)
    y = rng.random(n) < 1 / (1 + np.exp(-z))
    return y, 1 / (1 + np.exp(-z * temperature))


def test_a_calibrated_model_shows_slope_one_and_intercept_zero_within_the_interval() -> None:
    y, p = _sample(600, 0)
    cal = calibration_summary(y, p, n_resamples=1000, seed=1)
    assert cal["slope"].lower < 1.0 < cal["slope"].upper
    assert cal["intercept"].lower < 0.0 < cal["intercept"].upper
    assert cal["ece"].details["binning"] == "equal mass"
    floor_median, floor_p90 = ece_noise_floor(p, draws=200)
    assert cal["ece"].value < 2 * floor_p90 and 0 < floor_median < floor_p90


def test_an_over_confident_model_has_a_slope_below_one() -> None:
    y, p = _sample(600, 1, temperature=2.0)  # logits doubled: too extreme
    cal = calibration_summary(y, p, n_resamples=1000, seed=1)
    assert cal["slope"].upper < 1.0
    assert cal["slope"].value == pytest.approx(0.5, abs=0.12)


def test_calibration_refuses_two_rows_per_patient() -> None:
    y, p = _sample(100, 2)
    groups = np.repeat(np.arange(50), 2)
    y2 = np.repeat(y[:50], 2)
    with pytest.raises(ValueError, match="one row per patient"):
        calibration_summary(y2, p, groups=groups)
    with pytest.raises(ValueError, match="one row per patient"):
        reliability_table(y2, p, groups=groups)
    cal = calibration_summary(y2, p, groups=groups, aggregate="mean", n_resamples=1000)
    assert cal["ece"].n == 50


def test_reliability_table_has_equal_mass_bins_with_wilson_intervals() -> None:
    y, p = _sample(400, 3)
    table = reliability_table(y, p, n_bins=10)
    assert [row["n"] for row in table] == [40] * 10
    assert all(r["observed_lower"] <= r["observed"] <= r["observed_upper"] for r in table)
    assert [r["mean_predicted"] for r in table] == sorted(r["mean_predicted"] for r in table)


def test_wilson_and_poisson_reproduce_published_values() -> None:
    # Newcombe, Statistics in Medicine 1998, Table I: 81/263, 15/148, 0/20 (Wilson, method 3)
    for k, n, lo, hi in ((81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0, 0.1611)):
        est = wilson(k, n)
        assert (round(est.lower, 4), round(est.upper, 4)) == (lo, hi)
    # exact Poisson limits for 0 and 10 events (Garwood 1936): 3.689 and 4.795 to 18.39
    assert poisson_rate(0, 1.0).upper == pytest.approx(-np.log(0.025), rel=1e-9)
    assert poisson_rate(10, 2.0).format(".4f") == "5.0000 [2.3977, 9.1952]"


def test_false_alarms_per_patient_year() -> None:
    rng = np.random.default_rng(4)
    years = rng.uniform(0.2, 1.5, 300)
    alarms = rng.poisson(0.4 * years)
    exact = false_alarm_rate(alarms, years)
    boot = false_alarm_rate(alarms, years, method=IntervalMethod.BOOTSTRAP_PERCENTILE, seed=1)
    assert exact.method is IntervalMethod.POISSON_EXACT and exact.n == 300
    assert exact.value == boot.value == pytest.approx(alarms.sum() / years.sum())
    assert exact.lower < 0.4 < exact.upper
    assert boot.upper - boot.lower == pytest.approx(exact.upper - exact.lower, rel=0.25)
    with pytest.raises(ValueError, match="one alarm count and one exposure"):
        false_alarm_rate(alarms[:3], years[:4])


def test_median_delay_has_a_bootstrap_interval() -> None:
    delays = np.r_[np.full(30, -1.0), np.full(50, 0.0), np.full(20, 2.0)]
    est = median_delay(delays, seed=3)
    assert est.value == 0.0 and est.method is IntervalMethod.BOOTSTRAP_PERCENTILE
    assert est.lower <= 0.0 <= est.upper and est.details["mean"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="censoring value"):
        median_delay([1.0, np.nan])


def _est(lo: float, hi: float) -> Estimate:
    return Estimate((lo + hi) / 2, lo, hi, 0.95, IntervalMethod.DELONG, 100)


@pytest.mark.parametrize(
    ("direction", "lo", "hi", "verdict"),
    [
        (Direction.AT_LEAST, 0.86, 0.91, Verdict.MET),
        (Direction.AT_LEAST, 0.85, 0.91, Verdict.MET),
        (Direction.AT_LEAST, 0.84, 0.91, Verdict.NOT_SHOWN),
        (Direction.AT_LEAST, 0.80, 0.84, Verdict.NOT_MET),
        (Direction.AT_MOST, 0.80, 0.84, Verdict.MET),
        (Direction.AT_MOST, 0.84, 0.86, Verdict.NOT_SHOWN),
        (Direction.AT_MOST, 0.86, 0.91, Verdict.NOT_MET),
        (Direction.AT_LEAST, np.nan, np.nan, Verdict.NO_INTERVAL),
    ],
)
def test_a_target_is_met_only_when_the_interval_clears_it(direction, lo, hi, verdict) -> None:
    target = Target("auc_fu1", direction, 0.85)
    assert judge(target, _est(lo, hi)) is verdict
    assert render(target, _est(lo, hi)).endswith(str(verdict))


def test_verdicts_read_plainly() -> None:
    t = Target("margin", Direction.AT_LEAST, 0.05)
    assert render(t, _est(0.035, 0.081)) == (
        "margin ≥ 0.05: 0.058 [0.035, 0.081] (95% DeLong): not shown: interval includes the target"
    )
    assert judge(t, None) is Verdict.NO_INTERVAL
    # a DeLong interval of zero width (perfect separation) is no interval
    from models.evaluation import delong_auc

    perfect = delong_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    assert perfect.lower == perfect.upper == 1.0 and perfect.details["degenerate"]
    assert judge(Target("auc", Direction.AT_LEAST, 0.85), perfect) is Verdict.NO_INTERVAL
