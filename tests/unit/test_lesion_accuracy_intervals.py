"""The intervals `bench.lesion_accuracy` reports its five targets with: patients resampled
with all their rows, proportions never narrower than Wilson's, failed follow-ups counted."""

from __future__ import annotations

from typing import Any

from bench.lesion_accuracy import _target, target_estimates, target_rows
from models.evaluation import judge
from models.evaluation.targets import Verdict


def _patient(name: str, agree: list[bool], *, failed_at: int | None = None) -> dict[str, Any]:
    tps: list[dict[str, Any]] = [{"timepoint": 0, "recist": None, "truth_recist_clinic": None}]
    for i, ok in enumerate(agree, start=1):
        row = {"timepoint": i, "recist": "SD" if ok else "PD", "truth_recist_clinic": "SD"}
        if i == failed_at:
            row = {"timepoint": i, "error": "no lesion", "truth_recist_clinic": "SD"}
        tps.append(row)
    return {
        "patient": name,
        "lesions": [{"long_axis_mm": 10.3, "truth_long_axis_mm": 10.0}],
        "decisions": [
            {"status": "matched", "correct": True},
            {"status": "new", "correct": True, "new_lesion": True, "false_new": False},
            {"status": "new", "correct": True, "new_lesion": False},  # a normal node: not one
        ],
        "new_truth": [{"detected": True}],
        "timepoints": tps,
    }


def test_a_failed_follow_up_counts_as_a_disagreement() -> None:
    rows = target_rows([_patient("a", [True, True, True], failed_at=2)])
    values, groups = rows["recist_agreement_pct"]
    assert values.tolist() == [1.0, 0.0, 1.0]
    assert set(groups) == {"a"}


def test_a_perfect_proportion_gets_wilsons_width_and_is_not_met_on_few_rows() -> None:
    results = [_patient(f"p{i}", [True] * 5) for i in range(20)]
    est = target_estimates(results, resamples=1000, seed=1)
    sens = est["new_lesion_sensitivity_pct"]
    assert sens.value == 100.0
    assert sens.details["bootstrap_interval"] == [100.0, 100.0]
    assert 80.0 < sens.lower < 90.0 and sens.upper == 100.0  # Wilson, 20 of 20
    assert judge(_target("new_lesion_sensitivity_pct"), sens) is Verdict.NOT_SHOWN
    false_new = est["false_new_lesion_pct"]
    assert false_new.value == 0.0 and false_new.upper > 10.0
    assert judge(_target("false_new_lesion_pct"), false_new) is Verdict.NOT_SHOWN
    # 100 follow-ups all agreeing: Wilson's lower bound (96.3 %) clears 95 %
    recist = est["recist_agreement_pct"]
    assert recist.lower > 95.0
    assert judge(_target("recist_agreement_pct"), recist) is Verdict.MET


def test_rows_of_one_patient_move_together() -> None:
    """Half the patients agree at every follow-up, half at none: the patient bootstrap is far
    wider than Wilson's interval over the 200 follow-ups as if they were independent."""
    results = [_patient(f"p{i}", [i % 2 == 0] * 10) for i in range(20)]
    recist = target_estimates(results, resamples=1000, seed=1)["recist_agreement_pct"]
    assert recist.value == 50.0
    wilson_width = recist.details["wilson_interval"][1] - recist.details["wilson_interval"][0]
    assert recist.upper - recist.lower > 1.5 * wilson_width
    assert recist.n == 20  # patients
