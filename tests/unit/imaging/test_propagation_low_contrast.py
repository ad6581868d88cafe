"""A baseline lesion that cannot be told from its background on the baseline itself is not
evaluable on a follow-up without the reader's outline; it is not called gone. A lesion that
stood out on the baseline and shows nothing at its site now has gone (0 mm), as before."""

from __future__ import annotations

import numpy as np

from models.imaging.annotations import Lesion, LesionProblem
from models.imaging.lesion import MIN_CONTRAST_HU, MaskSource, lesion_contrast
from models.imaging.propagation import propagate_lesions, register_study
from tests.unit.imaging.lesion_study import LESIONS, Ellipsoid, image, volume

NOTHING = Ellipsoid("nothing there", (30.0, 45.0, 45.0), (5.0, 6.0, 6.0))
"""A baseline "lesion" drawn on plain fat: it cannot be told from its background."""


def test_a_lesions_contrast_is_its_core_against_its_ring() -> None:
    baseline = volume(image())
    lung = lesion_contrast(baseline, LESIONS[0].mask())  # soft tissue (40) in lung (-850)
    fat = lesion_contrast(baseline, NOTHING.mask())
    assert lung is not None and lung > 600.0
    assert fat is not None and abs(fat) < 10.0 < MIN_CONTRAST_HU
    assert lesion_contrast(baseline, np.zeros_like(NOTHING.mask())) is None


def test_not_told_from_its_background_is_not_evaluable_and_a_vanished_lesion_has_gone() -> None:
    baseline = volume(image())
    followup = volume(image([e for e in LESIONS if e.label != "liver met"], seed=1))
    drawn = [LESIONS[0], LESIONS[1], NOTHING]
    lesions = [
        Lesion(e.mask(), e.label, k, MaskSource.SEG, tracking_uid=f"2.25.{k}")
        for k, e in enumerate(drawn, start=1)
    ]
    registration = register_study(followup, baseline, lesions, deformable=False)
    out = propagate_lesions(followup, baseline, lesions, registration=registration)
    assert [lesion.label for lesion in out.lesions] == ["GTV lung"]
    problems = {f.tracking_uid: f.problem for f in out.failures}
    assert problems == {"2.25.2": LesionProblem.NOT_FOUND, "2.25.3": LesionProblem.NOT_MEASURABLE}
    (unseen,) = [f for f in out.failures if f.tracking_uid == "2.25.3"]
    assert "not evaluable" in unseen.message and "reader's outline" in unseen.message
