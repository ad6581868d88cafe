"""A propagated lesion is refined on a box just large enough for what the refinement reads:
the masks equal those of the wider box it used before 2026-12-04, on lesions that grow,
shrink, sit beside a brighter neighbour or at the edge of the scan."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from models.exceptions import InsufficientDataError
from models.imaging.lesion import _core, refine_mask
from models.imaging.volume import Geometry, Volume, mask_bounds


def _refine_wide_box(volume, propagated, lesion_hu, growth_mm=12.0, lesion_hu_max=None):
    """refine_mask as it was until 2026-12-04: a box 12 mm wider than its reach, and the
    depth map over that whole box."""
    sp = np.asarray(volume.geometry.spacing)
    first, last = mask_bounds(propagated)
    pad = np.ceil((growth_mm + 12.0) / sp).astype(int) + 1
    lo = np.maximum(first - pad, 0)
    hi = np.minimum(last + pad + 1, volume.geometry.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    img, prop = volume.array[box], propagated[box]
    inside = ndimage.distance_transform_edt(prop, sampling=sp)
    outside = ndimage.distance_transform_edt(~prop, sampling=sp)
    core = inside > 3.0
    if core.sum() < 10:
        core = prop
    inner = float(np.median(img[core])) if core.any() else lesion_hu
    inner = 0.5 * (inner + lesion_hu)
    ring = (outside > 4.0) & (outside <= 10.0)
    outer = float(np.median(img[ring])) if ring.any() else -1000.0
    if abs(inner - outer) < 40.0:
        raise InsufficientDataError("no contrast")
    threshold = 0.5 * (inner + outer)
    smooth = ndimage.gaussian_filter(img, 0.6)
    candidate = (img > threshold) if inner > outer else (img < threshold)
    if core.sum() >= 30:
        top = float(np.percentile(smooth[core], 99))
    else:
        top = lesion_hu_max if lesion_hu_max is not None else inner + 100.0
    if inner > outer:
        candidate &= smooth <= top + 25.0
    candidate &= outside <= growth_mm
    labels, n = ndimage.label(candidate)
    if n == 0:
        raise InsufficientDataError("nothing found")
    seeds = np.unique(labels[core & candidate])
    seeds = seeds[seeds > 0]
    if seeds.size == 0:
        sizes = ndimage.sum(candidate, labels, index=np.arange(1, n + 1))
        seeds = np.array([int(np.argmax(sizes)) + 1])
    out = np.zeros(propagated.shape, bool)
    out[box] = ndimage.binary_fill_holes(np.isin(labels, seeds))
    return out


def _ellipsoid(shape, spacing, centre_mm, semi_mm) -> np.ndarray:
    z, y, x = np.meshgrid(
        *(np.arange(n) * s for n, s in zip(shape, spacing, strict=True)), indexing="ij"
    )
    return (
        sum(((c - m) / a) ** 2 for c, m, a in zip((z, y, x), centre_mm, semi_mm, strict=True))
        <= 1.0
    )


def _scene(seed: int, centre_mm, semi_mm, shift_vox, scale, neighbour: bool):
    """A follow-up (lesion grown or shrunk by ``scale``, a hole in it, noise, optionally an
    enhancing neighbour touching it) and the baseline mask carried with an error."""
    shape, spacing = (40, 96, 96), (1.5, 0.7, 0.7)
    rng = np.random.default_rng(seed)
    baseline = _ellipsoid(shape, spacing, centre_mm, semi_mm)
    lesion = _ellipsoid(shape, spacing, centre_mm, tuple(a * scale for a in semi_mm))
    hu = np.full(shape, -820.0, np.float32)
    hu[lesion] = 45.0
    hollow = _ellipsoid(shape, spacing, centre_mm, tuple(a * scale * 0.25 for a in semi_mm))
    hu[hollow] = -600.0  # a cavity: filled as a hole
    if neighbour:
        near = tuple(c + 1.1 * a * scale for c, a in zip(centre_mm, semi_mm, strict=True))
        hu[_ellipsoid(shape, spacing, near, (6.0, 6.0, 6.0))] = 260.0
    hu += rng.normal(0.0, 12.0, shape).astype(np.float32)
    carried = np.roll(baseline, shift_vox, axis=(0, 1, 2))
    geometry = Geometry((0.0, 0.0, 0.0), (1, 0, 0), (0, 1, 0), (0, 0, 1), spacing, shape)
    return Volume(hu, geometry), carried


CASES = [
    # seed, centre (mm), semi-axes (mm), carried shift (voxels), growth, neighbour
    (1, (30.0, 34.0, 33.0), (7.0, 10.0, 9.0), (0, 2, -1), 1.3, False),
    (2, (30.0, 34.0, 33.0), (7.0, 10.0, 9.0), (1, -3, 2), 0.6, False),
    (3, (28.0, 30.0, 40.0), (6.0, 8.0, 8.0), (0, 1, 1), 1.0, True),
    (4, (6.0, 8.0, 60.0), (5.0, 6.0, 7.0), (0, 0, -1), 1.1, False),  # at the scan's edge
    (5, (52.0, 60.0, 58.0), (4.0, 3.0, 3.0), (0, 1, 0), 1.2, True),  # small: no 3 mm core
]


@pytest.mark.parametrize(("seed", "centre", "semi", "shift", "scale", "neighbour"), CASES)
@pytest.mark.parametrize("growth_mm", [12.0, 6.0])
def test_refined_mask_equals_the_wide_box_one(
    seed, centre, semi, shift, scale, neighbour, growth_mm
) -> None:
    volume, carried = _scene(seed, centre, semi, shift, scale, neighbour)
    want = _refine_wide_box(volume, carried, 45.0, growth_mm, lesion_hu_max=70.0)
    got = refine_mask(volume, carried, 45.0, growth_mm, lesion_hu_max=70.0)
    assert want.any()
    assert np.array_equal(got, want)


def test_refined_mask_follows_the_lesion_not_the_carried_outline() -> None:
    volume, carried = _scene(2, (30.0, 34.0, 33.0), (7.0, 10.0, 9.0), (1, -3, 2), 0.6, False)
    got = refine_mask(volume, carried, 45.0)
    lesion = volume.array > -300.0
    assert np.count_nonzero(got) < 0.5 * np.count_nonzero(carried)  # it shrank
    assert np.count_nonzero(got & ~ndimage.binary_dilation(lesion, iterations=1)) == 0


@pytest.mark.parametrize("seed", range(6))
def test_core_equals_the_depth_map_of_the_whole_box(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape, spacing = (30, 50, 50), np.array([1.5, 0.7, 0.7])
    blob = ndimage.binary_opening(
        ndimage.gaussian_filter(rng.normal(size=shape), 3.0) > 0.02, iterations=1
    )
    inner = np.zeros(shape, bool)
    inner[4:-6, 7:-9, (0 if seed % 2 else 6) : -8] = True  # odd seeds: at the box's edge
    blob &= inner
    first, last = mask_bounds(blob)
    want = ndimage.distance_transform_edt(blob, sampling=spacing) > 3.0
    assert want.any()
    assert np.array_equal(_core(blob, first, last, spacing), want)
