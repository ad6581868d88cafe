"""Benchmark: how far the image grid alone biases a lesion's measured axes.

Run ``python -m bench.grid_bias`` (``--help`` for options). For each of the virtual clinic's
image sizes (``clinic.cohort.SIZES``: pixel and slice spacing) and each true long axis, it
draws ``--lesions`` ellipsoids of random shape, turn and sub-voxel position, rasterises them as
the clinic does (:func:`clinic.phantom.ellipsoid_fraction`, 27 samples a voxel) and keeps the
voxels at least half inside (the clinic's label map and its reader's SEG), then measures the
mask as the worker does (:func:`models.imaging.burden.axial_axes`). It reports the median
signed error of the long axis (and of the short axis, the measure of a lymph node) against the
ellipsoid's own, per size: no noise, no reader, no registration, only the grid.

This is what a lesion a few voxels across loses to partial volume (its rim) and to the slice
spacing (its widest section falls between slices): a radiologist's ruler on the same slices
loses the same. It explains the size-dependent bias found on the test-size cohorts
(``docs/lesions.md``) and says at which grid it goes away.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from clinic.cohort import SIZES
from clinic.phantom import Geometry as ClinicGeometry
from clinic.phantom import ellipsoid_fraction
from models.imaging.burden import axial_axes
from models.imaging.volume import Geometry

DIAMETERS_MM = (5.0, 6.0, 8.0, 10.0, 12.0, 15.0, 20.0, 30.0)


def rasterise(
    semi_axes_mm: tuple[float, float, float],
    angle_deg: float,
    offset_mm: tuple[float, float, float],
    pixel_mm: float,
    slice_mm: float,
) -> tuple[np.ndarray, Geometry]:
    """The voxels at least half inside an ellipsoid near the centre of a grid just large enough
    for it, and that grid's geometry (as the worker reads it)."""
    reach = max(semi_axes_mm) + 3.0 * max(pixel_mm, slice_mm)
    n = 2 * math.ceil(reach / pixel_mm) + 1
    m = 2 * math.ceil(reach / slice_mm) + 1
    grid = ClinicGeometry(rows=n, cols=n, n_slices=m, pixel_mm=pixel_mm, slice_mm=slice_mm)
    mask = np.zeros((m, n, n), dtype=bool)
    for k in range(m):
        found = ellipsoid_fraction(offset_mm, semi_axes_mm, angle_deg, grid, grid.z_mm(k), 3)
        if found is not None:
            fraction, window = found[0], found[1]
            mask[k][window] |= fraction >= 0.5
    geometry = Geometry(
        origin=(0.0, 0.0, 0.0),
        row_direction=(1.0, 0.0, 0.0),
        column_direction=(0.0, 1.0, 0.0),
        normal=(0.0, 0.0, 1.0),
        spacing=(slice_mm, pixel_mm, pixel_mm),
        shape=mask.shape,
    )
    return mask, geometry


def axis_errors(
    diameter_mm: float, pixel_mm: float, slice_mm: float, lesions: int, seed: int
) -> tuple[list[float], list[float]]:
    """Signed errors (% of truth) of the long and short axes of ``lesions`` random ellipsoids
    whose long axis is ``diameter_mm`` (the other axes 0.6 to 1 of it, as the clinic draws)."""
    rng = np.random.default_rng(seed)
    long_err, short_err = [], []
    for _ in range(lesions):
        a = diameter_mm / 2.0
        b, c = a * rng.uniform(0.6, 1.0), a * rng.uniform(0.6, 1.0)
        offset = (
            float(rng.uniform(-pixel_mm, pixel_mm)),
            float(rng.uniform(-pixel_mm, pixel_mm)),
            float(rng.uniform(-slice_mm, slice_mm)),
        )
        angle = float(rng.uniform(0, 180))
        mask, geometry = rasterise((a, b, c), angle, offset, pixel_mm, slice_mm)
        axes = axial_axes(mask, geometry)
        long_err.append(100.0 * (axes.long_mm / (2 * a) - 1.0))
        short_err.append(100.0 * (axes.short_mm / (2 * b) - 1.0))
    return long_err, short_err


def run(lesions: int, seed: int) -> list[dict[str, object]]:
    """One row per clinic size and true long axis: median signed errors of both axes."""
    rows: list[dict[str, object]] = []
    for name, size in SIZES.items():
        g = size.geometry
        for i, d in enumerate(DIAMETERS_MM):
            long_err, short_err = axis_errors(d, g.pixel_mm, g.slice_mm, lesions, seed + i)
            rows.append(
                {
                    "size": name,
                    "pixel_mm": g.pixel_mm,
                    "slice_mm": g.slice_mm,
                    "long_axis_mm": d,
                    "long_median_error_pct": float(np.median(long_err)),
                    "short_median_error_pct": float(np.median(short_err)),
                    "lesions": lesions,
                }
            )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lesions", type=int, default=40, help="ellipsoids per size and axis")
    parser.add_argument("--seed", type=int, default=20261205)
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args(argv)
    rows = run(args.lesions, args.seed)
    print("size       pixel  slice  true long axis  long axis  short axis (median signed error)")
    for r in rows:
        print(
            f"{r['size']:<10} {r['pixel_mm']:>5} {r['slice_mm']:>6}  {r['long_axis_mm']:>8.0f} mm"
            f"  {r['long_median_error_pct']:>+8.1f} %  {r['short_median_error_pct']:>+8.1f} %"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
