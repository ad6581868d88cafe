"""The overlap of each carried baseline lesion with each lesion found on the follow-up (the
matching's Dice) is counted inside the carried mask's box, with the counts of the whole grid."""

from __future__ import annotations

import numpy as np

from models.imaging.annotations import Lesion
from models.imaging.lesion import MaskSource
from models.imaging.study import _key, _overlaps


def _ball(shape, centre, radius) -> np.ndarray:
    zz, yy, xx = np.indices(shape)
    return (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2 <= radius**2


def _whole_grid(carried, baseline, found) -> dict[tuple[str, str], float]:
    """Dice over the whole grid, a voxel two found lesions share counted for the later one."""
    owner = np.zeros(carried[0].shape, int)
    for j, lesion in enumerate(found, start=1):
        owner[lesion.mask] = j
    out = {}
    for lesion, mask in zip(baseline, carried, strict=True):
        if not lesion.tracking_uid:
            continue
        for j, other in enumerate(found, start=1):
            shared = int(np.count_nonzero(mask & (owner == j)))
            if shared:
                dice = 2 * shared / (int(mask.sum()) + int(other.mask.sum()))
                out[(lesion.tracking_uid, _key(other))] = dice
    return out


def test_overlaps_are_those_of_the_whole_grid() -> None:
    shape = (30, 64, 64)
    carried = [
        _ball(shape, (10, 20, 20), 6),
        _ball(shape, (20, 44, 40), 5),
        _ball(shape, (5, 5, 60), 2),
    ]
    carried.append(np.zeros(shape, bool))  # carried off the scan
    baseline = [
        Lesion(m, f"b{i}", i, MaskSource.SEG, tracking_uid=f"2.25.{i}" if i != 2 else "")
        for i, m in enumerate(carried)
    ]
    found_masks = [
        _ball(shape, (11, 22, 21), 6),
        _ball(shape, (19, 42, 41), 5),
        _ball(shape, (15, 32, 30), 12),
    ]
    found = [
        Lesion(m, f"f{i}", i + 1, MaskSource.SEG, reference_uid="1.2.3")
        for i, m in enumerate(found_masks)
    ]
    got = _overlaps(carried, baseline, found)
    expected = _whole_grid(carried, baseline, found)
    assert got == expected
    # both baseline lesions with a tracking UID overlap; the third (overlapping both) shares
    # voxels with each, which count for it, not for the earlier lesion
    assert {uid for uid, _ in got} == {"2.25.0", "2.25.1"}
    assert len(got) >= 4
    assert all(0 < v < 1 for v in got.values())
