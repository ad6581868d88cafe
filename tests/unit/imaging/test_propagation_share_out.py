"""Voxels that several refined lesions claim go to the nearest carried mask, decided on boxes
with the result of whole-grid distance maps."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from models.imaging.annotations import Lesion
from models.imaging.lesion import MaskSource
from models.imaging.propagation import _share_out
from models.imaging.volume import dice, shared_voxels


def _ball(shape, centre, radius) -> np.ndarray:
    zz, yy, xx = np.indices(shape)
    return (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2 <= radius**2


def _whole_grid(found, spacing) -> None:
    """The decision on the whole grid: each shared voxel to the nearest carried mask."""
    count = np.zeros(found[0][2].shape, np.uint8)
    for _, _, refined in found:
        count += refined
    shared = count > 1
    if not shared.any():
        return
    claimants = [i for i, (_, _, refined) in enumerate(found) if (refined & shared).any()]
    distances = np.stack(
        [ndimage.distance_transform_edt(~found[i][1], sampling=spacing) for i in claimants]
    )
    winner = np.argmin(distances, axis=0)
    for rank, i in enumerate(claimants):
        found[i][2][shared & found[i][2] & (winner != rank)] = False


def _found(shape):
    specs = [((12, 20, 20), 5, 8), ((14, 30, 28), 6, 9), ((12, 50, 50), 4, 5)]
    out = []
    for k, (centre, carried_r, refined_r) in enumerate(specs):
        lesion = Lesion(_ball(shape, centre, carried_r), f"l{k}", k, MaskSource.SEG)
        out.append((lesion, lesion.mask, _ball(shape, centre, refined_r)))
    return out


def test_shared_voxels_go_where_whole_grid_distances_send_them() -> None:
    shape, spacing = (30, 64, 64), (2.5, 0.8, 0.8)
    found, expected = _found(shape), _found(shape)
    before = [refined.copy() for _, _, refined in found]
    assert np.count_nonzero(before[0] & before[1]) > 0  # the first two overlap
    _share_out(found, spacing)
    _whole_grid(expected, spacing)
    for (_, _, got), (_, _, want) in zip(found, expected, strict=True):
        assert np.array_equal(got, want)
    # every shared voxel went to one lesion, and the third lost nothing
    assert not np.any(found[0][2] & found[1][2])
    assert np.array_equal(found[2][2], before[2])
    assert np.count_nonzero(found[0][2]) < np.count_nonzero(before[0])
    assert np.count_nonzero(found[1][2]) < np.count_nonzero(before[1])


def test_shared_voxels_are_counted_in_the_box() -> None:
    shape = (30, 64, 64)
    a, b = _ball(shape, (12, 20, 20), 8), _ball(shape, (14, 30, 28), 9)
    assert shared_voxels(a, b) == int((a & b).sum()) > 0
    assert shared_voxels(a, np.zeros(shape, bool)) == 0
    assert dice(a, b) == pytest.approx(2 * (a & b).sum() / (a.sum() + b.sum()))
    assert dice(a, a) == 1.0
    assert dice(np.zeros(shape, bool), np.zeros(shape, bool)) == 0.0
