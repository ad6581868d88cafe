"""Measurements on written lesion masks and contours, to check them against the ground truth.

Also the reference way for the models to read the planning target back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from scipy.spatial import ConvexHull, distance
from skimage import measure


def _feret(points: np.ndarray) -> float:
    """Longest distance between two of ``points`` (N x 2)."""
    if len(points) < 2:
        return 0.0
    if len(points) > 3:
        points = points[ConvexHull(points).vertices]
    return float(distance.pdist(points).max())


def rtstruct_measure(path: Path | str) -> tuple[float, float]:
    """(volume ml, longest axial diameter mm) of the first ROI of an RT Structure Set.

    Volume is the sum of contour areas times the slice spacing (read from the contours' z).
    """
    ds = pydicom.dcmread(path)
    polys = []
    for item in ds.ROIContourSequence[0].ContourSequence:
        pts = np.asarray(item.ContourData, dtype=float).reshape(-1, 3)
        polys.append(pts)
    zs = sorted({round(float(p[0, 2]), 3) for p in polys})
    spacing = float(np.median(np.diff(zs))) if len(zs) > 1 else 0.0
    volume = 0.0
    diameter = 0.0
    for p in polys:
        x, y = p[:, 0], p[:, 1]
        volume += 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))) * spacing
        diameter = max(diameter, _feret(p[:, :2]))
    return volume / 1000.0, diameter


def mask_measure(mask: np.ndarray, pixel_mm: float, slice_mm: float) -> tuple[float, float]:
    """(volume ml, longest axial diameter mm) of a voxel mask (slices x rows x cols).

    The diameter is the longest distance across the mask's 0.5 iso-contour on one axial slice
    (the contour through the midpoints of boundary edges).
    """
    volume = float(mask.sum()) * pixel_mm * pixel_mm * slice_mm / 1000.0
    diameter = 0.0
    for sl in mask:
        if sl.any():
            for c in measure.find_contours(np.pad(sl.astype(float), 1), 0.5):
                diameter = max(diameter, _feret(c * pixel_mm))
    return volume, diameter


def seg_mask(path: Path | str) -> tuple[np.ndarray, float, float]:
    """(mask slices x rows x cols, pixel mm, slice mm) of segment 1 of a DICOM SEG."""
    import highdicom as hd

    seg = hd.seg.segread(path)
    volume = seg.get_volume(combine_segments=False)
    arr = np.asarray(volume.array)[..., 0] > 0
    spacing = volume.spacing
    return arr, float(spacing[1]), float(spacing[0])
