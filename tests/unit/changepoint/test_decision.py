"""The combined decision rule and its site configuration."""

from __future__ import annotations

import numpy as np
import pytest

from bench.changepoint_data import simulate_cohort
from clinic.story import ResponseClass
from models.changepoint import (
    FEATURES,
    Coefficients,
    DecisionConfig,
    DecisionRule,
    PatientSeries,
    calibrate,
    features,
)


def series(sums, days=None, rp=None, immune=None) -> PatientSeries:
    days = days if days is not None else [0, 49, 98, 147, 196, 245][: len(sums)]
    return PatientSeries(
        times=tuple(days),
        sum_diameters_mm=np.asarray(sums, float),
        response_probability=None if rp is None else np.asarray(rp, float),
        immune_score=None if immune is None else np.asarray(immune, float),
    )


def test_config_defaults_and_validation() -> None:
    cfg = DecisionConfig()
    assert 0 < cfg.threshold < 1 and cfg.min_timepoints >= 2
    with pytest.raises(ValueError, match="threshold"):
        DecisionConfig(threshold=1.0)
    with pytest.raises(ValueError, match="min_timepoints"):
        DecisionConfig(min_timepoints=1)
    with pytest.raises(ValueError, match="confirm"):
        DecisionConfig(confirm="sometimes")  # type: ignore[arg-type]


def test_config_from_a_site_mapping() -> None:
    cfg = DecisionConfig.from_mapping(
        {
            "threshold": 0.7,
            "min_timepoints": 3,
            "confirm": "repeat",
            "irecist": {"confirm_window_weeks": [4, 9]},
        }
    )
    assert cfg.threshold == 0.7 and cfg.confirm == "repeat"
    assert cfg.irecist.confirm_window_weeks == (4, 9)
    with pytest.raises(ValueError, match="unknown decision settings"):
        DecisionConfig.from_mapping({"treshold": 0.7})
    assert DecisionConfig.from_mapping(cfg.to_mapping()) == cfg


def test_coefficients_refuse_unknown_features() -> None:
    with pytest.raises(ValueError, match="unknown features"):
        Coefficients(intercept=0.0, weights={"magic": 1.0})


def test_steady_growth_is_flagged_and_a_stable_series_is_not() -> None:
    grow = DecisionRule().fit(series([60, 50, 56, 66, 78], rp=[0.4, 0.5, 0.35, 0.2, 0.1])).predict()
    flag = grow.flag("suspected_non_response")
    assert flag is not None
    assert flag.index <= 3  # RECIST 1.1 (20 % and 5 mm over the nadir of 50) fires at index 3
    assert flag.change_index == 2
    assert "tumour_sum_diameters_mm" in flag.signals
    assert grow.model_versions["decision_rule"].startswith("irtmon-changepoint/")
    flat = DecisionRule().fit(series([60, 52, 50, 51, 49], rp=[0.6, 0.7, 0.7, 0.7, 0.7])).predict()
    assert not flat.flagged


def test_min_timepoints_and_repeat_confirmation_hold_the_flag() -> None:
    s = series([60, 50, 56, 66, 78], rp=[0.4, 0.5, 0.35, 0.2, 0.1])
    first = DecisionRule().fit(s).predict().flag("suspected_non_response")
    later = (
        DecisionRule(config=DecisionConfig(confirm="repeat"))
        .fit(s)
        .predict()
        .flag("suspected_non_response")
    )
    assert first is not None and later is not None and later.index >= first.index
    none = DecisionRule(config=DecisionConfig(min_timepoints=6)).fit(s).predict()
    assert none.flag("suspected_non_response") is None


def test_early_jump_is_held_with_early_confirmation() -> None:
    # a pseudo-progression-like jump at the first follow-up, then shrinkage
    s = series([50, 64, 45, 40], rp=[0.7, 0.5, 0.7, 0.8], immune=[1.0, 1.0, 1.1, 1.0])
    held = DecisionRule(config=DecisionConfig(confirm_early=True)).fit(s).predict()
    assert not held.flagged
    # the shipped policy does not hold it (early growth may be hyperprogression) ...
    assert DecisionRule().fit(s).predict().flag("suspected_non_response").index == 1


def test_early_hyperprogression_bypasses_the_early_confirmation() -> None:
    # Matos et al. 2020: more than 40 % over baseline at the first evaluation, or two new lesions
    held = DecisionConfig(confirm_early=True)
    bypass = DecisionConfig(confirm_early=True, hyperprogression_bypass=True)
    fast = series([50, 72, 95, 120], rp=[0.7, 0.5, 0.4, 0.3], immune=[1.0, 1.0, 1.0, 1.0])
    assert DecisionRule(config=held).fit(fast).predict().flag("suspected_non_response").index == 2
    rule = DecisionRule(config=bypass).fit(fast)
    assert rule.hyperprogression_at(1) and rule.predict().flag("suspected_non_response").index == 1
    # +28 % (a pseudo-progression's size) is still held for its confirmation
    pseudo = series([50, 64, 45, 40], rp=[0.7, 0.5, 0.7, 0.8], immune=[1.0, 1.0, 1.1, 1.0])
    rule = DecisionRule(config=bypass).fit(pseudo)
    assert not rule.hyperprogression_at(1) and not rule.predict().flagged
    # two new lesions meet the criterion whatever the sum
    two_new = PatientSeries(
        times=(0, 49, 98, 147),
        sum_diameters_mm=np.array([50.0, 64.0, 45.0, 40.0]),
        response_probability=np.array([0.7, 0.5, 0.7, 0.8]),
        new_lesions=np.array([0, 2, 0, 0]),
    )
    assert DecisionRule(config=bypass).fit(two_new).hyperprogression_at(1)
    assert not DecisionRule(config=bypass).fit(two_new).hyperprogression_at(2)


def test_an_early_jump_the_response_model_trusts_is_not_flagged() -> None:
    # ... it lets a high response probability spare a pseudo-progression instead
    s = series([50, 64, 45, 40], rp=[0.7, 0.9, 0.9, 0.9], immune=[1.0, 1.0, 1.1, 1.0])
    assert not DecisionRule().fit(s).predict().flagged
    fast = series([50, 64, 90, 120], rp=[0.5, 0.2, 0.1, 0.05])  # hyperprogression-like
    assert DecisionRule().fit(fast).predict().flag("suspected_non_response").index == 1


def test_confirmed_progression_flag_at_icpd() -> None:
    d = DecisionRule().fit(series([50, 40, 50, 56])).predict()
    f = d.flag("confirmed_progression")
    assert f is not None and f.index == 3 and f.change_index == 2
    off = DecisionRule(config=DecisionConfig(flag_confirmed_progression=False))
    assert off.fit(series([50, 40, 50, 56])).predict().flag("confirmed_progression") is None


def test_features_use_no_look_ahead() -> None:
    sim = simulate_cohort(3, seed=5)[0]
    full = features(sim.series)
    for k in range(2, len(sim.series)):
        np.testing.assert_allclose(features(sim.series.head(k)), full[:k])


def test_calibrate_learns_that_growth_means_non_response() -> None:
    cohort = simulate_cohort(60, seed=11, n_timepoints=6)
    rows = [features(s.series) for s in cohort]
    labels = [
        (s.days_from_fraction >= s.change_days).astype(int)
        if s.change_days is not None
        else np.zeros(len(s.series), int)
        for s in cohort
    ]
    coeffs = calibrate(rows, labels)
    assert set(coeffs.weights) == set(FEATURES)
    assert coeffs.weights["volume_rise"] > 0


def test_rule_on_virtual_clinic_patients_separates_classes() -> None:
    cohort = simulate_cohort(80, seed=3)
    flagged = {c: [] for c in ResponseClass}
    for s in cohort:
        d = DecisionRule().fit(s.series).predict()
        flagged[s.response].append(d.flag("suspected_non_response") is not None)
    assert np.mean(flagged[ResponseClass.NON_RESPONDER]) > 0.8
    assert np.mean(flagged[ResponseClass.RESPONDER]) < 0.2


def test_the_shipped_policy_is_the_fitted_one() -> None:
    """DecisionConfig's defaults are the policy `bench.changepoint_pipeline fit` chose on the
    tuning cohort and wrote beside the evaluation protocol: one source, no drift."""
    import json
    from pathlib import Path

    fitted = json.loads(
        (Path(__file__).parents[3] / "docs/evaluation/changepoint-policy-v2.json").read_text()
    )["decision"]
    shipped = DecisionConfig()
    assert shipped.threshold == fitted["threshold"]
    assert shipped.confirm_early == fitted["confirm_early"]
    assert shipped.early_window_weeks == fitted["early_window_weeks"]
    c = fitted["coefficients"]
    assert shipped.coefficients == Coefficients(c["intercept"], c["weights"], c["version"])
