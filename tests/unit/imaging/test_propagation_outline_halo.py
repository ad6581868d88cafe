"""A propagated lung lesion that has shrunk inside a rim of fainter tissue (ground glass, the
radiation change around an irradiated lesion) is not evaluable on that follow-up, not measured
as lesion and rim together; the same shrunken lesion in clear lung is measured as before."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk  # noqa: N813

from models.exceptions import InsufficientDataError
from models.imaging.annotations import Lesion, LesionProblem
from models.imaging.burden import measure_burden
from models.imaging.lesion import MAX_OUTLINE_HALO_MM, MaskSource, refine_outline
from models.imaging.pipeline import Baseline, analyse_acquisition
from models.imaging.propagation import propagate_lesions
from models.imaging.registration import RegistrationResult
from tests.unit.imaging.lesion_study import LESIONS, image, volume, write_ct_with_simpleitk

GTV = LESIONS[0]  # soft tissue in lung
SHRUNK = GTV.moved(scale=0.4)  # about 10 mm across


def _in_a_rim(hu: np.ndarray, rim_hu: float = -300.0, margin_mm: float = 0.0) -> np.ndarray:
    """``hu`` with the lung around the GTV's baseline extent, ``margin_mm`` beyond it, at
    ``rim_hu`` (fainter than the lesion, denser than lung), the lesion itself left as drawn."""
    rim = replace(GTV, semi_mm=tuple(v + margin_mm for v in GTV.semi_mm)).fraction() >= 0.5
    out = hu.copy()
    paint = rim & (hu < -600.0)  # lung only, not the lesion or the body wall
    rng = np.random.default_rng(5)
    out[paint] = rim_hu + rng.normal(0.0, 5.0, int(paint.sum()))
    return out


def _identity() -> RegistrationResult:
    return RegistrationResult(sitk.Euler3DTransform(), "rigid", 1.0, 1.0, 1.0)


def test_a_rim_of_fainter_tissue_shows_as_a_halo() -> None:
    clear = volume(image([SHRUNK], seed=1))
    rimmed = volume(_in_a_rim(image([SHRUNK], seed=1)))
    alone = refine_outline(clear, GTV.mask(), 40.0, 12.0)
    taken_in = refine_outline(rimmed, GTV.mask(), 40.0, 12.0)
    assert alone.halo_mm < MAX_OUTLINE_HALO_MM / 2
    assert taken_in.halo_mm > MAX_OUTLINE_HALO_MM
    assert taken_in.at_limit == 0.0  # the growth limit does not catch it: the rim has an edge
    whole = measure_burden(taken_in.mask, rimmed.geometry).longest_diameter_mm
    assert whole > 2 * SHRUNK.long_mm  # what would have been reported


def test_a_lesion_outlined_with_its_rim_is_not_evaluable_not_measured() -> None:
    baseline = volume(image())
    lesions = [Lesion(GTV.mask(), GTV.label, 1, MaskSource.SEG, tracking_uid="2.25.1")]
    clear = propagate_lesions(
        volume(image([SHRUNK], seed=1)), baseline, lesions, registration=_identity()
    )
    (measured,) = clear.lesions
    size = measure_burden(measured.mask, baseline.geometry).longest_diameter_mm
    assert abs(size - SHRUNK.long_mm) < 0.25 * SHRUNK.long_mm
    rimmed = volume(_in_a_rim(image([SHRUNK], seed=1)))
    out = propagate_lesions(rimmed, baseline, lesions, registration=_identity())
    assert out.lesions == []
    (failure,) = out.failures
    assert failure.problem is LesionProblem.NOT_MEASURABLE  # not evaluable, not gone
    assert "rim of fainter tissue" in failure.message and "not evaluable" in failure.message


def test_one_lesion_outlined_with_its_rim_is_refused_not_measured(tmp_path: Path) -> None:
    """The one-lesion path (``irtmon imaging``) applies the same rule: a clear error, no size."""
    baseline = Baseline(volume(np.round(image())), GTV.mask())
    write_ct_with_simpleitk(tmp_path / "clear", image([SHRUNK], seed=1))
    measured = analyse_acquisition(tmp_path / "clear", baseline=baseline, radiomics=False)
    assert measured.burden.longest_diameter_mm == pytest.approx(SHRUNK.long_mm, rel=0.25)
    write_ct_with_simpleitk(tmp_path / "rimmed", _in_a_rim(image([SHRUNK], seed=1)))
    with pytest.raises(InsufficientDataError, match="rim of fainter tissue"):
        analyse_acquisition(tmp_path / "rimmed", baseline=baseline, radiomics=False)
