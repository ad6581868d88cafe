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


@pytest.mark.parametrize("seed", range(6))
def test_a_rigid_transform_resamples_a_tight_box_with_the_same_result(
    seed: int, monkeypatch
) -> None:
    """Rigid alone, the mask is resampled on its carried box plus two source voxels (not the
    B-spline part's 30 mm), with thick source slices and a turned, shifted target, and the
    whole grid is never needed."""
    rng = np.random.default_rng(seed)
    source = volume(np.zeros((30, 120, 120), np.float32), (5.0, 1.4, 1.4), (-84.0, -84.0, -75.0))
    target = volume(np.zeros((120, 180, 180), np.float32), (1.25, 0.9, 0.9), (-81.0, -81.0, -75.0))
    zz, yy, xx = np.mgrid[:30, :120, :120]
    centre = rng.uniform([12, 45, 45], [18, 75, 75])
    semi = rng.uniform([1.5, 4.0, 4.0], [3.0, 12.0, 12.0])
    mask = (((np.stack([zz, yy, xx], -1) - centre) / semi) ** 2).sum(-1) <= 1.0
    angles = rng.uniform(-0.3, 0.3, 3)
    shift = rng.uniform(-8.0, 8.0, 3)
    transform = sitk.Euler3DTransform(
        (0.0, 0.0, 0.0), *(float(a) for a in angles), tuple(float(v) for v in shift)
    )
    import models.imaging.registration as registration

    whole_grid: list[bool] = []
    touches = registration._touches_border

    def recorded(carried: np.ndarray) -> bool:
        whole_grid.append(touches(carried))
        return whole_grid[-1]

    monkeypatch.setattr(registration, "_touches_border", recorded)
    carried = propagate_mask(mask, source, target, transform)
    assert carried.any()
    assert whole_grid == [False]  # the tight box held it: no whole-grid resample
    assert np.array_equal(carried, _everywhere(mask, source, target, transform))
    grid, shape = _grid(target), list(target.geometry.shape[::-1])
    _index, size = _landing_region(mask, source, grid, shape, transform)
    # with a B-spline part after it the box keeps 30 mm a side; rigid alone, 2 x 5 mm
    with_bspline = sitk.CompositeTransform([transform, sitk.TranslationTransform(3)])
    _index, wide = _landing_region(mask, source, grid, shape, with_bspline)
    spacing = np.array([0.9, 0.9, 1.25])
    assert np.all(np.array(wide) - np.array(size) >= 2 * (30.0 - 10.0) / spacing - 2)
