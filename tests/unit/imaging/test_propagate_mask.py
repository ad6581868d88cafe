"""Carrying a mask to another grid resamples only where it lands, with the same result as
resampling the whole grid."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk  # noqa: N813

from models.imaging.registration import _grid, _landing_region, propagate_mask
from models.imaging.volume import Volume
from tests.unit.imaging.lesion_study import volume


def _everywhere(mask: np.ndarray, source: Volume, target: Volume, transform) -> np.ndarray:
    moving = source.to_sitk(mask.astype(np.float32))
    reference = target.to_sitk(np.zeros(target.geometry.shape, np.uint8))
    out = sitk.Resample(moving, reference, transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out) >= 0.5


def _transforms(target: Volume) -> dict[str, sitk.Transform]:
    rigid = sitk.Euler3DTransform((0.0, 0.0, 0.0), 0.05, -0.03, 0.2, (6.0, -9.0, 4.0))
    domain = target.to_sitk(np.zeros(target.geometry.shape, np.float32))
    bspline = sitk.BSplineTransformInitializer(domain, [3, 3, 2], 3)
    params = np.random.default_rng(1).normal(0.0, 2.0, len(bspline.GetParameters()))
    bspline.SetParameters(tuple(float(v) for v in params))
    return {"rigid": rigid, "rigid+bspline": sitk.CompositeTransform([rigid, bspline])}


@pytest.mark.parametrize("kind", ["rigid", "rigid+bspline"])
def test_the_carried_mask_is_the_whole_grid_resample(kind: str) -> None:
    source = volume(np.zeros((40, 160, 160), np.float32), (3.0, 1.5, 1.5), (-120.0, -120.0, -60.0))
    target = volume(np.zeros((48, 200, 200), np.float32), (2.5, 1.2, 1.2), (-120.0, -120.0, -60.0))
    zz, yy, xx = np.mgrid[:40, :160, :160]
    mask = ((zz - 18) / 4.0) ** 2 + ((yy - 70) / 7.0) ** 2 + ((xx - 90) / 5.0) ** 2 <= 1.0
    transform = _transforms(target)[kind]
    carried = propagate_mask(mask, source, target, transform)
    assert carried.any()
    # only a part of the grid was resampled
    _index, size = _landing_region(
        mask, source, _grid(target), list(target.geometry.shape[::-1]), transform
    )
    assert np.prod(size) < 0.1 * np.prod(target.geometry.shape)
    assert np.array_equal(carried, _everywhere(mask, source, target, transform))
