"""A lesion's mask made final (read-only) has its bounds remembered: the same bounds as a pass
over the whole grid gives, never stale, forgotten with the mask; the masks the pipeline makes
(carried, refined, shared out) are final and carry the bounds of the box they were written on."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import SimpleITK as sitk  # noqa: N813

from models.imaging import volume as volume_module
from models.imaging.annotations import Lesion
from models.imaging.lesion import MaskSource, refine_mask
from models.imaging.propagation import _share_out
from models.imaging.registration import propagate_mask
from models.imaging.volume import final_mask, mask_bounds, mask_voxels
from tests.unit.imaging import lesion_study

SHAPE = (24, 256, 256)  # above the size whose bounds are remembered
SPACING = (2.0, 0.8, 0.8)


def _ball(centre, radius) -> np.ndarray:
    zz, yy, xx = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    z, y, x = centre
    mm = ((zz - z) * SPACING[0]) ** 2 + ((yy - y) * SPACING[1]) ** 2 + ((xx - x) * SPACING[2]) ** 2
    return mm <= radius**2


def _fresh_bounds(mask: np.ndarray):
    # a writeable copy: found by a pass, never remembered
    return volume_module._bounds(np.array(mask))


def test_remembered_bounds_are_the_masks_and_the_mask_cannot_change() -> None:
    mask = _ball((10, 100, 120), 9.0)
    want = _fresh_bounds(mask)
    final_mask(mask)
    for _ in range(2):  # found once, then remembered
        lo, hi = mask_bounds(mask)  # type: ignore[misc]
        assert lo.tolist() == want[0].tolist() and hi.tolist() == want[1].tolist()
        lo -= 5  # the caller's copy: the remembered bounds stay
    assert id(mask) in volume_module._KNOWN_BOUNDS
    with pytest.raises(ValueError, match="read-only"):
        mask[0, 0, 0] = True
    assert mask_voxels(mask) == int(np.count_nonzero(mask))


def test_a_writeable_mask_is_not_remembered_and_a_view_cannot_be_final() -> None:
    mask = _ball((10, 100, 120), 9.0)
    assert mask_bounds(mask) is not None
    mask[:] = False  # changed after being asked: its bounds follow
    assert mask_bounds(mask) is None
    assert id(mask) not in volume_module._KNOWN_BOUNDS
    with pytest.raises(ValueError, match="view"):
        final_mask(mask[2:])


def test_bounds_are_forgotten_with_the_mask() -> None:
    mask = final_mask(_ball((10, 100, 120), 9.0))
    mask_bounds(mask)
    key = id(mask)
    assert key in volume_module._KNOWN_BOUNDS
    del mask
    gc.collect()
    assert key not in volume_module._KNOWN_BOUNDS


def test_an_empty_final_mask_has_no_bounds() -> None:
    mask = final_mask(np.zeros(SHAPE, bool))
    assert mask_bounds(mask) is None and mask_bounds(mask) is None
    assert mask_voxels(mask) == 0


def test_carried_and_refined_masks_are_final_with_their_boxes_bounds() -> None:
    rng = np.random.default_rng(3)
    hu = rng.normal(0.0, 8.0, SHAPE).astype(np.float32)
    lesion = _ball((12, 120, 130), 11.0)
    hu[lesion] += 60.0
    volume = lesion_study.volume(hu, spacing=SPACING, origin=(0.0, 0.0, 0.0))
    shift = sitk.Euler3DTransform((0.0, 0.0, 0.0), 0.0, 0.0, 0.02, (1.6, -2.4, 2.0))  # mm
    carried = propagate_mask(lesion, volume, volume, shift)
    assert not carried.flags.writeable
    assert volume_module._KNOWN_BOUNDS[id(carried)][1] is not None  # seeded by its maker
    for got, want in zip(mask_bounds(carried), _fresh_bounds(carried), strict=True):  # type: ignore[arg-type]
        assert got.tolist() == want.tolist()
    refined = refine_mask(volume, carried, 60.0)
    assert not refined.flags.writeable
    for got, want in zip(mask_bounds(refined), _fresh_bounds(refined), strict=True):  # type: ignore[arg-type]
        assert got.tolist() == want.tolist()


def test_sharing_out_makes_new_final_masks_and_leaves_the_old_as_they_were() -> None:
    specs = [((12, 100, 100), 10.0, 14.0), ((12, 118, 112), 10.0, 14.0), ((8, 40, 40), 5, 6)]
    found = []
    for k, (centre, carried_r, refined_r) in enumerate(specs):
        carried = final_mask(_ball(centre, carried_r))
        lesion = Lesion(carried, f"l{k}", k, MaskSource.SEG)
        found.append((lesion, carried, final_mask(_ball(centre, refined_r))))
    before = [refined for _, _, refined in found]
    copies = [refined.copy() for refined in before]
    assert np.count_nonzero(copies[0] & copies[1]) > 0
    _share_out(found, SPACING)
    for old, copy in zip(before, copies, strict=True):
        assert np.array_equal(old, copy)  # nothing changed in place
    assert found[2][2] is before[2]  # the third shared nothing: the same mask
    for _, _, refined in found[:2]:
        assert not refined.flags.writeable
        for got, want in zip(mask_bounds(refined), _fresh_bounds(refined), strict=True):  # type: ignore[arg-type]
            assert got.tolist() == want.tolist()
    assert not np.any(found[0][2] & found[1][2])
