"""bench.changepoint_pipeline's pure parts: the detectors' first flags, the stress variants and
the four alert metrics against RECIST 1.1."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from bench.changepoint_pipeline import (
    Case,
    Flags,
    Truth,
    Variant,
    alert_estimates,
    choose_policy,
    cohort_arguments,
    fit_coefficients,
    icpd_flag,
    metric_keys,
    perturb,
    recist_flag,
    variant_rng,
)
from models.changepoint.decision import DecisionConfig
from models.changepoint.series import PatientSeries
from models.evaluation.estimate import Estimate
from models.response.history import History, LesionReadout, Scan
from schemas.enums import IRecistState as I

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def series(sums: list[float], states: tuple[I, ...] | None = None) -> PatientSeries:
    return PatientSeries(
        times=tuple(T0 + timedelta(weeks=7 * i) for i in range(len(sums))),
        sum_diameters_mm=np.asarray(sums),
        irecist_states=states,
    )


def case(cls: str, sums: list[float], change: float | None = None) -> Case:
    s = series(sums)
    days = np.array([-10.0 + 49 * i for i in range(len(sums))])
    return Case(f"p-{cls}-{id(s)}", Truth(cls, change, T0), s, days)


def test_recist_flags_the_first_progression_and_icpd_its_confirmation() -> None:
    assert recist_flag(series([50, 40, 60, 75, 90])) == 2  # +50 % over the nadir of 40
    assert icpd_flag(series([50, 40, 60, 75, 90])) == 3
    assert recist_flag(series([50, 45, 40, 38])) is None
    stored = series([50, 40, 41, 42], (I.ISD, I.IPR, I.IUPD, I.ICPD))
    assert recist_flag(stored) == 2 and icpd_flag(stored) == 3  # the stored states rule


def test_labels_start_at_the_true_progression() -> None:
    c = case("non_responder", [50, 40, 60, 75], change=80.0)  # scans at days -10, 39, 88, 137
    assert c.labels.tolist() == [0, 0, 1, 1] and c.change_index == 2
    assert case("responder", [50, 40, 30]).change_index is None


def _scan(week: int, total: float) -> Scan:
    return Scan(
        at=T0 + timedelta(weeks=week),
        volume_ml=8.0,
        diameter_mm=total / 2,
        features={"lesions_sum_diameters_mm": total, "lesions_total_volume_ml": 8.0},
        lesions=LesionReadout(sum_diameters_mm=total, total_volume_ml=8.0),
    )


def test_variants_thin_the_schedule_and_reread_every_diameter_of_a_scan_alike() -> None:
    history = History(scans=tuple(_scan(7 * i, 40.0 + i) for i in range(6)))
    rng = np.random.default_rng(0)
    thinned = perturb(history, Variant("x", every_other_follow_up=True), rng)
    assert [s.at for s in thinned.scans] == [history.scans[i].at for i in (0, 2, 4)]
    noisy = perturb(history, Variant("y", reader_cv=0.08, reader_mm=5.0), rng)
    moved = 0
    for before, after in zip(history.scans, noisy.scans, strict=True):
        f = after.lesions.sum_diameters_mm / before.lesions.sum_diameters_mm
        moved += abs(f - 1) > 1e-6
        assert after.features["lesions_sum_diameters_mm"] == pytest.approx(
            before.features["lesions_sum_diameters_mm"] * f
        )
        assert after.lesions.total_volume_ml == pytest.approx(8.0 * f**3)
        assert after.diameter_mm == pytest.approx(before.diameter_mm * f)
    assert moved == 6
    assert perturb(history, Variant("as generated"), rng) == history


def test_alert_metrics_compare_the_rule_with_recist_patient_by_patient() -> None:
    benefit = [case("responder", [50, 45, 40, 35, 30]) for _ in range(30)]
    pseudo = [case("pseudo_progression", [50, 60, 45, 40, 35]) for _ in range(8)]
    hyper = [case("hyperprogression", [50, 90, 150, 200, 250], change=30.0) for _ in range(10)]
    cases = benefit + pseudo + hyper
    # the rule: a false alarm at scan 3 in 10 responders, RECIST none; it flags 1 pseudo of 8,
    # RECIST all 8; it flags every hyperprogression one scan before RECIST (0 vs 1)
    rule = [3] * 10 + [None] * 20 + [1] + [None] * 7 + [0] * 10
    recist = [None] * 30 + [1] * 8 + [1] * 10
    est = alert_estimates(cases, Flags(recist, [None] * len(cases), rule), resamples=300)
    fa = est["responder_fa_minus_recist"]
    assert fa.value > 0 and fa.lower > 0  # more false alarms than RECIST: shown
    assert fa.details["rule_alarms"] == 10 and fa.details["recist_alarms"] == 0
    ps = est["pseudo_alarms_minus_quarter_recist"]
    assert ps.value == pytest.approx(1 / 8 - 0.25)
    hy = est["hyper_delay_vs_recist_scans"]
    assert hy.value == -1 and hy.details["earlier"] == 10
    prog = est["progression_delay_vs_recist_scans"]
    assert prog.value == -1 and prog.n == 10


def test_a_patient_never_flagged_counts_one_scan_past_the_last() -> None:
    hyper = [case("hyperprogression", [50, 90, 150, 200], change=30.0) for _ in range(5)]
    est = alert_estimates(hyper, Flags([1] * 5, [None] * 5, [None] * 5), resamples=200)
    assert est["hyper_delay_vs_recist_scans"].value == 4 - 1
    assert est["hyper_delay_vs_recist_scans"].details["rule_never"] == 5


def test_each_variant_draws_its_own_noise() -> None:
    first = variant_rng(Variant("reader +2 % +2 mm")).standard_normal(4)
    second = variant_rng(Variant("reader +8 % +5 mm")).standard_normal(4)  # same name length
    again = variant_rng(Variant("reader +2 % +2 mm")).standard_normal(4)
    assert not np.allclose(first, second) and np.array_equal(first, again)


def test_cohorts_are_one_folder_or_each_named() -> None:
    assert cohort_arguments(["/x/cp-test"]) == {"cp-test": Path("/x/cp-test")}
    assert cohort_arguments(["a=/x/a", "b=/x/b"]) == {"a": Path("/x/a"), "b": Path("/x/b")}
    with pytest.raises(ValueError, match="name each"):
        cohort_arguments(["/x/a", "b=/x/b"])
    with pytest.raises(ValueError, match="twice"):
        cohort_arguments(["a=/x/a", "a=/x/b"])


def test_a_story_variant_cohort_names_its_metrics_apart() -> None:
    e = Estimate(value=-0.1, lower=-0.2, upper=0.0, level=0.95, method="m", n=10)
    est = {"as generated": {"responder_fa_minus_recist": e}, "reader +2 % +2 mm": {"x": e}}
    assert set(metric_keys(est, "base")) == {
        "changepoint.as_generated.responder_fa_minus_recist",
        "changepoint.reader_2_2_mm.x",
    }
    assert set(metric_keys(est, "pseudo-double")) == {
        "changepoint.as_generated.responder_fa_minus_recist@variant:pseudo-double",
        "changepoint.reader_2_2_mm.x@variant:pseudo-double",
    }


def test_the_policy_search_keeps_hyperprogression_on_time_and_spares_pseudo_progression() -> None:
    # pseudo-progressions grow +30 % at the first follow-up (inside the early window), as much as
    # the first scan of a slow non-responder; hyperprogressions +70 %. Holding early growth for
    # confirmation delays every hyperprogression (never feasible); holding it unless the scan
    # meets the hyperprogression criterion keeps them on time and spares pseudo-progressions.
    rng = np.random.default_rng(3)

    def jitter(sums: list[float]) -> list[float]:
        return [float(v) * (1 + 0.01 * rng.standard_normal()) for v in sums]

    cases = (
        [case("responder", jitter([50, 40, 34, 30, 28])) for _ in range(30)]
        + [case("pseudo_progression", jitter([50, 65, 42, 36, 32])) for _ in range(12)]
        + [case("non_responder", jitter([50, 62, 80, 100, 125]), change=20.0) for _ in range(20)]
        + [
            case("hyperprogression", jitter([50, 85, 140, 220, 330]), change=10.0)
            for _ in range(12)
        ]
    )
    coefficients = fit_coefficients(cases, DecisionConfig(), "test")
    config, tried = choose_policy(cases, coefficients)
    modes = {(t["confirm_early"], t["hyperprogression_bypass"]) for t in tried}
    assert modes == {(True, False), (True, True), (False, False)}
    feasible = {(t["confirm_early"], t["hyperprogression_bypass"]) for t in tried if t["feasible"]}
    assert (True, True) in feasible and (True, False) not in feasible
    assert (config.confirm_early, config.hyperprogression_bypass) in feasible
    held = [t for t in tried if t["confirm_early"] and not t["hyperprogression_bypass"]]
    assert all(t["hyper_delay_vs_recist_scans"] > 0 for t in held)
    # a policy shown on the tuning cohort (every interval clears its target) is also feasible
    assert all(t["feasible"] for t in tried if t["shown"])
    bypass = [t for t in tried if t["hyperprogression_bypass"]]
    assert all(t["pseudo_alarms_minus_quarter_recist"] == -0.25 for t in bypass)

    # with stress variants, a policy is shown only where every variant shows it; the same
    # cases under a second name change nothing but the record
    twice, tried2 = choose_policy({"as generated": cases, "again": cases}, coefficients)
    assert twice == config
    for one, two in zip(tried, tried2, strict=True):
        assert two["shown_in"] == (["as generated", "again"] if one["shown"] else [])
        assert two["shown_as_generated"] == one["shown"] == one["shown_as_generated"]
        assert two["variants"]["again"]["upper_bounds"] == one["upper_bounds"]
