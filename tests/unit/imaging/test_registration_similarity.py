"""The registration's normalised cross-correlation, measured on the region's own box, equals
the one measured over the whole lesion box (as until 2026-12-04) to the eighth digit: the
resampled points differ in their last bits, the float32 means with them."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk  # noqa: N813

from models.imaging.registration import _ncc, _Similarity


def _whole_box_ncc(fixed, moving, transform, roi) -> float:
    warped = sitk.Resample(moving, fixed, transform, sitk.sitkLinear, -1000.0, sitk.sitkFloat32)
    f = sitk.GetArrayViewFromImage(fixed)
    m = sitk.GetArrayViewFromImage(warped)
    sel = sitk.GetArrayViewFromImage(roi) > 0
    if sel.sum() < 10:
        return float("nan")
    a = f[sel].astype(float) - f[sel].mean()
    b = m[sel].astype(float) - m[sel].mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else 0.0


def _image(array: np.ndarray, origin) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((2.0, 2.0, 2.0))
    image.SetOrigin(origin)
    return image


@pytest.mark.parametrize("seed", range(4))
def test_the_correlation_on_the_regions_box_is_the_whole_boxs(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = (30, 40, 50)
    smooth = sitk.GetArrayFromImage(
        sitk.SmoothingRecursiveGaussian(
            sitk.GetImageFromArray(rng.normal(0, 200, shape).astype(np.float32)), 2.0
        )
    )
    fixed = _image(smooth, (10.0, -4.0, 3.0))
    moving = _image(
        np.roll(smooth, 2, axis=2) + rng.normal(0, 5, shape).astype(np.float32), (11.0, -3.0, 2.0)
    )
    roi_array = np.zeros(shape, np.uint8)
    roi_array[5 + seed : 18, 8 : 25 + seed, 12:30] = 1
    roi_array[20:24, 30:33, 40:44] = 1  # a second, separate region
    roi = _image(roi_array, (10.0, -4.0, 3.0))
    similarity = _Similarity.of(fixed, roi)
    assert similarity is not None
    assert similarity.grid.GetNumberOfPixels() < fixed.GetNumberOfPixels()
    for transform in (
        sitk.Euler3DTransform(),
        sitk.Euler3DTransform((30.0, 20.0, 30.0), 0.02, -0.03, 0.05, (3.0, -1.5, 2.2)),
    ):
        want = _whole_box_ncc(fixed, moving, transform, roi)
        assert _ncc(similarity, moving, transform) == pytest.approx(want, abs=1e-8)


def test_a_region_of_fewer_than_ten_voxels_has_no_correlation() -> None:
    shape = (10, 10, 10)
    fixed = _image(np.ones(shape, np.float32), (0.0, 0.0, 0.0))
    roi_array = np.zeros(shape, np.uint8)
    roi_array[2, 2, 2:11] = 1  # nine voxels
    similarity = _Similarity.of(fixed, _image(roi_array, (0.0, 0.0, 0.0)))
    assert similarity is None
    assert np.isnan(_ncc(similarity, fixed, sitk.Euler3DTransform()))
