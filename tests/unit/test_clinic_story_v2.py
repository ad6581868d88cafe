"""Story v2 drawn (no images): the sourced proportions hold on 5,000 patients and the patterns
have their shape (same seed, same patient: tests/unit/test_clinic_determinism.py).

Tolerances are about four binomial standard errors at n = 5,000 (for a share p, SE =
sqrt(p (1 - p) / n): 0.0034 at 6 %, 0.0048 at 13 %, 0.0068 at 36 %), so a test fails when the
story is off its source, not by chance (about 1 in 15,000 per check).
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from scipy import stats

from clinic.story_v2 import params
from clinic.story_v2.anatomy import Organ, organ_at, slots
from clinic.story_v2.course import (
    lesion_state,
    progression_day,
    recist_diameter,
    target_lesions,
    volume_factor,
)
from clinic.story_v2.patient import Behaviour, Course, PatientV2, sample_patient, tps_from_latent
from schemas.enums import ImmunePhenotype

N = 5000


def _draw(n: int, seed: int = 0) -> list[PatientV2]:
    return [sample_patient(np.random.default_rng([seed, i, 0]), i) for i in range(1, n + 1)]


@pytest.fixture(scope="module")
def patients() -> list[PatientV2]:
    return _draw(N)


def _share(values: list[bool]) -> float:
    return float(np.mean(values))


def _auc(score: np.ndarray, label: np.ndarray) -> float:
    u = stats.mannwhitneyu(score[label], score[~label]).statistic
    return float(u / (label.sum() * (~label).sum()))


def test_courses_match_their_sources(patients: list[PatientV2]) -> None:
    course = Counter(p.course for p in patients)
    share = {c: course[c] / N for c in Course}
    assert abs(sum(share[c] for c in Course if c.responder) - 0.36) < 0.03  # PEMBRO-RT
    assert abs(share[Course.PSEUDO_PROGRESSION] - 0.060) < 0.015  # Park, Radiology 2020
    assert abs(share[Course.HYPERPROGRESSION] - 0.132) < 0.02  # Zhao 2022
    assert abs(share[Course.STABLE_DISEASE] - 0.21) < 0.025  # derived from PEMBRO-RT PFS
    responders = sum(share[c] for c in Course if c.responder)
    late = (share[Course.LATE_RESPONDER] + share[Course.PSEUDO_PROGRESSION]) / responders
    assert abs(late - 0.25) < 0.04  # Gettinger 2016: 75 % of responses by the first scan
    assert abs(_share([p.dissociated for p in patients]) - 0.125) < 0.02  # Sci Rep 2024


def test_immune_effect_is_sized_to_the_literature(patients: list[PatientV2]) -> None:
    called = Counter(p.biopsies[0].phenotype for p in patients)
    assert abs(called[ImmunePhenotype.INFLAMED] / N - 0.44) < 0.03  # Park, JCO 2022
    assert abs(called[ImmunePhenotype.EXCLUDED] / N - 0.371) < 0.03
    assert abs(called[ImmunePhenotype.DESERT] / N - 0.189) < 0.025
    resp = np.array([p.responder for p in patients])
    hot = np.array([p.biopsies[0].phenotype is ImmunePhenotype.INFLAMED for p in patients])
    p1, p0 = resp[hot].mean(), resp[~hot].mean()
    odds_ratio = (p1 / (1 - p1)) / (p0 / (1 - p0))
    assert 1.5 < odds_ratio < 2.4  # target 1.90 (JITC 2024), not the ~10 of story v1
    assert abs(p1 - 0.443) < 0.045 and abs(p0 - 0.295) < 0.04
    tps = np.array([p.pd_l1_tps for p in patients])
    assert abs(_auc(tps, resp) - 0.65) < 0.03  # Lu, JAMA Oncol 2019
    til = np.array([p.biopsies[0].til_intratumoral_per_mm2 for p in patients])
    for auc in (_auc(tps, resp), _auc(til, resp)):
        assert 0.58 < auc < 0.75  # single biomarkers: 0.6 to 0.75, none decisive


def test_pdl1_tps_distribution(patients: list[PatientV2]) -> None:
    tps = np.array([p.pd_l1_tps for p in patients])
    low, mid, high = params.PDL1_SHARES  # Huang, Mod Pathol 2021
    assert abs((tps < 1).mean() - low) < 0.03
    assert abs(((tps >= 1) & (tps < 50)).mean() - mid) < 0.03
    assert abs((tps >= 50).mean() - high) < 0.03
    assert tps_from_latent(-3.0) == 0.0 and tps_from_latent(3.0) == 100.0
    assert np.all(tps == np.round(tps)) and tps.min() >= 0 and tps.max() <= 100


def test_local_control_of_irradiated_lesions(patients: list[PatientV2]) -> None:
    in_field = [les for p in patients for les in p.lesions if les.in_field]
    controlled = [les.local_failure_days > 365.0 for les in in_field]
    assert abs(_share(controlled) - 0.895) < 0.02  # Luke et al.: 89.5 % at one year
    # controlled even without any immune response: no regrowth before local failure
    non_resp = [les for les in in_field if les.behaviour in (Behaviour.GROW, Behaviour.HYPER)]
    assert len(non_resp) > 500
    for les in non_resp[:500]:
        t = min(365.0, les.local_failure_days - 1.0)
        assert volume_factor(les, t) <= 1.0
    counts = Counter(len(p.in_field) for p in patients)
    assert set(counts) == {1, 2}


def test_pseudo_and_hyperprogression_shapes(patients: list[PatientV2]) -> None:
    pseudo = [p for p in patients if p.course is Course.PSEUDO_PROGRESSION]
    at_first = [p.lesions[0].peak_days == p.timepoints[1].days for p in pseudo]
    assert abs(_share(at_first) - 0.8) < 0.09  # assumption: mostly at the first follow-up
    for p in pseudo:
        baseline = [les for les in p.lesions if not les.new and les.behaviour is Behaviour.PSEUDO]
        peak = baseline[0].peak_days
        for les in baseline:
            if les.in_field:
                continue
            ratio = lesion_state(les, peak).long_axis_mm / lesion_state(les, 0.0).long_axis_mm
            assert (
                ratio >= 1.2 or lesion_state(les, peak).long_axis_mm >= 2 * les.max_semi_axis_mm - 1
            )
            assert volume_factor(les, peak + 120.0) < volume_factor(les, 0.0)  # then shrinks
    hyper = [les for p in patients if p.course is Course.HYPERPROGRESSION for les in p.lesions]
    for les in hyper:
        if les.behaviour is not Behaviour.HYPER or les.in_field or les.new:
            continue
        rate = math.log(volume_factor(les, 42.0)) / 42.0
        assert rate >= 2.0 * math.log(2.0) / les.doubling_days - 1e-12  # TGR ratio >= 2


def test_durable_stable_disease_stays_within_recist_stable(patients: list[PatientV2]) -> None:
    """Judged on the non-irradiated target lesions, as PEMBRO-RT judged response."""
    for p in patients:
        if p.course is not Course.STABLE_DISEASE or p.dissociated:
            continue
        targets = [t for t in target_lesions(p.lesions) if not t.in_field]
        if not targets:
            continue
        sums = [
            sum(recist_diameter(t, lesion_state(t, tp.days)) for t in targets)
            for tp in p.timepoints
        ]
        change = np.array(sums[1:]) / sums[0] - 1.0
        assert np.all(change > -0.30) and np.all(change < 0.20)


def test_new_lesions_appear_in_progression(patients: list[PatientV2]) -> None:
    prog = [p for p in patients if p.course is Course.PROGRESSION]
    with_new = _share([any(les.new for les in p.lesions) for p in prog])
    assert abs(with_new - 0.309) < 0.045  # progression patterns on ICI: 30.9 %
    for p in patients:
        for les in p.lesions:
            if les.new:
                assert p.course in (
                    Course.PROGRESSION,
                    Course.HYPERPROGRESSION,
                    Course.PSEUDO_PROGRESSION,
                )
                assert lesion_state(les, les.appear_days - 0.5).present is False
                assert lesion_state(les, les.reference_days).present is True
    nr = [p for p in patients if p.course is Course.PROGRESSION][:200]
    days = [progression_day(p.lesions, p.timepoints[-1].days) for p in nr]
    assert _share([d is not None for d in days]) > 0.6  # most progress within follow-up


def test_lesions_organs_and_sizes(patients: list[PatientV2]) -> None:
    counts = Counter(sum(not les.new for les in p.lesions) for p in patients)
    assert set(counts) == set(range(params.LESION_COUNT[0], params.LESION_COUNT[1] + 1))
    metastases = Counter(
        les.organ for p in patients for les in p.lesions if not les.primary and not les.new
    )
    assert set(metastases) == set(Organ)
    assert metastases[Organ.BONE] > metastases[Organ.LYMPH_NODE]  # Tamura 2015 ordering
    assert all(p.lesions[0].primary and p.lesions[0].organ is Organ.LUNG for p in patients)
    nodes = [les for p in patients for les in p.lesions if les.organ is Organ.LYMPH_NODE]
    short = np.array([lesion_state(les, 0.0).short_axis_mm for les in nodes if not les.new])
    assert 0.15 < (short < 15.0).mean() < 0.5  # some pathological nodes are non-target
    lung = [
        lesion_state(les, 0.0).long_axis_mm
        for p in patients
        for les in p.lesions
        if les.organ is Organ.LUNG and not les.primary and not les.new
    ]
    assert 0.05 < np.mean(np.array(lung) < 10.0) < 0.35  # some lesions below RECIST's 10 mm


def test_immune_state_varies_between_lesions_and_over_time(patients: list[PatientV2]) -> None:
    pairs = [
        (p.lesions[0].infiltration, p.lesions[1].infiltration)
        for p in patients
        if len(p.lesions) > 1
    ]
    r = np.corrcoef(np.array(pairs).T)[0, 1]
    assert abs(r - params.LESION_INFILTRATION_CORRELATION) < 0.05
    responding = [les.immune_change for p in patients if p.responder for les in p.lesions]
    other = [les.immune_change for p in patients if not p.responder for les in p.lesions]
    rise = params.ON_TREATMENT_LOG_CD8_RISE / params.LOG_TIL_PER_SD
    assert abs(np.mean(other)) < 0.03 and np.mean(responding) > 0.7 * rise
    second = [p for p in patients if len(p.biopsies) == 2]
    assert abs(len(second) / N - params.ON_TREATMENT_BIOPSY) < 0.03
    assert any(p.biopsies[0].phenotype is not p.biopsies[1].phenotype for p in second)
    assert all(p.biopsies[1].lesion_track != p.biopsies[0].lesion_track for p in second)


def test_slots_do_not_overlap_and_sit_in_their_organs(patients: list[PatientV2]) -> None:
    for p in patients[:200]:
        all_slots = slots(p.anatomy)
        for i, a in enumerate(all_slots):
            x, y, z = a.centre_mm
            assert abs(z) + a.max_radius_mm <= 52.0  # inside the test size's 120 mm
            if a.organ is not Organ.LYMPH_NODE:
                assert organ_at(p.anatomy, x, y, z) is a.organ, a.name
            for b in all_slots[i + 1 :]:
                gap = math.dist(a.centre_mm, b.centre_mm) - a.max_radius_mm - b.max_radius_mm
                assert gap >= 2.0 * math.sqrt(3) * 2.0, (a.name, b.name)  # jitter of 2 mm
