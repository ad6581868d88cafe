"""`mask_bounds`: the bounding box of a mask by projections, as np.nonzero would give it."""

from __future__ import annotations

import numpy as np
import pytest

from models.imaging.volume import mask_bounds


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
