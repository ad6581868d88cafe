"""`mask_bounds`: the bounding box of a mask by projections, as np.nonzero would give it; the
boxes cut around it; a mask's values read on its box."""

from __future__ import annotations

import numpy as np
import pytest

from models.imaging.volume import box_slices, mask_bounds, mask_box, padded_box, values_in


@pytest.mark.parametrize("seed", range(20))
def test_bounds_equal_those_of_every_voxel(seed: int) -> None:
    rng = np.random.default_rng(seed)
    mask = rng.random((rng.integers(1, 12), rng.integers(1, 30), rng.integers(1, 30))) > 0.97
    bounds = mask_bounds(mask)
    if not mask.any():
        assert bounds is None
        return
    nz = np.nonzero(mask)
    assert bounds is not None
    assert bounds[0].tolist() == [int(a.min()) for a in nz]
    assert bounds[1].tolist() == [int(a.max()) for a in nz]


def test_one_voxel_and_an_empty_mask() -> None:
    mask = np.zeros((5, 6, 7), bool)
    assert mask_bounds(mask) is None
    mask[4, 0, 6] = True
    lo, hi = mask_bounds(mask)  # type: ignore[misc]
    assert lo.tolist() == hi.tolist() == [4, 0, 6]


def test_a_padded_box_holds_the_voxels_and_the_pad_within_the_grid() -> None:
    shape = (10, 40, 40)
    mask = np.zeros(shape, bool)
    mask[1:4, 20:31, 36:40] = True
    first, last = mask_bounds(mask)  # type: ignore[misc]
    lo, hi = padded_box(first, last, np.array([2, 3, 3]), shape)
    assert lo.tolist() == [0, 17, 33]  # z clipped at the first slice
    assert hi.tolist() == [6, 34, 40]  # x clipped at the last column
    box = box_slices(lo, hi)
    assert mask[box].sum() == mask.sum()
    assert mask[box].shape == (6, 17, 7)
    lo, hi = padded_box(first, last, 0, shape)
    assert box_slices(lo, hi) == mask_box(mask)


@pytest.mark.parametrize("seed", range(10))
def test_values_in_a_mask_are_those_of_the_whole_grid_in_order(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = (rng.integers(1, 12), rng.integers(1, 30), rng.integers(1, 30))
    array = rng.normal(size=shape).astype(np.float32)
    mask = rng.random(shape) > 0.9
    values = values_in(array, mask)
    assert values.dtype == array.dtype
    assert np.array_equal(values, array[mask])  # same values, same order (empty included)
