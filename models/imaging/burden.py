"""Tumour burden as RECIST 1.1 measures it: volume, longest axial diameter (long axis) and the
short axis perpendicular to it on the same slice (the measure of a lymph node)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError
from skimage import measure

from models.exceptions import InsufficientDataError
from models.imaging.volume import Geometry, mask_bounds, mask_voxels

__all__ = ["AxialAxes", "Burden", "axial_axes", "longest_axial_diameter_mm", "measure_burden"]

_SMOOTH_PX = 0.7


@dataclass(frozen=True)
class Burden:
    """Volume (ml), long axis and short axis (mm) of a lesion, with the slice they lie on."""

    volume_ml: float
    longest_diameter_mm: float
    diameter_slice: int
    voxels: int
    short_axis_mm: float = 0.0
    """Longest diameter perpendicular to the long axis, on the long axis' slice."""


@dataclass(frozen=True)
class AxialAxes:
    """RECIST 1.1 axes of a lesion in the axial plane.

    Endpoints are ``(row, column)`` continuous voxel coordinates on ``slice``.
    """

    long_mm: float
    short_mm: float
    slice: int
    long_ends: tuple[tuple[float, float], tuple[float, float]] | None = None
    short_ends: tuple[tuple[float, float], tuple[float, float]] | None = None


_PAD = 3


def _max_feret(points: np.ndarray) -> tuple[float, int, int]:
    """Largest distance between two of ``points`` and the indices of the pair."""
    if len(points) < 2:
        return 0.0, 0, 0
    idx = np.arange(len(points))
    if len(points) > 3:
        with contextlib.suppress(QhullError):  # collinear points: keep them all
            idx = ConvexHull(points).vertices
    p = points[idx]
    d = p[:, None, :] - p[None, :, :]
    dist = np.sqrt((d * d).sum(-1))
    i, j = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return float(dist[i, j]), int(idx[i]), int(idx[j])


def _area_level(layer: np.ndarray, pixels: int) -> float:
    """The level of ``layer`` (a smoothed mask) above which exactly ``pixels`` of its pixels
    lie: halfway between its ``pixels``-th and next largest values."""
    flat = layer.ravel()
    k = flat.size - pixels
    if k <= 0:
        return 0.5
    part = np.partition(flat, (k - 1, k))
    return 0.5 * float(part[k - 1] + part[k])


def _outline(mask2d: np.ndarray) -> list[np.ndarray]:
    """Outline polygons (row, col; padded pixel units) of a lightly smoothed 2-D mask, traced
    at the level that keeps the mask's area (as many pixels above it as the mask holds); of the
    mask itself when the smoothing leaves nothing at that level (a lesion one or two pixels
    wide: its outline then runs through the pixel edges' midpoints, so a single pixel measures
    about one pixel, not 0).

    Until 2026-12-04 the outline was traced at the 0.5 level, which the smoothing moves inwards
    on a curved outline by about its width squared over the radius: a lesion a few pixels wide
    came out too small. On ``bench``-style ellipses voxelised at 2.7 mm pixels the short axis of
    a 6 mm lesion was 1.1 mm short at 0.5 and is 0.1 mm long at the area's level; 10 to 15 mm
    ones 0.2 to 0.5 mm short and 0.1 to 0.2 mm long; at 0.7 mm pixels both within 0.15 mm.
    On the tuning cohort v2-tune6-25301 (250 patients, 2.7 mm pixels, ``bench.lesion_accuracy``)
    lymph nodes of 10 to 15 mm (truth) were measured 0.35 to 0.69 mm short at 0.5 and 0.01 to
    0.11 mm short now, those under 8 mm about 1.9 mm and 0.9 to 1.3 mm short (the rest is the
    reader's outline: voxels at least half inside the lesion, on 3 mm slices); long axes 3.05 %
    off (median) before, 2.74 % now; RECIST 1.1 agreement 96.1 % and 97.0 % (docs/lesions.md)."""
    padded = np.pad(mask2d.astype(np.float32), _PAD)
    layer = ndimage.gaussian_filter(padded, _SMOOTH_PX)
    level = _area_level(layer, int(np.count_nonzero(mask2d)))
    polys = [c for c in measure.find_contours(layer, level) if len(c) >= 2]
    if polys or not mask2d.any():
        return polys
    return [c for c in measure.find_contours(padded, 0.5) if len(c) >= 2]


def _longest_perpendicular(
    polygons: list[np.ndarray], a: np.ndarray, b: np.ndarray, step_mm: float
) -> tuple[float, np.ndarray | None, np.ndarray | None]:
    """Longest chord of the outline perpendicular to the segment ``a``-``b`` (points in mm).

    The outline is cut by lines perpendicular to the long axis every ``step_mm``; on each line
    the chord runs from the first to the last crossing of the outline.
    """
    length = float(np.linalg.norm(b - a))
    if length == 0:
        return 0.0, None, None
    u = (b - a) / length
    v = np.array([-u[1], u[0]])
    edges = [np.stack([p[:-1], p[1:]], axis=1) for p in polygons]  # each: E x 2 x 2
    seg = np.concatenate(edges) if edges else np.zeros((0, 2, 2))
    s = (seg - a) @ u  # E x 2: position along the long axis
    w = (seg - a) @ v  # E x 2: position across it
    ts = np.arange(step_mm / 2, length, step_mm)
    if len(ts) == 0 or len(seg) == 0:
        return 0.0, None, None
    s0, s1 = s[:, 0][None], s[:, 1][None]
    t = ts[:, None]
    crossing = ((s0 <= t) & (s1 > t)) | ((s1 <= t) & (s0 > t))
    frac = np.where(crossing, (t - s0) / np.where(s1 != s0, s1 - s0, 1.0), 0.0)
    wc = w[:, 0][None] + frac * (w[:, 1] - w[:, 0])[None]
    hi = np.where(crossing, wc, -np.inf).max(axis=1)
    lo = np.where(crossing, wc, np.inf).min(axis=1)
    chord = np.where(np.isfinite(hi) & np.isfinite(lo), hi - lo, 0.0)
    k = int(np.argmax(chord))
    if chord[k] <= 0:
        return 0.0, None, None
    base = a + ts[k] * u
    return float(chord[k]), base + lo[k] * v, base + hi[k] * v


def axial_axes(mask: np.ndarray, geometry: Geometry) -> AxialAxes:
    """Long axis (max axial Feret diameter over all slices) and short axis of ``mask``.

    On each slice the mask is smoothed in-plane (Gaussian, 0.7 pixel) and its outline traced
    at the level that keeps its area (marching squares, :func:`_outline`); the longest
    distance between two outline points (the
    maximum Feret diameter, via the convex hull) is taken in millimetres. The light smoothing
    removes the staircase corners of a voxel outline, which otherwise lengthen the diameter by
    about half a pixel (on simulated ellipses at 2.7 mm pixels: bias +3.7 % without, +0.6 %
    with). The short axis is the longest chord perpendicular to the long axis on the same slice
    (RECIST 1.1: the short axis of a lymph node is measured perpendicular to its long axis in
    the plane of measurement), sampled every tenth of a pixel along the long axis.
    """
    row_mm, col_mm = geometry.spacing[1], geometry.spacing[2]
    scale = np.array([row_mm, col_mm])
    best, best_k, ends = 0.0, -1, None
    polys_k: list[np.ndarray] = []
    bounds = mask_bounds(mask)
    if bounds is None:
        bounds = (np.zeros(3, int), np.full(3, -1))  # no slice to outline
    (z0, r0, c0), (z1, r1, c1) = (int(v) for v in bounds[0]), (int(v) for v in bounds[1])
    offset = np.array([r0, c0], float)
    for k in range(z0, z1 + 1):
        # each slice outlined on the lesion's box: the outline of the whole slice (its empty
        # rest adds nothing), without smoothing and tracing that rest (2026-12-04: a sixth of
        # a five-lesion full-size follow-up)
        box = mask[k, r0 : r1 + 1, c0 : c1 + 1]
        if not box.any():
            continue
        polys = [p + offset for p in _outline(box)]
        if not polys:
            continue
        xy = np.concatenate(polys) * scale
        d, i, j = _max_feret(xy)
        if d > best:
            best, best_k, ends, polys_k = d, int(k), (xy[i], xy[j]), polys
    if ends is None:
        return AxialAxes(0.0, 0.0, best_k)
    a, b = ends
    short, c, e = _longest_perpendicular(
        [p * scale for p in polys_k], a, b, 0.1 * float(min(row_mm, col_mm))
    )

    def voxel(point: np.ndarray) -> tuple[float, float]:
        rc = point / scale - _PAD
        return float(rc[0]), float(rc[1])

    return AxialAxes(
        long_mm=best,
        short_mm=short,
        slice=best_k,
        long_ends=(voxel(a), voxel(b)),
        short_ends=(voxel(c), voxel(e)) if c is not None and e is not None else None,
    )


def longest_axial_diameter_mm(mask: np.ndarray, geometry: Geometry) -> tuple[float, int]:
    """Longest in-plane diameter over all axial slices, and its slice index (see
    :func:`axial_axes`). This is the RECIST 1.1 longest diameter in the axial plane, for axial
    acquisitions."""
    axes = axial_axes(mask, geometry)
    return axes.long_mm, axes.slice


def measure_burden(mask: np.ndarray, geometry: Geometry) -> Burden:
    """Volume (voxel count times voxel volume), long and short axis of ``mask``.

    Raises
    ------
    InsufficientDataError
        The mask is empty.
    """
    n = mask_voxels(mask)
    if n == 0:
        raise InsufficientDataError("lesion mask is empty: no burden to measure")
    axes = axial_axes(mask, geometry)
    return Burden(
        volume_ml=n * geometry.voxel_ml,
        longest_diameter_mm=axes.long_mm,
        diameter_slice=axes.slice,
        voxels=n,
        short_axis_mm=axes.short_mm,
    )
