"""The generative story: proportions and trajectories (no files written; same seed, same
patient: tests/unit/test_clinic_determinism.py)."""

from __future__ import annotations

import itertools

import numpy as np

from clinic.story import ResponseClass, lesion_truth, sample_patient, volume_factor
from schemas.enums import ImmunePhenotype


def _cohort(n: int, seed: int = 0):
    return [sample_patient(np.random.default_rng([seed, i, 0]), i) for i in range(1, n + 1)]


def test_phenotype_and_response_proportions() -> None:
    patients = _cohort(3000)
    share = {p: np.mean([x.phenotype is p for x in patients]) for p in ImmunePhenotype}
    assert abs(share[ImmunePhenotype.INFLAMED] - 0.44) < 0.03
    assert abs(share[ImmunePhenotype.EXCLUDED] - 0.37) < 0.03
    assert abs(share[ImmunePhenotype.DESERT] - 0.19) < 0.03
    pp = np.mean([x.response is ResponseClass.PSEUDO_PROGRESSION for x in patients])
    assert 0.03 < pp < 0.09
    rate = {
        p: np.mean([x.responder for x in patients if x.phenotype is p]) for p in ImmunePhenotype
    }
    # response follows phenotype, but no phenotype decides it
    assert (
        rate[ImmunePhenotype.INFLAMED]
        > rate[ImmunePhenotype.EXCLUDED]
        > rate[ImmunePhenotype.DESERT]
    )
    assert rate[ImmunePhenotype.DESERT] > 0.05 and rate[ImmunePhenotype.INFLAMED] < 0.95


def test_trajectories_follow_response_class() -> None:
    for p in _cohort(300):
        target = p.lesions[0]
        last = p.timepoints[-1].days
        v0 = lesion_truth(target, 0.0)[0]
        if p.response is ResponseClass.RESPONDER:
            assert volume_factor(target, last) < 1.0
            assert lesion_truth(target, last)[0] <= v0  # equal once at the residual size
            assert p.change_point_days is None
        elif p.response is ResponseClass.NON_RESPONDER:
            assert p.change_point_days is not None
            assert volume_factor(target, 400.0) > volume_factor(target, target.change_point_days)
        else:
            peak = target.pp_peak_days
            assert peak is not None
            assert volume_factor(target, peak) > 1.7  # looks like RECIST progression
            assert volume_factor(target, peak + 120.0) < 1.0  # then shrinks


def test_schedule_shapes() -> None:
    for p in _cohort(50):
        fx = p.rt.fraction_times()
        assert len(fx) == p.rt.fractions and all(t.weekday() < 5 for t in fx)
        gaps = np.diff([tp.days for tp in p.timepoints])
        assert np.all((gaps >= 42) & (gaps <= 63))
        assert p.timepoints[0].days < 0  # planning before the first fraction
        doses = p.ici.dose_times(p.timepoints[-1].at)
        assert all((b - a).days == 21 for a, b in itertools.pairwise(doses))
