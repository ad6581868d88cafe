"""The target lesion as a voxel mask on a CT volume: from RTSTRUCT, from DICOM SEG, or refined
after propagation from a baseline scan.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from scipy import ndimage
from skimage.draw import polygon as draw_polygon

from models.exceptions import InsufficientDataError, UnreadableInputError
from models.imaging.burden import axial_axes
from models.imaging.volume import Volume, box_slices, mask_bounds, padded_box, placed_mask

__all__ = [
    "LesionMask",
    "MaskSource",
    "mask_from_rtstruct",
    "mask_from_seg",
    "read_lesion",
    "refine_mask",
    "refine_outline",
    "runs_into_surroundings",
]

_TARGET_WORDS = ("GTV", "TUMOR", "TUMOUR", "LESION", "TARGET", "CTV", "NEOPLASM")


class MaskSource(StrEnum):
    """How a lesion mask was obtained."""

    RTSTRUCT = "rtstruct"
    SEG = "seg"
    PROPAGATED = "propagated"
    GIVEN = "given"


@dataclass
class LesionMask:
    """A boolean ``[z, y, x]`` mask on a volume's grid and where it came from."""

    mask: np.ndarray
    source: MaskSource
    label: str
    reference_uid: str = ""
    """SOP Instance UID of the RTSTRUCT or SEG, when read from one."""


def _read(path: str | Path) -> Dataset:
    try:
        return pydicom.dcmread(path)
    except (InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError) as err:
        raise UnreadableInputError(f"lesion reference {path} cannot be read: {err}") from err


def _pick(names: list[str], wanted: str | None, path: str | Path) -> int:
    if wanted is not None:
        for i, name in enumerate(names):
            if name.strip().upper() == wanted.strip().upper():
                return i
        raise UnreadableInputError(f"{path}: no ROI or segment named {wanted!r} (found {names})")
    for word in _TARGET_WORDS:
        for i, name in enumerate(names):
            if word in name.upper():
                return i
    if len(names) == 1:
        return 0
    raise UnreadableInputError(f"{path}: several ROIs {names}; name the target lesion")


def _check_frame(ds: Dataset, volume_for: str, path: str | Path) -> None:
    for_uid = str(ds.get("FrameOfReferenceUID", "") or "")
    if not for_uid:
        for item in ds.get("ReferencedFrameOfReferenceSequence") or []:
            for_uid = str(item.get("FrameOfReferenceUID", ""))
    if volume_for and for_uid and for_uid != volume_for:
        raise UnreadableInputError(
            f"{path}: frame of reference {for_uid} differs from the image series' {volume_for}"
        )


def mask_from_rtstruct(
    path: str | Path, volume: Volume, roi_name: str | None = None, frame_of_reference: str = ""
) -> LesionMask:
    """Rasterise one ROI of an RTSTRUCT on ``volume``'s grid.

    Each closed planar contour is filled on the slice nearest its plane (polygon scan conversion
    of the vertices' continuous voxel coordinates); contours of one slice are combined by XOR,
    so holes drawn as inner contours stay empty.

    Raises
    ------
    UnreadableInputError
        Not an RTSTRUCT, unknown ROI, another frame of reference.
    InsufficientDataError
        The ROI has no contour on this volume.
    """
    ds = _read(path)
    if str(ds.get("Modality", "")) != "RTSTRUCT":
        raise UnreadableInputError(f"{path} is not an RTSTRUCT (Modality {ds.get('Modality')})")
    _check_frame(ds, frame_of_reference, path)
    rois = {
        int(r.ROINumber): str(r.get("ROIName", "")) for r in ds.get("StructureSetROISequence", [])
    }
    numbers = list(rois)
    i = _pick([rois[n] for n in numbers], roi_name, path)
    number, name = numbers[i], rois[numbers[i]]
    g = volume.geometry
    mask = np.zeros(g.shape, bool)
    for roi in ds.get("ROIContourSequence", []):
        if int(roi.get("ReferencedROINumber", -1)) != number:
            continue
        for contour in roi.get("ContourSequence", []):
            pts = np.asarray(contour.ContourData, float).reshape(-1, 3)
            idx = g.patient_to_index(pts)
            k = round(float(np.median(idx[:, 0])))
            if not 0 <= k < g.shape[0]:
                continue
            rr, cc = draw_polygon(idx[:, 1], idx[:, 2], shape=g.shape[1:])
            layer = np.zeros(g.shape[1:], bool)
            layer[rr, cc] = True
            mask[k] ^= layer
    if not mask.any():
        raise InsufficientDataError(f"{path}: ROI {name!r} has no contour on this series")
    return LesionMask(mask, MaskSource.RTSTRUCT, name, str(ds.get("SOPInstanceUID", "")))


def mask_from_seg(
    path: str | Path, volume: Volume, segment: str | None = None, frame_of_reference: str = ""
) -> LesionMask:
    """Place one segment of a DICOM SEG (binary or fractional) on ``volume``'s grid.

    Frames are placed by their Plane Position (Patient); a SEG on another in-plane grid is
    refused rather than resampled.
    """
    ds = _read(path)
    if str(ds.get("Modality", "")) != "SEG":
        raise UnreadableInputError(f"{path} is not a DICOM SEG (Modality {ds.get('Modality')})")
    _check_frame(ds, frame_of_reference, path)
    segs = {int(s.SegmentNumber): str(s.get("SegmentLabel", "")) for s in ds.SegmentSequence}
    numbers = list(segs)
    number = numbers[_pick([segs[n] for n in numbers], segment, path)]
    try:
        frames = ds.pixel_array
    except (ValueError, RuntimeError, NotImplementedError, AttributeError) as err:
        raise UnreadableInputError(f"{path}: SEG pixel data cannot be decoded: {err}") from err
    if frames.ndim == 2:
        frames = frames[None]
    fractional = str(ds.get("SegmentationType", "BINARY")) == "FRACTIONAL"
    threshold = 0.5 * float(ds.get("MaximumFractionalValue", 255)) if fractional else 0.5
    g = volume.geometry
    mask = np.zeros(g.shape, bool)
    shared = (ds.get("SharedFunctionalGroupsSequence") or [Dataset()])[0]
    for f, group in enumerate(ds.PerFrameFunctionalGroupsSequence):
        ident = group.get("SegmentIdentificationSequence") or shared.get(
            "SegmentIdentificationSequence"
        )
        if ident is None or int(ident[0].ReferencedSegmentNumber) != number:
            continue
        plane = group.get("PlanePositionSequence") or shared.get("PlanePositionSequence")
        if plane is None:
            raise UnreadableInputError(f"{path}: frame {f + 1} has no Plane Position (Patient)")
        idx = g.patient_to_index(np.asarray(plane[0].ImagePositionPatient, float))[0]
        k = round(float(idx[0]))
        if abs(idx[0] - k) > 0.1 or np.any(np.abs(idx[1:]) > 0.1):
            raise UnreadableInputError(
                f"{path}: frame {f + 1} does not lie on the image series' grid"
            )
        if frames.shape[1:] != g.shape[1:]:
            raise UnreadableInputError(f"{path}: SEG frame size differs from the image series'")
        if 0 <= k < g.shape[0]:
            mask[k] |= frames[f] > threshold
    if not mask.any():
        raise InsufficientDataError(f"{path}: segment {segs[number]!r} is empty on this series")
    return LesionMask(mask, MaskSource.SEG, segs[number], str(ds.get("SOPInstanceUID", "")))


def read_lesion(
    path: str | Path, volume: Volume, label: str | None = None, frame_of_reference: str = ""
) -> LesionMask:
    """Read the lesion from an RTSTRUCT or a DICOM SEG, whichever ``path`` holds."""
    modality = str(
        pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Modality"]).get("Modality")
        if Path(path).is_file()
        else ""
    )
    if modality == "SEG":
        return mask_from_seg(path, volume, label, frame_of_reference)
    if modality == "RTSTRUCT":
        return mask_from_rtstruct(path, volume, label, frame_of_reference)
    raise UnreadableInputError(f"lesion reference {path} is neither RTSTRUCT nor SEG")


_RING_MM = (4.0, 10.0)
"""The background ring around a propagated lesion (mm from it) whose median HU is the
background's (:func:`refine_mask`)."""

_CORE_MM = 3.0
"""A propagated lesion's core: its voxels deeper than this (mm from the outside)."""

_SMOOTH_SIGMA = 0.6
"""Gaussian smoothing (voxels) of the image for the lesion's upper HU bound."""

MIN_CONTRAST_HU = 40.0
"""The least difference (HU) between a lesion's median and its background ring's median for
:func:`refine_mask` to re-outline it by intensity."""


def _box_around(
    first: np.ndarray, last: np.ndarray, reach_mm: float, spacing: np.ndarray, shape: tuple
) -> tuple[slice, ...]:
    """The box of the voxels ``first`` to ``last`` (zyx, inclusive) plus ``reach_mm`` and the
    smoothing's own reach (its kernel's radius), within ``shape``: every value
    :func:`refine_mask` reads within ``reach_mm`` of the lesion is the one the whole grid
    would give. (Until 2026-12-04 the box reached 12 mm further, about 2.5 times the voxels
    for nothing: the same masks.)"""
    kernel = int(4.0 * _SMOOTH_SIGMA + 0.5)  # scipy's radius for the default truncate 4.0
    pad = np.ceil(reach_mm / spacing).astype(int) + kernel + 1
    return box_slices(*padded_box(first, last, pad, shape))


def _core(prop: np.ndarray, first: np.ndarray, last: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """``prop``'s voxels deeper than :data:`_CORE_MM`, ``prop`` holding the lesion's voxels
    from index ``first`` to ``last`` (zyx, inclusive).

    The depth map is made on the lesion's own box plus one voxel: the nearest outside voxel
    of any lesion voxel lies there (clamping an outside voxel to that box brings it no further
    and leaves it outside), so the depths are those of any larger box, on a fraction of its
    voxels."""
    own = box_slices(*padded_box(first, last, 1, prop.shape))
    core = np.zeros(prop.shape, bool)
    core[own] = ndimage.distance_transform_edt(prop[own], sampling=spacing) > _CORE_MM
    return core


def lesion_contrast(volume: Volume, mask: np.ndarray) -> float | None:
    """How far (HU) a lesion's median stands from its background's on ``volume``: the median of
    its core (its voxels deeper than 3 mm, or all of them when fewer than 10 are) less the
    median of the ring 4 to 10 mm around it, as :func:`refine_mask` measures them on a
    follow-up. None when the mask is empty or has no ring within the scan."""
    bounds = mask_bounds(mask)
    if bounds is None:
        return None
    first, last = bounds
    sp = np.asarray(volume.geometry.spacing)
    box = _box_around(first, last, _RING_MM[1], sp, volume.geometry.shape)
    img, own = volume.array[box], mask[box]
    start = np.array([s.start for s in box])
    core = _core(own, first - start, last - start, sp)
    if core.sum() < 10:
        core = own
    outside = ndimage.distance_transform_edt(~own, sampling=sp)
    ring = (outside > _RING_MM[0]) & (outside <= _RING_MM[1])
    if not ring.any():
        return None
    return float(np.median(img[core])) - float(np.median(img[ring]))


MAX_OUTLINE_AT_LIMIT = 0.1
"""The largest share of a refined outline's edge that may lie at its growth limit
(:class:`RefinedOutline`) for the outline to be trusted. Chosen on the 200-patient training
cohort v2-train-24101-200 with every follow-up propagated (1,164 refined lesions against the
truth, 2026-12-04): of the 46 outlines over 1.3 times the true long axis, 26 had 25 % to 80 % of
their edge at the limit (all 21 lymph nodes and 4 of the 5 adrenal lesions among them: soft
tissue running into the soft tissue around it); of the 1,057 within 15 % of the truth, one had
any edge there, under 5 %. The other 20 too-large outlines (shrunken or irradiated lung
lesions) have none at the limit: this does not catch them (:data:`MAX_OUTLINE_HALO_MM` catches
13 of them). With it (`python -m
bench.lesion_accuracy --cohort .irtmon/evidence/v2-train-24101-200 --workers 2 --propagate`):
wrong RECIST 1.1 categories 31 -> 25 of 400 follow-ups (a progression where the truth has stable
disease 11 -> 7), 11 more not evaluable (220 -> 231), long axes 2.64 -> 2.58 % off (median)."""


MAX_OUTLINE_HALO_MM = 8.0
"""The most by which a refined outline's long axis may exceed that of its solid part (the voxels at
least three quarters of the way from the background to the lesion's intensity on the baseline)
for the outline to be trusted (:attr:`RefinedOutline.halo_mm`). Past it the outline took in a
rim of tissue fainter than the lesion: ground glass, or the radiation change around an
irradiated lung lesion, which the half-way threshold between lung and lesion (about -400 HU)
counts in (the story draws it at -500 to -50 HU up to 5 to 15 mm beyond the lesion's first
extent, an assumption; clinic/story_v2/params.py). Chosen on the 200-patient training cohort
v2-train-24101-200 with every follow-up propagated (1,136 refined lesions against the truth;
2026-12-04, each outline's halo recorded in a `bench.lesion_accuracy --propagate` run): of the
20 outlines over 1.3 times the true long axis, none held at the growth limit, 18 were lung
lesions at the second follow-up; 13 of them had a halo over 8 mm (9.0 to 31.4: truth 5 to 20 mm,
measured 21 to 39 mm), and of the 1,116 outlines within 1.3 times the truth none had one over
7.2 mm (a small nodule's partial-volume rim is about a pixel: 5 mm at 2.7 mm pixels, where its
solid part can be empty)."""


@dataclass(frozen=True)
class RefinedOutline:
    """A lesion re-outlined on a follow-up (:func:`refine_outline`): its mask, and the share of
    its edge (its voxels with a face outside it) that lies at the growth limit, within one voxel
    of ``growth_mm`` from the propagated mask. An outline held back by the limit over much of its
    edge did not find the lesion's own edge there: it ran on into the tissue around it.
    ``halo_mm``: by how much its long axis exceeds that of its solid part (its largest connected
    part at least three quarters of the way from the background to the lesion's intensity on
    the baseline; 0 for a lesion darker than its background); a large halo is a rim of fainter
    tissue taken in."""

    mask: np.ndarray
    at_limit: float
    halo_mm: float = 0.0


def runs_into_surroundings(outline: RefinedOutline, growth_mm: float) -> str | None:
    """Why ``outline`` (refined within ``growth_mm``) is no measure of its lesion: more than
    :data:`MAX_OUTLINE_AT_LIMIT` of its edge held back by the growth limit, so it ran on into
    the tissue around it; or its long axis over :data:`MAX_OUTLINE_HALO_MM` longer than its
    solid part's, so it took in fainter tissue around it. None when it is a measure."""
    if outline.at_limit > MAX_OUTLINE_AT_LIMIT:
        return (
            f"{outline.at_limit:.0%} of its outline ran into the tissue around it, up to "
            f"{growth_mm:.0f} mm from where the baseline puts it"
        )
    if outline.halo_mm > MAX_OUTLINE_HALO_MM:
        return (
            f"its outline takes in a rim of fainter tissue around it (ground glass or radiation "
            f"change?), its long axis {outline.halo_mm:.0f} mm longer than its solid part's"
        )
    return None


class NoEdgeError(InsufficientDataError):
    """:func:`refine_outline` found no edge: the propagated lesion's core (``core_hu``, median
    HU on the follow-up) and the ring 4 to 10 mm around it (``ring_hu``) read alike. Either the
    lesion has gone (its site reads as its background did) or it now fills the ring too (it
    grew past it): :func:`fills_its_surroundings` tells which."""

    def __init__(self, message: str, *, core_hu: float, ring_hu: float) -> None:
        super().__init__(message)
        self.core_hu = core_hu
        self.ring_hu = ring_hu


def fills_its_surroundings(err: NoEdgeError, lesion_hu: float, contrast_hu: float) -> bool:
    """Whether a lesion that showed no edge on a follow-up (``err``) is still there: its site
    reads nearer the lesion's own HU on the baseline (``lesion_hu``) than the background it
    stood ``contrast_hu`` from (:func:`lesion_contrast`), so the ring around it is lesion too
    and it has grown past it; not gone. On the 200-patient training cohort with every
    follow-up propagated (2026-12-04), 31 lesion sightings had been called gone where the truth
    has the lesion, most with no edge (e.g. a core of 62 HU in a ring of 65 HU, the lesion
    62 HU on the baseline: a progressing patient's every lesion called gone); with this rule
    25 of them are not evaluable, and the 7 lesions that had gone are still called gone."""
    background = lesion_hu - contrast_hu
    return abs(err.core_hu - lesion_hu) < abs(err.core_hu - background)


def refine_mask(
    volume: Volume,
    propagated: np.ndarray,
    lesion_hu: float,
    growth_mm: float = 12.0,
    lesion_hu_max: float | None = None,
) -> np.ndarray:
    """The mask of :func:`refine_outline`."""
    return refine_outline(volume, propagated, lesion_hu, growth_mm, lesion_hu_max).mask


def refine_outline(
    volume: Volume,
    propagated: np.ndarray,
    lesion_hu: float,
    growth_mm: float = 12.0,
    lesion_hu_max: float | None = None,
) -> RefinedOutline:
    """Refine a propagated lesion mask on the new scan.

    The lesion is re-delineated by a threshold halfway between its own intensity (median HU of
    the eroded propagated mask, or ``lesion_hu`` from the baseline when that core is empty) and
    the background's (median HU of a ring 4 to 10 mm around the propagated mask); the
    connected components that touch the propagated core are kept, inside the propagated mask
    dilated by ``growth_mm`` (so the lesion may grow or shrink) and holes are filled. The
    half-way threshold places the boundary at 50 per cent partial volume, as a reader would.
    Voxels brighter than the lesion ever is (``lesion_hu_max``, e.g. the 99th percentile of
    the baseline lesion, plus half the gap to the next brighter tissue) are left out, so an
    enhancing neighbour (heart, vessel) is not swallowed. Returns the mask with the share of its
    edge held back by the growth limit (:class:`RefinedOutline`).

    Raises
    ------
    InsufficientDataError
        The propagated mask is empty or the lesion cannot be told from its background.
    """
    bounds = mask_bounds(propagated)
    if bounds is None:
        raise InsufficientDataError("propagated lesion mask is empty")
    sp = np.asarray(volume.geometry.spacing)
    first, last = bounds
    box = _box_around(first, last, max(growth_mm, _RING_MM[1]), sp, volume.geometry.shape)
    img = volume.array[box]
    prop = propagated[box]
    outside = ndimage.distance_transform_edt(~prop, sampling=sp)  # mm to the lesion
    start = np.array([s.start for s in box])
    core = _core(prop, first - start, last - start, sp)
    if core.sum() < 10:
        core = prop
    here = float(np.median(img[core])) if core.any() else lesion_hu
    inner = 0.5 * (here + lesion_hu)
    ring = (outside > _RING_MM[0]) & (outside <= _RING_MM[1])
    outer = float(np.median(img[ring])) if ring.any() else -1000.0
    if abs(inner - outer) < MIN_CONTRAST_HU:
        raise NoEdgeError(
            f"lesion ({inner:.0f} HU) cannot be told from its background ({outer:.0f} HU)",
            core_hu=here,
            ring_hu=outer,
        )
    threshold = 0.5 * (inner + outer)
    smooth = ndimage.gaussian_filter(img, _SMOOTH_SIGMA)  # the upper bound only: less noise
    candidate = (img > threshold) if inner > outer else (img < threshold)
    if core.sum() >= 30:
        top = float(np.percentile(smooth[core], 99))
    else:
        top = lesion_hu_max if lesion_hu_max is not None else inner + 100.0
    if inner > outer:
        candidate &= smooth <= top + 25.0
    allowed = outside <= growth_mm
    candidate &= allowed
    labels, n = ndimage.label(candidate)
    if n == 0:
        raise InsufficientDataError("no lesion voxels found around the propagated mask")
    seeds = np.unique(labels[core & candidate])
    seeds = seeds[seeds > 0]
    if seeds.size == 0:
        sizes = ndimage.sum(candidate, labels, index=np.arange(1, n + 1))
        seeds = np.array([int(np.argmax(sizes)) + 1])
    refined = np.isin(labels, seeds)
    refined = ndimage.binary_fill_holes(refined)
    edge = refined & ~ndimage.binary_erosion(refined, border_value=0)
    held = edge & (outside > growth_mm - float(sp.max()))
    at_limit = float(held.sum()) / max(int(edge.sum()), 1)
    # the solid part: three quarters of the way from the background to the lesion as the
    # baseline shows it (the follow-up's own core may be mostly the fainter rim)
    bright = inner > outer and lesion_hu > outer
    halo = _halo_mm(img, refined, outer + 0.75 * (lesion_hu - outer), volume) if bright else 0.0
    return RefinedOutline(placed_mask(propagated.shape, box, refined), at_limit, halo)


def _halo_mm(img: np.ndarray, refined: np.ndarray, solid_hu: float, volume: Volume) -> float:
    """By how much the long axis of ``refined`` exceeds that of its solid part: its largest
    connected part of at least ``solid_hu`` (:attr:`RefinedOutline.halo_mm`)."""
    solid = refined & (img >= solid_hu)
    labels, n = ndimage.label(solid)
    if n > 1:
        sizes = ndimage.sum(solid, labels, index=np.arange(1, n + 1))
        solid = labels == int(np.argmax(sizes)) + 1
    whole = axial_axes(refined, volume.geometry).long_mm  # on the box: lengths need spacing only
    return whole - (axial_axes(solid, volume.geometry).long_mm if n else 0.0)
