"""Register a baseline scan to a follow-up scan and carry the baseline lesion across.

Rigid (Euler 3D: Mattes mutual information on the whole volume, then correlation on a box
around the lesion); on request (``deformable=True``) a B-spline stage on that box after it, kept
only where it improves the local match. Every random choice is seeded and ITK's threads are
fixed (:data:`_THREADS`), so a re-run gives the same transform.

The B-spline stage is off by default since 2026-12-02. Measured on the first 12 patients of the
training cohort v2-train-24101 (``bench.lesion_accuracy --propagate --limit 12``: every follow-up
read without its annotation, 91 lesions), rigid alone measured every lesion as the B-spline did
(long axes 2.76 % off, matching 73.0 % right in both; RECIST 1.1 agreement 58 % against 54 %) at
1.07 CPU-s a study instead of 17.0; on ``bench.imaging_study``'s 512 x 512 x 200 follow-up every
propagated diameter was identical with and without it, registration 3.0 CPU-s instead of 41.5.
Neither the virtual clinic nor the phantom moves anatomy other than rigidly, so neither can show
what the stage is for (breathing, positioning); and its acceptance test (local correlation up by
0.005) is met by fitting the lesions' own growth (on the phantom it raised the correlation from
0.937 to 0.994 and changed no diameter). A site whose follow-ups deform turns it on
(``IRTMON_DEFORMABLE_REGISTRATION``) and should check its propagated outlines.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import numpy as np
import SimpleITK as sitk  # noqa: N813

from models.exceptions import InsufficientDataError
from models.imaging.volume import (
    Volume,
    box_slices,
    final_mask,
    mask_bounds,
    mask_box,
    padded_box,
    placed_mask,
)

__all__ = [
    "MARGIN_MM",
    "BaselineSide",
    "RegistrationResult",
    "prepare_baseline",
    "propagate_mask",
    "register",
]

_SEED = 20261124
_THREADS = 2
"""ITK threads in a registration, on ITK's ``Platform`` threader, whatever the machine's cores
or the site's ``ITK_GLOBAL_DEFAULT_*`` settings: a fixed split of the work. Resampling and
shrinking compute each voxel alone, and the local stage's correlation adds one partial sum per
thread in thread order, so re-runs give the same transform to the last digit (checked five times
on ``bench.imaging_study``'s five-lesion follow-up and two one-lesion ones, 2026-12-04: the local
stage 0.50 -> 0.30 s for five lesions, 0.34 -> 0.20 s for one; its transform differs from one
thread's in the twelfth digit). The split, not the cores, sets those digits: the ``Pool``
threader splits the work otherwise and gives other last digits, hence the pinned threader."""

_SERIAL = 1
"""ITK threads for the stages that do not add their sums in a fixed order: the global stage's
Mattes mutual information (with two threads its joint histogram is accumulated in whatever
order the threads reach it: five re-runs gave five transforms differing in their last digits,
2026-12-04) and the B-spline stage (not checked with two)."""


@contextmanager
def _threads(n: int) -> Iterator[None]:
    """ITK's global threader set to ``Platform`` with ``n`` threads inside, restored after.

    These settings are the process's: one registration runs at a time in a process (the
    workers' imaging processes and a cohort run's processes each take one study at a time)."""
    obj = sitk.ProcessObject
    threader, threads = obj.GetGlobalDefaultThreader(), obj.GetGlobalDefaultNumberOfThreads()
    obj.SetGlobalDefaultThreader("Platform")
    obj.SetGlobalDefaultNumberOfThreads(n)
    try:
        yield
    finally:
        obj.SetGlobalDefaultThreader(threader)
        obj.SetGlobalDefaultNumberOfThreads(threads)


@dataclass
class RegistrationResult:
    """The transform (follow-up point -> baseline point) and how well it matches."""

    transform: sitk.Transform
    stage: str
    """``rigid`` or ``rigid+bspline``."""
    ncc_before: float
    """Normalised cross-correlation around the lesion with the identity transform."""
    ncc_rigid: float
    ncc_final: float
    """After the kept stages; 1 is a perfect match."""
    bspline_tried: bool = False
    """The B-spline stage was run (``deformable``), whether or not it was kept."""
    baseline: BaselineSide | None = field(default=None, repr=False, compare=False)
    """The baseline's half it was made with: give it to the next follow-up's registration."""

    def quality(self) -> dict[str, float | str]:
        """The registration quality measures for provenance."""
        return {
            "registration_stage": self.stage,
            "registration_ncc_before": round(self.ncc_before, 4),
            "registration_ncc_rigid": round(self.ncc_rigid, 4),
            "registration_ncc": round(self.ncc_final, 4),
            "registration_bspline_tried": self.bspline_tried,
        }


def _clip(values: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """HU values as float32 clamped to [-1000, 1500]: what the registration compares (into
    ``out`` when given)."""
    return np.clip(values, -1000.0, 1500.0, dtype=np.float32, out=out)


def _grid(volume: Volume) -> sitk.Image:
    """A one-voxel image with ``volume``'s origin, spacing and direction: ITK's own
    index-to-point arithmetic for any box of the volume (as ``RegionOfInterest`` does it),
    without a full-size image."""
    image = sitk.Image([1, 1, 1], sitk.sitkUInt8)
    image.SetOrigin(volume.geometry.origin)
    image.SetSpacing(tuple(float(s) for s in volume.geometry.spacing[::-1]))
    image.SetDirection(tuple(float(v) for v in volume.geometry.direction_matrix().ravel()))
    return image


def _on_grid(image: sitk.Image, grid: sitk.Image, index: list[int]) -> sitk.Image:
    """``image`` placed at box ``index`` (x, y, z) of ``grid``: the metadata a
    ``RegionOfInterest`` of the whole grid at that index has."""
    image.SetOrigin(grid.TransformIndexToPhysicalPoint([int(v) for v in index]))
    image.SetSpacing(grid.GetSpacing())
    image.SetDirection(grid.GetDirection())
    return image


def _blank(grid: sitk.Image, index: list[int], size: list[int]) -> sitk.Image:
    """A uint8 image of the box (``index``, ``size``, x y z) of ``grid``: a resampling
    reference."""
    return _on_grid(sitk.Image([int(v) for v in size], sitk.sitkUInt8), grid, index)


def _clamped_box(volume: Volume, index: list[int], size: list[int]) -> sitk.Image:
    """The box (``index``, ``size``, x y z) of ``volume``, clamped (:func:`_clip`): the image
    that cropping the whole clamped volume gives, made from the box alone."""
    box = tuple(slice(i, i + n) for i, n in zip(index[::-1], size[::-1], strict=True))
    return _on_grid(sitk.GetImageFromArray(_clip(volume.array[box])), _grid(volume), index)


_SLAB_BYTES = 8 << 20
"""Clamped voxels block-averaged at a time by :func:`_shrunk`."""


def _shrunk(
    volume: Volume, mm: float, index: list[int] | None = None, size: list[int] | None = None
) -> sitk.Image:
    """The clamped volume (:func:`_clip`), or its box (``index``, ``size``, x y z), block-averaged
    to voxels of about ``mm`` (:func:`_shrink`), one slab of whole blocks at a time: every block
    is averaged by the same ``BinShrink`` over the same voxels, so the values and geometry are
    those of the whole clamped volume (or its crop) shrunk at once, without its two full-size
    copies (a clamped array and an image of it: a tenth of a five-lesion full-size follow-up,
    2026-12-03)."""
    index = [0, 0, 0] if index is None else [int(v) for v in index]
    size = list(volume.geometry.shape[::-1]) if size is None else [int(v) for v in size]
    spacing = tuple(float(s) for s in volume.geometry.spacing[::-1])
    factors = [max(1, round(mm / s)) for s in spacing]
    if max(factors) == 1 or any(n < f for n, f in zip(size, factors, strict=True)):
        return _shrink(_clamped_box(volume, index, size), mm)
    (x0, y0, z0), (nx, ny, nz) = index, size
    grid, fz = _grid(volume), factors[2]
    per = max(1, _SLAB_BYTES // (4 * ny * nx * fz))  # blocks deep per slab
    parts: list[np.ndarray] = []
    first: sitk.Image | None = None
    # one slab's clamped voxels, its memory used again for every slab: a new array per slab was
    # half of the 1.1 GB a five-lesion full-size follow-up allocated and freed (memray,
    # 2026-12-04), memory the kernel takes back and hands out again, faulting it in each time
    slab = np.empty((min(per, nz // fz) * fz, ny, nx), np.float32)
    for b in range(0, nz // fz, per):
        z1, z2 = z0 + b * fz, z0 + min(nz // fz, b + per) * fz
        voxels = _clip(volume.array[z1:z2, y0 : y0 + ny, x0 : x0 + nx], slab[: z2 - z1])
        out = sitk.BinShrink(_on_grid(sitk.GetImageFromArray(voxels), grid, [x0, y0, z1]), factors)
        if first is None:
            first = out
        parts.append(sitk.GetArrayFromImage(out))
    assert first is not None  # nz >= fz: one slab at least
    image = sitk.GetImageFromArray(np.concatenate(parts))
    image.SetOrigin(first.GetOrigin())
    image.SetSpacing(first.GetSpacing())
    image.SetDirection(first.GetDirection())
    return image


@dataclass(frozen=True, eq=False)
class _Similarity:
    """Where a registration's normalised cross-correlation is measured: the fixed box's voxels
    inside the region of interest, cut to that region's own box, with their values centred
    once for every transform that is measured."""

    grid: sitk.Image
    inside: np.ndarray
    centred: np.ndarray
    norm2: float

    @classmethod
    def of(cls, fixed: sitk.Image, roi: sitk.Image) -> _Similarity | None:
        """None when the region holds fewer than 10 voxels (the correlation is not defined)."""
        sel = sitk.GetArrayViewFromImage(roi) > 0
        box = mask_box(sel)
        if box is None or np.count_nonzero(sel[box]) < 10:
            return None
        index = [int(s.start) for s in box[::-1]]
        size = [int(s.stop - s.start) for s in box[::-1]]
        grid = sitk.RegionOfInterest(fixed, size, index)
        inside = sel[box]
        f = sitk.GetArrayViewFromImage(grid)[inside]
        centred = f.astype(float) - f.mean()
        return cls(grid, inside, centred, float((centred * centred).sum()))

    def ncc(self, moving: sitk.Image, transform: sitk.Transform) -> float:
        """The correlation of the fixed values and ``moving``'s through ``transform``."""
        warped = sitk.Resample(
            moving, self.grid, transform, sitk.sitkLinear, -1000.0, sitk.sitkFloat32
        )
        m = sitk.GetArrayViewFromImage(warped)[self.inside]
        b = m.astype(float) - m.mean()
        den = float(np.sqrt(self.norm2 * (b * b).sum()))
        return float((self.centred * b).sum() / den) if den > 0 else 0.0


def _ncc(similarity: _Similarity | None, moving: sitk.Image, transform: sitk.Transform) -> float:
    """Normalised cross-correlation over the region (NaN where there is none): resampled on the
    region's box only, not the whole lesion box (the three measures of a five-lesion full-size
    follow-up: 63 ms on the box, 2026-12-04)."""
    return float("nan") if similarity is None else similarity.ncc(moving, transform)


def _box(
    parts: Sequence[tuple[np.ndarray, list[int]]],
    spacing_xyz: tuple[float, ...],
    margin_mm: float,
    size_xyz: tuple[int, ...],
) -> tuple[list[int], list[int]]:
    """Index and size (x, y, z) of the voxels (any nonzero label) of ``parts`` plus
    ``margin_mm``, within a grid of ``size_xyz``: each part an array and the index (x, y, z) on
    the grid of its first voxel."""
    found = [
        (b[0] + np.asarray(at[::-1]), b[1] + np.asarray(at[::-1]))
        for b, at in ((mask_bounds(mask), at) for mask, at in parts)
        if b is not None
    ]
    if not found:
        raise ValueError("empty mask: no region to register")
    first = np.min([f for f, _ in found], axis=0)
    last = np.max([la for _, la in found], axis=0)
    shape = np.asarray(size_xyz[::-1])
    sp = np.asarray(spacing_xyz)[::-1]
    lo, hi = padded_box(first, last, np.ceil(margin_mm / sp).astype(int), shape)
    return [int(v) for v in lo[::-1]], [int(v) for v in (hi - lo)[::-1]]


def _shrink(image: sitk.Image, mm: float) -> sitk.Image:
    """Block-average ``image`` to voxels of about ``mm`` (anti-aliased, fast)."""
    factors = [max(1, round(mm / s)) for s in image.GetSpacing()]
    return sitk.BinShrink(image, factors) if max(factors) > 1 else image


def _landing(
    moving_masks: Sequence[np.ndarray],
    moving: Volume,
    fixed: Volume,
    coarse: sitk.Euler3DTransform,
) -> list[tuple[np.ndarray, list[int]]]:
    """Where the baseline lesions land on the follow-up (nearest neighbour, ``coarse``; the
    identity where ``coarse`` puts every one outside the follow-up), each as an array and the
    index (x, y, z) of its first voxel on ``fixed``'s grid; their union is where the union of
    the masks lands (nearest neighbour resampling reads each voxel from one voxel).

    Each is resampled on the part of the follow-up its box lands in
    (:func:`_landing_region`) wherever that part holds it whole: the voxels the whole grid
    would give there, and zero outside, without a full-size resample (7 % of a five-lesion
    full-size follow-up's propagation went to it, 2026-12-02; the union of lesions spread over
    the body lands nearly everywhere, so each lesion on its own part since 2026-12-04). On the
    whole grid otherwise.
    """
    grid, size_all = _grid(fixed), list(fixed.geometry.shape[::-1])

    def whole() -> sitk.Image:  # the whole grid, made only where a lesion needs it
        return _blank(grid, [0, 0, 0], size_all)

    masks = [mask for mask in moving_masks if mask.any()]
    images = [_mask_image(mask, moving, np.uint8) for mask in masks]  # cropped: zero outside
    out: list[tuple[np.ndarray, list[int]]] = []
    for mask, m_mask in zip(masks, images, strict=True):
        region = _landing_region(mask, moving, grid, size_all, coarse)
        if region is not None:
            index, size = region
            part = _blank(grid, index, size)
            landed = sitk.GetArrayFromImage(
                sitk.Resample(m_mask, part, coarse, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
            )
            if landed.any() and not _touches_border(landed):
                out.append((landed, index))
                continue
        on_whole = sitk.Resample(
            m_mask, whole(), coarse, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8
        )
        out.append((sitk.GetArrayFromImage(on_whole), [0, 0, 0]))
    if any(landed.any() for landed, _ in out):
        return [(landed, at) for landed, at in out if landed.any()]
    reference = whole()
    union = [
        sitk.GetArrayFromImage(
            sitk.Resample(m_mask, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
        )
        for m_mask in images
    ]
    return [(np.any(union, axis=0).astype(np.uint8), [0, 0, 0])]


def _paste(
    parts: Sequence[tuple[np.ndarray, list[int]]],
    grid: sitk.Image,
    index: list[int],
    size: list[int],
) -> sitk.Image:
    """The box (``index``, ``size``, x y z) of ``grid`` as a uint8 image holding the union of
    ``parts`` (each an array and the index, x y z, of its first voxel) and zero elsewhere: what
    cropping a whole-grid union to the box gives, metadata included (every nonzero voxel of the
    parts lies in the box)."""
    out = np.zeros(size[::-1], np.uint8)
    for landed, at in parts:
        lo = np.maximum(np.asarray(at[::-1]), np.asarray(index[::-1]))
        hi = np.minimum(
            np.asarray(at[::-1]) + landed.shape, np.asarray(index[::-1]) + np.asarray(size[::-1])
        )
        if np.all(hi > lo):
            dst = tuple(slice(a - i, b - i) for a, b, i in zip(lo, hi, index[::-1], strict=True))
            src = tuple(slice(a - t, b - t) for a, b, t in zip(lo, hi, at[::-1], strict=True))
            np.maximum(out[dst], landed[src], out=out[dst])
    return _on_grid(sitk.GetImageFromArray(out), grid, index)


_GLOBAL_SAMPLES = 5_000
"""Voxels the global stage's metric samples at its finest level. 10,000 until 2026-12-04:
against the truth of the 40-patient training cohort v2-train-24101 (``bench.registration_accuracy
--stage global``, 40 follow-ups) the largest error per follow-up was 0.414 mm median, 0.937 at
most with 5,000 against 0.417 and 0.941 with 10,000, at 0.36 CPU-s instead of 0.44; on its
200-patient cohort read without annotations (``bench.lesion_accuracy --propagate``) long axes
2.64 % off with both, matching 97.6 % right against 97.5, RECIST 1.1 right at 148 follow-ups of
400 against 149 (the one that differs is against 5,000; exact McNemar p = 1.0), at 0.40 CPU-s a
study instead of 0.52. 40,000 until 2026-12-02 (a
quarter of a 128 x 128 x 40 scan before that). The rigid stages were three quarters of a
test-size study's features in ``irtmon evaluate`` (py-spy, robustness-v2-i's run). Against the
clinic's true lesion centres (each follow-up's centre carried to the baseline and compared with
the baseline's; 36 follow-ups of 18 training-cohort patients, seed 24101), with
:data:`_LOCAL_SAMPLES` 20,000: the largest error per follow-up 0.25 mm median, 1.39 mm at most
(0.19 and 0.98 mm with 40,000 and 60,000), about half a 2.7 mm voxel at worst, at 0.86 CPU-s a
registration instead of 1.92. On the first 100 patients of that cohort
(``bench.lesion_accuracy --limit 100``) every figure is unchanged (matching 100 %, RECIST 1.1
agreement 96.0 %, long axes 2.9 % off) at 0.98 CPU-s a study instead of 1.85; on the full-size
study of ``bench.imaging_study`` every propagated diameter is as before."""


_LOCAL_SAMPLES = 10_000
"""Voxels the local rigid stage's metric samples at most (20,000 until 2026-12-04, 60,000 until
2026-12-02, see :data:`_GLOBAL_SAMPLES`; half its box before 2026-12-01).

Its cost per iteration grows faster than its samples (2.3, 5.4, 14.2 and 18.0 ms an iteration with
5,000, 10,000, 20,000 and 30,000 on ``bench.imaging_study``'s five-lesion follow-up, two threads,
2026-12-04): with 20,000 the local stage was 0.25 s of that follow-up's 1.8, with 10,000 0.08 s.
Against the clinic's truth (each lesion's centre on the follow-up carried to the baseline and
compared with its true place there: ``python -m bench.registration_accuracy --cohort
.irtmon/evidence/v2-train-24101 --limit 20``, 40 follow-ups of a 40-patient training cohort, seed
24101, 2.7 mm pixels), the largest error per follow-up was 0.42 mm median, 0.94 mm at most with
10,000 samples, 0.40 and 0.97 with 20,000, 0.36 and 0.96 with 60,000. ``bench.lesion_accuracy
--propagate --limit 40`` on that cohort: long axes 2.89 % off against 2.88, matching 76.0 % right
against 76.3 (one liver lesion of 38 HU contrast, at the 40 HU limit of
:func:`~models.imaging.lesion.refine_mask`, lost), RECIST 1.1 agreement 62.5 % against 61.25, at
0.40 CPU-s a study instead of 0.56.

The box holds every lesion of a study plus a margin: at test size (2.7 mm pixels) about half a
million voxels; on a 512 x 512 x 200 study with lesions in five sites about two million, where
the local and B-spline stages took 164 s of a 220 s follow-up (2026-12-01,
``bench.imaging_study`` five lesions propagated)."""

_BSPLINE_SAMPLES = 20_000
"""Voxels the B-spline stage's metric samples at most (it sampled 8 per cent of its box). Its
cost grows with the samples times the control points (each sample's derivative is summed over
every parameter): on that full-size follow-up 60,000 samples took 64 s, 15,000 took 18 s, with
the final correlation 0.991 and 0.994."""


def _global_sampling(image: sitk.Image) -> float:
    """The global stage's sampling fraction: :data:`_GLOBAL_SAMPLES` voxels, at most a quarter."""
    return _sampling(image, _GLOBAL_SAMPLES, 0.25)


def _sampling(image: sitk.Image, samples: int, most: float) -> float:
    """The fraction of ``image``'s voxels that makes ``samples`` voxels, at most ``most``."""
    n = image.GetNumberOfPixels()
    return min(most, samples / n) if n else most


def _method(sampling: float, iterations: int) -> sitk.ImageRegistrationMethod:
    """A rigid stage's method. The metric's image gradients are computed at the sampled
    points only, not as a gradient image of the whole (shrunk) volume or box first, ITK's
    default: with 10,000 to 20,000 samples the gradient images were most of the stages' cost
    (the registration of ``bench.imaging_study``'s five-lesion 512 x 512 x 200 follow-up: 2.06
    CPU-s with them, 1.25 without, on a busy machine; the transform within 0.06 mm and the
    same correlation, 2026-12-03)."""
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(sampling, _SEED)
    reg.SetMetricUseFixedImageGradientFilter(False)
    reg.SetMetricUseMovingImageGradientFilter(False)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=2.0, minStep=1e-3, numberOfIterations=iterations, relaxationFactor=0.6
    )
    reg.SetOptimizerScalesFromPhysicalShift()
    return reg


MARGIN_MM = 40.0
"""Margin (mm) around the lesions for the local stages and metrics, by default."""

_BASELINE_MARGIN_MM = 20.0
"""Margin added to the local stages' margin around the baseline's lesions: the baseline's box
is larger than the follow-up's, so the local stage's moves stay inside it."""


@dataclass(frozen=True, eq=False)
class BaselineSide:
    """The baseline's half of a registration, made from the baseline scan and its lesions
    alone (:func:`prepare_baseline`): the clamped scan block-averaged to 4 mm voxels for the
    global stage and its lesions' box to 2 mm voxels for the local ones.

    :func:`register` makes it beside the follow-up's 4 mm image (both are block averages,
    which release Python's lock) and returns it with its result, so a baseline kept in memory
    for its next follow-up (``Baseline.registration_side``: a cohort run's patient, a worker's
    cached baseline) makes it once; it is used only for the same baseline volume, the same
    lesion masks (the same arrays) and margin, and made anew otherwise."""

    volume: Volume
    masks: tuple[np.ndarray, ...]
    margin_mm: float
    whole: sitk.Image
    box: sitk.Image

    def fits(self, moving: Volume, masks: Sequence[np.ndarray], margin_mm: float) -> bool:
        """Made from this baseline volume, these masks (the same arrays) and margin?"""
        return (
            self.volume is moving
            and self.margin_mm == margin_mm
            and len(self.masks) == len(masks)
            and all(a is b for a, b in zip(self.masks, masks, strict=True))
        )


def prepare_baseline(
    moving: Volume, moving_masks: Sequence[np.ndarray], margin_mm: float = MARGIN_MM
) -> BaselineSide:
    """The baseline's half of :func:`register` (:class:`BaselineSide`), the same images it
    makes itself.

    Raises
    ------
    InsufficientDataError
        Every baseline mask is empty.
    """
    masks = tuple(moving_masks)
    if not any(mask.any() for mask in masks):
        raise InsufficientDataError("baseline lesion mask is empty; nothing to propagate")
    spacing = tuple(float(s) for s in moving.geometry.spacing[::-1])
    at_origin = [(mask, [0, 0, 0]) for mask in masks]
    index, size = _box(
        at_origin, spacing, margin_mm + _BASELINE_MARGIN_MM, moving.geometry.shape[::-1]
    )
    return BaselineSide(
        moving, masks, margin_mm, _shrunk(moving, 4.0), _shrunk(moving, 2.0, index, size)
    )


def register(
    fixed: Volume,
    moving: Volume,
    moving_mask: np.ndarray | Sequence[np.ndarray],
    *,
    deformable: bool = False,
    margin_mm: float = MARGIN_MM,
    baseline: BaselineSide | None = None,
) -> RegistrationResult:
    """Register ``moving`` (baseline) to ``fixed`` (follow-up) around ``moving_mask`` (one
    mask, or several: around their union, without making it).

    Up to three stages, each on block-averaged images so a 512 x 512 x 200 study takes seconds:
    a global rigid stage (Mattes mutual information, 4 mm voxels, whole field of view, about
    :data:`_GLOBAL_SAMPLES` voxels sampled), a
    local rigid stage (correlation, 2 mm voxels, the lesion box plus ``margin_mm``), and, when
    ``deformable``, a B-spline stage (30 mm control-point spacing) on the same box, kept only
    when it raises the local normalised cross-correlation.

    Parameters
    ----------
    fixed
        The follow-up volume (the grid the lesion is carried to).
    moving
        The baseline volume.
    moving_mask
        The baseline lesion on ``moving``'s grid.
    deformable
        Try the B-spline stage (off by default: module docstring).
    margin_mm
        Margin around the lesion for the local stages and metrics.
    baseline
        The baseline's half, made before (:func:`prepare_baseline`); used when it
        :meth:`~BaselineSide.fits`, else made here, beside the follow-up's half.

    Raises
    ------
    InsufficientDataError
        The baseline mask is empty.
    """
    masks = [moving_mask] if isinstance(moving_mask, np.ndarray) else list(moving_mask)
    if not any(mask.any() for mask in masks):
        raise InsufficientDataError("baseline lesion mask is empty; nothing to propagate")
    with _threads(_THREADS):
        if baseline is not None and baseline.fits(moving, masks, margin_mm):
            return _register(fixed, _shrunk(fixed, 4.0), baseline, deformable)
        # the baseline's half beside the follow-up's (both release Python's lock)
        with ThreadPoolExecutor(1) as pool:
            side = pool.submit(prepare_baseline, moving, masks, margin_mm)
            f4 = _shrunk(fixed, 4.0)
            return _register(fixed, f4, side.result(), deformable)


def _register(
    fixed: Volume, f4: sitk.Image, side: BaselineSide, deformable: bool
) -> RegistrationResult:
    moving, moving_masks, margin_mm, m4 = side.volume, side.masks, side.margin_mm, side.whole
    # 1. global rigid, 4 mm voxels
    init = sitk.CenteredTransformInitializer(
        f4, m4, sitk.Euler3DTransform(), sitk.CenteredTransformInitializerFilter.GEOMETRY
    )
    reg = _method(_global_sampling(f4), 200)
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    reg.SetShrinkFactorsPerLevel([2, 1])
    reg.SetSmoothingSigmasPerLevel([4.0, 0.0])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    reg.SetInitialTransform(init, inPlace=True)
    with _threads(_SERIAL):
        reg.Execute(f4, m4)
    coarse = sitk.Euler3DTransform(init)

    # where the lesion lands on the follow-up
    landed = _landing(moving_masks, moving, fixed, coarse)
    f_spacing = tuple(float(s) for s in fixed.geometry.spacing[::-1])
    index, size = _box(landed, f_spacing, margin_mm, fixed.geometry.shape[::-1])
    f_box, m_box = _shrunk(fixed, 2.0, index, size), side.box
    roi_full = _paste(landed, _grid(fixed), index, size)
    roi = sitk.Resample(roi_full, f_box, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    roi = sitk.BinaryDilate(roi > 0, [max(1, int(10 / s)) for s in f_box.GetSpacing()])

    # 2. local rigid, 2 mm voxels
    lreg = _method(_sampling(f_box, _LOCAL_SAMPLES, 0.5), 150)
    lreg.SetMetricAsCorrelation()
    rigid = sitk.Euler3DTransform(coarse)
    lreg.SetInitialTransform(rigid, inPlace=True)
    lreg.Execute(f_box, m_box)

    similarity = _Similarity.of(f_box, roi)
    ncc_before = _ncc(similarity, m_box, sitk.Euler3DTransform())
    ncc_coarse = _ncc(similarity, m_box, coarse)
    ncc_rigid = _ncc(similarity, m_box, rigid)
    if np.isfinite(ncc_coarse) and not ncc_rigid >= ncc_coarse:
        rigid, ncc_rigid = coarse, ncc_coarse
    result = RegistrationResult(rigid, "rigid", ncc_before, ncc_rigid, ncc_rigid, baseline=side)
    if not deformable:
        return result

    # 3. B-spline on the lesion box
    mesh = [
        max(1, round(sz * sp / 30.0))
        for sz, sp in zip(f_box.GetSize(), f_box.GetSpacing(), strict=True)
    ]
    bspline = sitk.BSplineTransformInitializer(f_box, mesh, order=3)
    dreg = sitk.ImageRegistrationMethod()
    dreg.SetMetricAsMeanSquares()
    dreg.SetMetricSamplingStrategy(dreg.RANDOM)
    dreg.SetMetricSamplingPercentage(_sampling(f_box, _BSPLINE_SAMPLES, 0.08), _SEED)
    dreg.SetInterpolator(sitk.sitkLinear)
    dreg.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-5, numberOfIterations=30)
    dreg.SetMovingInitialTransform(rigid)
    dreg.SetInitialTransform(bspline, inPlace=True)
    dreg.SetShrinkFactorsPerLevel([2, 1])
    dreg.SetSmoothingSigmasPerLevel([1.0, 0.0])
    with _threads(_SERIAL):
        dreg.Execute(f_box, m_box)
    composite = sitk.CompositeTransform([rigid, bspline])
    ncc_def = _ncc(similarity, m_box, composite)
    if np.isfinite(ncc_def) and ncc_def > ncc_rigid + 0.005:
        kept = {"transform": composite, "stage": "rigid+bspline", "ncc_final": ncc_def}
        return replace(result, bspline_tried=True, **kept)
    return replace(result, bspline_tried=True)


def propagate_mask(
    mask: np.ndarray, source: Volume, target: Volume, transform: sitk.Transform
) -> np.ndarray:
    """Carry a mask from ``source``'s grid to ``target``'s with ``transform``.

    The mask is resampled linearly as a fraction and thresholded at 0.5, so its volume is kept
    across grids of different spacing.
    """
    moving = _mask_image(mask, source)
    grid, size_all = _grid(target), list(target.geometry.shape[::-1])
    region = _landing_region(mask, source, grid, size_all, transform)
    if region is not None:
        index, size = region
        sub = _blank(grid, index, size)
        out = sitk.Resample(moving, sub, transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
        carried = sitk.GetArrayFromImage(out) >= 0.5
        if not _touches_border(carried):
            box = tuple(slice(i, i + n) for i, n in zip(index[::-1], size[::-1], strict=True))
            return placed_mask(target.geometry.shape, box, carried)
    reference = _blank(grid, [0, 0, 0], size_all)
    out = sitk.Resample(moving, reference, transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return final_mask(sitk.GetArrayFromImage(out) >= 0.5)


def _mask_image(mask: np.ndarray, source: Volume, dtype: type = np.float32) -> sitk.Image:
    """``mask`` as an image of ``dtype`` on ``source``'s grid, cropped to its voxels plus two
    empty voxels each side: linear or nearest-neighbour resampling reads the same values as
    from the whole grid (zero outside), without a full-size copy per lesion (a quarter of a
    five-lesion full-size follow-up's propagation went there, 2026-12-02)."""
    bounds = mask_bounds(mask)
    if bounds is None:
        return source.to_sitk(mask.astype(dtype))
    lo, hi = padded_box(bounds[0], bounds[1], 2, mask.shape)
    image = sitk.GetImageFromArray(mask[box_slices(lo, hi)].astype(dtype))
    image.SetOrigin(tuple(float(v) for v in source.geometry.index_to_patient(lo)[0]))
    image.SetSpacing(tuple(float(s) for s in source.geometry.spacing[::-1]))
    image.SetDirection(tuple(float(v) for v in source.geometry.direction_matrix().ravel()))
    return image


_LANDING_MARGIN_MM = 30.0
"""Margin around where the rigid part of a transform puts a mask, when the transform has more
than that part: room for the B-spline part's displacement (control points 30 mm apart) and the
mask's own partial volume."""


def _landing_margin_mm(transform: sitk.Transform, source: Volume) -> float:
    """The margin (mm) around where the rigid part of ``transform`` puts a mask's box.

    A rigid transform alone carries the whole mask inside its carried bounding box, and linear
    interpolation reads a mask voxel up to one source voxel away along each source axis (at
    most the square root of three times the largest spacing in any direction): twice the largest
    source spacing holds every voxel it can reach. With the 30 mm of a B-spline part, the
    sub-grid a lesion was resampled on held about ten times as many voxels, and the five-lesion
    full-size follow-up's carrying took 0.02-0.2 s instead of about 0.01 (2026-12-04)."""
    if transform.GetName() == "Euler3DTransform":
        return 2.0 * max(float(s) for s in source.geometry.spacing)
    return _LANDING_MARGIN_MM


def _rigid_part(transform: sitk.Transform) -> sitk.Euler3DTransform | None:
    """The rigid transform a registration's result starts from (itself, or the first of a
    composite), or None for any other kind."""
    t = transform
    if t.GetName() == "CompositeTransform":
        t = sitk.CompositeTransform(t).GetNthTransform(0)
    return sitk.Euler3DTransform(t) if t.GetName() == "Euler3DTransform" else None


def _landing_region(
    mask: np.ndarray,
    source: Volume,
    grid: sitk.Image,
    size_xyz: list[int],
    transform: sitk.Transform,
) -> tuple[list[int], list[int]] | None:
    """Index and size (x, y, z) of the part of a target grid (``grid``'s geometry, ``size_xyz``
    voxels) a mask on ``source`` lands in: its bounding box carried by the rigid part of
    ``transform`` (follow-up to baseline, so the inverse carries the box), plus
    :func:`_landing_margin_mm`; None when it cannot be told."""
    rigid = _rigid_part(transform)
    if rigid is None or not mask.any():
        return None
    lo, hi = mask_bounds(mask)  # type: ignore[misc]  # not empty: checked above
    corners = np.array(
        [[z, y, x] for z in (lo[0], hi[0]) for y in (lo[1], hi[1]) for x in (lo[2], hi[2])]
    )
    inverse = rigid.GetInverse()
    points = source.geometry.index_to_patient(corners)
    landed = np.array(
        [
            grid.TransformPhysicalPointToContinuousIndex(
                inverse.TransformPoint(tuple(map(float, p)))
            )
            for p in points
        ]
    )  # x, y, z continuous indices
    margin = _landing_margin_mm(transform, source) / np.asarray(grid.GetSpacing())
    size_all = np.asarray(size_xyz)
    first = np.maximum(np.floor(landed.min(axis=0) - margin), 0).astype(int)
    last = np.minimum(np.ceil(landed.max(axis=0) + margin) + 1, size_all).astype(int)
    if np.any(last <= first):
        return None
    return [int(v) for v in first], [int(v) for v in last - first]


def _touches_border(carried: np.ndarray) -> bool:
    """Does a mask reach the edge of its sub-region (so it may go on outside it)?"""
    if not carried.any():
        return False
    return bool(
        carried[0].any()
        or carried[-1].any()
        or carried[:, 0].any()
        or carried[:, -1].any()
        or carried[:, :, 0].any()
        or carried[:, :, -1].any()
    )
