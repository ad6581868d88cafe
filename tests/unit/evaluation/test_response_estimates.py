"""The response models' held-out estimates: DeLong per scan, paired differences, calibration
at the first follow-up with one row per patient, the virtual biopsy's bootstrap interval."""

from __future__ import annotations

import numpy as np
import pytest

from models.evaluation import EvaluationPlan, IntervalMethod, delong_auc, delong_difference
from models.response import evaluate as ev

PLAN = EvaluationPlan(resamples=1000, seed=3)


def _rows(n: int = 200, seed: int = 0):
    """``n`` patients, three scans each (planning, fu1, fu2); the full model sees the outcome
    better at each follow-up, the burden baseline only from fu1 on."""
    rng = np.random.default_rng(seed)
    nr = rng.random(n) < 0.35
    y, labels, patients = [], [], []
    full, burden, recist = [], [], []
    for i in range(n):
        for k, lab in enumerate(("planning", "fu1", "fu2")):
            y.append(bool(nr[i]))
            labels.append(lab)
            patients.append(f"p{i:03d}")
            signal = (0.8 + 0.8 * k) * nr[i]
            full.append(1 / (1 + np.exp(-(signal - 1.2 + rng.normal()))))
            burden.append(1 / (1 + np.exp(-((k > 0) * signal - 1.0 + rng.normal()))))
            recist.append(0.5 if k == 0 else float(rng.choice([0.0, 0.5, 1.0])))
    scores = {
        "full model": np.array(full),
        "burden trajectory alone": np.array(burden),
        "RECIST 1.1 rule alone": np.array(recist),
    }
    return np.array(y), np.array(labels), np.array(patients), scores


def test_every_scan_gets_a_delong_auc_and_every_baseline_a_paired_difference() -> None:
    y, labels, patients, scores = _rows()
    est, _extra = ev.response_estimates(
        y,
        labels,
        patients,
        scores,
        probabilities={"full model", "burden trajectory alone"},
        plan=PLAN,
    )
    fu1 = labels == "fu1"
    direct = delong_auc(y[fu1], scores["full model"][fu1])
    assert est["response.full.auc_fu1"] == direct
    assert est["response.full.auc_planning"].method is IntervalMethod.DELONG
    assert est["response.full.auc_planning"].n == 200
    diff = delong_difference(
        y[fu1], scores["full model"][fu1], scores["burden trajectory alone"][fu1]
    )
    assert est["response.full.auc_fu1_minus_burden"] == diff
    assert {"response.full.auc_fu2_minus_recist_rule", "response.recist_rule.auc_planning"} <= set(
        est
    )
    # the burden baseline knows nothing before treatment: the full model beats it there
    assert est["response.full.auc_planning_minus_burden"].lower > 0
    # all follow-ups pooled: a patient's two scans are resampled together
    pooled = est["response.full.auc_followups"]
    assert pooled.n == 200 and pooled.details["stratified"]


def test_calibration_at_fu1_only_for_probabilities_with_one_row_per_patient() -> None:
    y, labels, patients, scores = _rows()
    est, extra = ev.response_estimates(
        y,
        labels,
        patients,
        scores,
        probabilities={"full model", "burden trajectory alone"},
        plan=PLAN,
    )
    for key in ("calibration_slope_fu1", "calibration_intercept_fu1", "ece_fu1", "brier_fu1"):
        assert est[f"response.full.{key}"].n == 200
        assert est[f"response.full.{key}"].method is IntervalMethod.BOOTSTRAP_BCA
    assert "response.recist_rule.ece_fu1" not in est  # a RECIST category is not a probability
    ece = est["response.full.ece_fu1"]
    assert ece.details["binning"] == "equal mass"
    assert 0 < ece.details["if_calibrated_median"] < ece.details["if_calibrated_p90"]
    assert "response.full.brier_fu1_minus_burden" in est
    assert sum(r["n"] for r in extra["reliability_fu1"]) == 200


def test_two_rows_of_one_patient_at_one_scan_are_refused() -> None:
    y, labels, patients, scores = _rows(40)
    labels = labels.copy()
    labels[labels == "fu2"] = "fu1"  # two fu1 rows per patient
    with pytest.raises(ValueError, match="one row per patient"):
        ev.response_estimates(y, labels, patients, scores, plan=PLAN)


def test_a_scan_with_one_class_gives_an_unavailable_estimate_not_a_crash() -> None:
    y, labels, patients, scores = _rows(30)
    y = np.zeros_like(y)
    est, _ = ev.response_estimates(y, labels, patients, scores, plan=PLAN)
    e = est["response.full.auc_fu1"]
    assert np.isnan(e.value) and "too few" in e.details["reason"]
    assert ev.fmt_ci(e) == "n/a" and ev.value(est, "response.full.auc_fu1") is None


def test_virtual_biopsy_balanced_accuracy_resamples_patients() -> None:
    rng = np.random.default_rng(2)
    patients = np.repeat([f"p{i}" for i in range(120)], 2)  # two paired scans per patient
    truth = np.repeat(rng.integers(0, 3, 120), 2)
    pred = np.where(rng.random(240) < 0.75, truth, rng.integers(0, 3, 240))
    est = ev.balanced_accuracy_interval(truth, pred, patients, plan=PLAN)
    assert est.n == 120 and est.lower < est.value < est.upper
    rows_as_patients = ev.balanced_accuracy_interval(truth, pred, np.arange(240), plan=PLAN)
    assert rows_as_patients.n == 240
    assert est.value == rows_as_patients.value
