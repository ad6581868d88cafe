"""The registration's images are made from the parts of the scans it needs, with the same
values and geometry as from whole clamped copies: where a baseline lesion lands on the
follow-up (resampled only on the part of the grid it lands in), the boxes around the lesions,
and the block-averaged whole scans."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk  # noqa: N813

from models.imaging import registration
from models.imaging.registration import (
    _box,
    _clamped_box,
    _landing,
    _mask_image,
    _paste,
    _shrink,
    _shrunk,
)
from models.imaging.volume import Geometry, Volume


def _volume(shape: tuple[int, int, int], spacing: tuple[float, float, float], seed: int) -> Volume:
    geometry = Geometry(
        origin=(-120.0, -120.0, -60.0),
        row_direction=(1.0, 0.0, 0.0),
        column_direction=(0.0, 1.0, 0.0),
        normal=(0.0, 0.0, 1.0),
        spacing=spacing,
        shape=shape,
    )
    values = np.random.default_rng(seed).normal(0.0, 100.0, shape).astype(np.float32)
    return Volume(values, geometry)


def _ellipsoid(shape, centre, semi) -> np.ndarray:
    zz, yy, xx = np.mgrid[: shape[0], : shape[1], : shape[2]]
    return sum(((g - c) / a) ** 2 for g, c, a in zip((zz, yy, xx), centre, semi, strict=True)) <= 1


def _case(transform: sitk.Transform, centres=((18, 70, 90),)):
    source = _volume((40, 160, 160), (3.0, 1.5, 1.5), 1)
    target = _volume((48, 200, 200), (2.5, 1.2, 1.2), 2)
    masks = [_ellipsoid((40, 160, 160), c, (4.0, 7.0, 5.0)) for c in centres]
    union = np.any(masks, axis=0)
    m_mask = _mask_image(union, source, np.uint8)
    f_full = target.to_sitk(target.array)
    return _landing(masks, source, target, transform), m_mask, f_full


@pytest.mark.parametrize("centres", [((18, 70, 90),), ((8, 20, 25), (30, 130, 135))])
def test_the_landed_parts_are_the_whole_grid_resample(centres) -> None:
    coarse = sitk.Euler3DTransform((0.0, 0.0, 0.0), 0.05, -0.03, 0.2, (6.0, -9.0, 4.0))
    parts, m_mask, f_full = _case(coarse, centres)
    whole = sitk.Resample(m_mask, f_full, coarse, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    everywhere = sitk.GetArrayFromImage(whole)
    assert everywhere.any()
    # only parts were resampled, one per lesion, and they hold every voxel the whole grid lands
    assert len(parts) == len(centres)
    assert sum(landed.size for landed, _ in parts) < 0.13 * len(parts) * everywhere.size
    for landed, at in parts:
        assert at != [0, 0, 0]
        box = tuple(slice(a, a + n) for a, n in zip(at[::-1], landed.shape, strict=True))
        assert np.array_equal(landed, everywhere[box] & landed)
    assert sum(int(landed.sum()) for landed, _ in parts) == everywhere.sum()
    # the follow-up box and the region of interest are those of the whole-grid resample
    spacing, size_all = f_full.GetSpacing(), f_full.GetSize()
    index, size = _box(parts, spacing, 40.0, size_all)
    assert (index, size) == _box([(everywhere, [0, 0, 0])], spacing, 40.0, size_all)
    roi = _paste(parts, f_full, index, size)
    expected = sitk.RegionOfInterest(whole, size, index)
    assert np.array_equal(sitk.GetArrayFromImage(roi), sitk.GetArrayFromImage(expected))
    assert roi.GetOrigin() == expected.GetOrigin()
    assert roi.GetSpacing() == expected.GetSpacing()
    assert roi.GetDirection() == expected.GetDirection()


def test_a_lesion_carried_off_the_follow_up_lands_where_it_was() -> None:
    far = sitk.Euler3DTransform((0.0, 0.0, 0.0), 0.0, 0.0, 0.0, (900.0, 0.0, 0.0))
    [(landed, at)], m_mask, f_full = _case(far)
    identity = sitk.Resample(m_mask, f_full, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    assert at == [0, 0, 0]
    assert landed.any()
    assert np.array_equal(landed, sitk.GetArrayFromImage(identity))


def test_lesions_carried_off_the_follow_up_land_where_they_were() -> None:
    far = sitk.Euler3DTransform((0.0, 0.0, 0.0), 0.0, 0.0, 0.0, (900.0, 0.0, 0.0))
    [(landed, at)], m_mask, f_full = _case(far, ((8, 20, 25), (30, 130, 135)))
    identity = sitk.Resample(m_mask, f_full, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    assert at == [0, 0, 0]
    assert np.array_equal(landed, sitk.GetArrayFromImage(identity))


def _clamped_whole(volume: Volume) -> sitk.Image:
    return volume.to_sitk(np.clip(volume.array, -1000.0, 1500.0, dtype=np.float32))


def _same_image(got: sitk.Image, expected: sitk.Image) -> None:
    assert np.array_equal(sitk.GetArrayFromImage(got), sitk.GetArrayFromImage(expected))
    assert got.GetOrigin() == expected.GetOrigin()
    assert got.GetSpacing() == expected.GetSpacing()
    assert got.GetDirection() == expected.GetDirection()


@pytest.mark.parametrize("slab_bytes", [1, 1_000_000, 8 << 20])
def test_the_shrunk_scan_is_the_whole_clamped_scan_shrunk(monkeypatch, slab_bytes: int) -> None:
    # 41 slices of 1.5 mm and 157 x 150 pixels of 0.7 mm: none divides into 4 mm blocks
    volume = _volume((41, 150, 157), (1.5, 0.7, 0.7), 3)
    volume.array[:] *= 15.0  # values beyond both clamps
    monkeypatch.setattr(registration, "_SLAB_BYTES", slab_bytes)
    for mm in (4.0, 2.0):
        _same_image(_shrunk(volume, mm), _shrink(_clamped_whole(volume), mm))
        index, size = [11, 7, 5], [101, 93, 30]
        expected = sitk.RegionOfInterest(_clamped_whole(volume), size, index)
        _same_image(_shrunk(volume, mm, index, size), _shrink(expected, mm))


def test_a_scan_too_coarse_to_shrink_is_the_whole_clamped_scan() -> None:
    volume = _volume((12, 40, 40), (5.0, 2.7, 2.7), 4)
    _same_image(_shrunk(volume, 4.0), _shrink(_clamped_whole(volume), 4.0))


def test_a_box_of_the_scan_is_that_box_of_the_whole_clamped_scan() -> None:
    volume = _volume((40, 160, 160), (3.0, 1.5, 1.5), 5)
    volume.array[:] *= 15.0
    index, size = [17, 3, 9], [60, 41, 22]
    expected = sitk.RegionOfInterest(_clamped_whole(volume), size, index)
    _same_image(_clamped_box(volume, index, size), expected)
