"""The grid's own bias on a lesion's axes (bench.grid_bias): the clinic's rasterised ellipsoids
measured as the worker measures them."""

from __future__ import annotations

import numpy as np

from bench.grid_bias import axis_errors, rasterise


def test_a_rasterised_ellipsoid_keeps_the_voxels_at_least_half_inside() -> None:
    mask, geometry = rasterise((6.0, 4.0, 4.0), 0.0, (0.0, 0.0, 0.0), 1.0, 1.0)
    # volume of the voxel mask close to the ellipsoid's (4/3 pi abc = 402 mm3)
    volume = mask.sum() * float(np.prod(geometry.spacing))
    assert abs(volume - 4.0 / 3.0 * np.pi * 6 * 4 * 4) < 0.08 * 402


def test_at_a_clinical_grid_lesions_of_10_mm_and_more_measure_within_3_percent() -> None:
    for d in (10.0, 20.0):
        long_err, short_err = axis_errors(d, 1.4, 1.5, lesions=12, seed=3)
        assert abs(float(np.median(long_err))) < 3.0, (d, long_err)
        assert abs(float(np.median(short_err))) < 3.0, (d, short_err)


def test_at_the_test_grid_an_8_mm_lesion_measures_at_least_a_tenth_short() -> None:
    # the known limit of the test-size clinic (2.7 mm pixels, 3 mm slices), docs/lesions.md
    long_err, _ = axis_errors(8.0, 2.7, 3.0, lesions=12, seed=3)
    assert float(np.median(long_err)) < -10.0
