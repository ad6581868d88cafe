"""A propagated lesion that has grown past the ring in which its background is measured reads
as lesion both at its site and around it: no edge is found, and it is not evaluable, never
called gone (a progressing patient's lesions called gone made a response of a progression).
One that has gone still is."""

from __future__ import annotations

import SimpleITK as sitk  # noqa: N813

from models.imaging.annotations import Lesion, LesionProblem
from models.imaging.lesion import (
    MaskSource,
    NoEdgeError,
    fills_its_surroundings,
    lesion_contrast,
)
from models.imaging.propagation import propagate_lesions
from models.imaging.registration import RegistrationResult
from tests.unit.imaging.lesion_study import LESIONS, image, volume

GTV = LESIONS[0]  # soft tissue (40 HU) in lung
GROWN = GTV.moved(scale=2.2)  # past the ring 4 to 10 mm around where it was


def _identity() -> RegistrationResult:
    return RegistrationResult(sitk.Euler3DTransform(), "rigid", 1.0, 1.0, 1.0)


def _lesions() -> list[Lesion]:
    return [Lesion(GTV.mask(), GTV.label, 1, MaskSource.SEG, tracking_uid="2.25.1")]


def test_a_lesion_grown_past_its_ring_is_not_evaluable_not_gone() -> None:
    baseline = volume(image())
    out = propagate_lesions(
        volume(image([GROWN, *LESIONS[1:]], seed=1)), baseline, _lesions(), registration=_identity()
    )
    assert out.lesions == []
    (failure,) = out.failures
    assert failure.problem is LesionProblem.NOT_MEASURABLE  # not evaluable: not 0 mm
    assert "grown past" in failure.message and "not evaluable" in failure.message


def test_a_lesion_that_has_gone_is_still_gone() -> None:
    baseline = volume(image())
    out = propagate_lesions(
        volume(image(LESIONS[1:], seed=1)), baseline, _lesions(), registration=_identity()
    )
    assert [f.problem for f in out.failures] == [LesionProblem.NOT_FOUND]


def test_which_side_an_edgeless_site_reads_on() -> None:
    contrast = lesion_contrast(volume(image()), GTV.mask())
    assert contrast is not None and contrast > 600.0  # 40 HU in lung
    lesion_like = NoEdgeError("no edge", core_hu=45.0, ring_hu=38.0)
    lung_like = NoEdgeError("no edge", core_hu=-840.0, ring_hu=-850.0)
    assert fills_its_surroundings(lesion_like, 40.0, contrast)
    assert not fills_its_surroundings(lung_like, 40.0, contrast)
