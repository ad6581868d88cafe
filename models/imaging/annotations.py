"""Every lesion of an annotation: each segment of a DICOM SEG, each lesion ROI of an RTSTRUCT.

:func:`read_lesions` places each lesion on the image series' grid with what the annotation
says about it (label, segment or ROI number, tracking identifier and UID, anatomic codes; the
organ and whether it is a lymph node follow from them). A lesion that cannot be used (empty, on
another frame of reference, outside the image, off the grid, overlapping another lesion) is
not an error of the whole annotation: it becomes a :class:`LesionFailure` naming the segment or
ROI and the problem, and the other lesions are still returned. :mod:`models.imaging.lesion`
keeps the single-lesion reader of earlier releases.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.sr.coding import Code
from skimage.draw import polygon as draw_polygon

from models.exceptions import UnreadableInputError
from models.imaging.lesion import MaskSource
from models.imaging.volume import Geometry, Volume, box_slices, final_mask, mask_bounds
from schemas.enums import Organ

__all__ = [
    "Lesion",
    "LesionFailure",
    "LesionProblem",
    "LesionSet",
    "RoiInfo",
    "is_lesion_roi",
    "lesions_from_rtstruct",
    "lesions_from_seg",
    "organ_of",
    "read_lesions",
    "separate_overlaps",
]


class LesionProblem(StrEnum):
    """Why one lesion of a study could not be measured."""

    EMPTY = "empty"
    OVERLAP = "overlap"
    FRAME_OF_REFERENCE = "frame_of_reference"
    OUTSIDE_IMAGE = "outside_image"
    OFF_GRID = "off_grid"
    NOT_FOUND = "not_found"
    """A baseline lesion carried by registration to a follow-up without annotation shows no
    lesion at its site: it is recorded as not seen (0 mm), as a reader records a lesion that
    has disappeared. (One carried outside the scan is :attr:`OUTSIDE_IMAGE`: not evaluable.)"""
    NOT_MEASURABLE = "not_measurable"
    UNREADABLE = "unreadable"
    """The whole annotation object could not be read (number 0, label its file name)."""


@dataclass(frozen=True)
class LesionFailure:
    """A lesion that was not measured, and why (the message names the segment or ROI)."""

    label: str
    number: int
    problem: LesionProblem
    message: str
    reference_uid: str = ""
    """SOP Instance UID of the SEG or RTSTRUCT (empty for a propagated lesion)."""
    tracking_uid: str = ""

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return {
            "label": self.label,
            "number": self.number,
            "problem": self.problem.value,
            "message": self.message,
            "reference_uid": self.reference_uid,
            "tracking_uid": self.tracking_uid,
        }


@dataclass
class Lesion:
    """One lesion as a boolean ``[z, y, x]`` mask on the image series' grid, with its identity."""

    mask: np.ndarray = field(repr=False)
    label: str
    number: int
    """Segment number (SEG), ROI number (RTSTRUCT) or baseline lesion number (propagated)."""
    source: MaskSource
    reference_uid: str = ""
    """SOP Instance UID of the SEG or RTSTRUCT it was read from."""
    tracking_id: str = ""
    tracking_uid: str = ""
    organ: Organ = Organ.OTHER
    is_node: bool = False
    in_field: bool | None = None
    """In the radiotherapy field, outside it, or unknown (None). An ROI or segment whose name
    holds ``GTV`` is in the field; the other lesion ROIs of an RTSTRUCT (the planning
    structure set) are outside it; a SEG segment not named GTV is unknown."""
    codes: tuple[Code, ...] = ()
    """Anatomic region, primary anatomic structure and segmented property type codes."""

    def centre_index(self) -> np.ndarray:
        """Centre of mass of the mask in continuous ``zyx`` voxel indices."""
        bounds = mask_bounds(self.mask)
        if bounds is None:
            return np.full(3, np.nan)  # as the mean of no voxels
        lo, hi = bounds
        box = self.mask[box_slices(lo, hi + 1)]
        return np.mean(np.nonzero(box), axis=1) + lo

    def centre_mm(self, geometry: Geometry) -> np.ndarray:
        """Centre of mass in patient coordinates (mm)."""
        return geometry.index_to_patient(self.centre_index())[0]


@dataclass
class LesionSet:
    """The lesions read from one or more annotations, and those that could not be used."""

    lesions: list[Lesion] = field(default_factory=list)
    failures: list[LesionFailure] = field(default_factory=list)

    def extend(self, other: LesionSet) -> None:
        self.lesions.extend(other.lesions)
        self.failures.extend(other.failures)


# ---------------------------------------------------------------- organs and lesion ROIs

_ORGAN_CODES: dict[str, Organ] = {
    "39607008": Organ.LUNG,
    "10200004": Organ.LIVER,
    "59441001": Organ.LYMPH_NODE,
    "23451007": Organ.ADRENAL,
    "272673000": Organ.BONE,
    "3138006": Organ.BONE,
    "12738006": Organ.BRAIN,
    "64033007": Organ.KIDNEY,
    "3120008": Organ.PLEURA,
    "87784001": Organ.SOFT_TISSUE,
}
_ORGAN_WORDS: list[tuple[str, Organ]] = [
    (r"LYMPH|NODE|NODAL|(^|[^A-Z])LN($|[^A-Z])", Organ.LYMPH_NODE),
    (r"ADRENAL", Organ.ADRENAL),
    (r"LUNG|PULM", Organ.LUNG),
    (r"LIVER|HEPAT", Organ.LIVER),
    (r"BONE|OSSEOUS|VERTEBRA|RIB($|[^A-Z])|FEMUR|PELVIS", Organ.BONE),
    (r"BRAIN|CEREBR", Organ.BRAIN),
    (r"KIDNEY|RENAL", Organ.KIDNEY),
    (r"PLEURA", Organ.PLEURA),
]


def organ_of(codes: Sequence[Code], label: str = "") -> Organ:
    """The organ named by SNOMED CT codes (anatomic region first), else by words of ``label``."""
    for code in codes:
        organ = _ORGAN_CODES.get(str(code.value))
        if organ is not None:
            return organ
    texts = [str(c.meaning) for c in codes] + [label]
    for text in texts:
        upper = text.upper()
        for pattern, organ in _ORGAN_WORDS:
            if re.search(pattern, upper):
                return organ
    return Organ.OTHER


@dataclass(frozen=True)
class RoiInfo:
    """What an RTSTRUCT says about one ROI, for deciding whether it is a lesion."""

    number: int
    name: str
    interpreted_type: str = ""


_NOT_LESION_TYPES = {
    "EXTERNAL",
    "PTV",
    "CTV",
    "ORGAN",
    "AVOIDANCE",
    "BOLUS",
    "SUPPORT",
    "FIXATION",
    "CAVITY",
    "CONTROL",
    "REGISTRATION",
    "ISOCENTER",
    "MARKER",
    "CONTRAST_AGENT",
    "DOSE_REGION",
    "TREATED_VOLUME",
    "IRRAD_VOLUME",
}
_MARGIN_WORDS = re.compile(r"PTV|CTV|ITV|BODY|EXTERNAL|SKIN|COUCH|RING|OPT|Z_")
_LESION_WORDS = re.compile(r"GTV|TUMOU?R|LESION|NODULE|NEOPLASM|METASTA")
_LESION_TOKENS = {"MET", "METS", "LN", "NODE", "MASS"}


def is_lesion_roi(roi: RoiInfo) -> bool:
    """Whether an RTSTRUCT ROI outlines a lesion (the default rule of :func:`read_lesions`).

    An ROI of interpreted type GTV is a lesion; an ROI of another known type (PTV, CTV, ORGAN,
    EXTERNAL...) or whose name says it is a margin or a body outline (PTV, CTV, ITV, BODY...)
    is not; otherwise its name decides (GTV, tumour, lesion, nodule, metastasis, node, LN,
    mass).
    """
    kind = roi.interpreted_type.strip().upper()
    if kind == "GTV":
        return True
    if kind in _NOT_LESION_TYPES:
        return False
    name = roi.name.upper()
    if _MARGIN_WORDS.search(name):
        return False
    if _LESION_WORDS.search(name):
        return True
    return bool(_LESION_TOKENS & set(re.split(r"[^A-Z]+", name)))


def _in_field(label: str) -> bool | None:
    return True if "GTV" in label.upper() else None


# ---------------------------------------------------------------- shared


def _read(path: str | Path) -> Dataset:
    try:
        return pydicom.dcmread(path)
    except (InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError) as err:
        raise UnreadableInputError(f"lesion annotation {path} cannot be read: {err}") from err


def _frame_of_reference(ds: Dataset) -> str:
    uid = str(ds.get("FrameOfReferenceUID", "") or "")
    if not uid:
        for item in ds.get("ReferencedFrameOfReferenceSequence") or []:
            uid = str(item.get("FrameOfReferenceUID", "") or "")
            if uid:
                break
    return uid


def _codes(item: Dataset, *keywords: str) -> tuple[Code, ...]:
    out = []
    for keyword in keywords:
        for c in item.get(keyword) or []:
            value = c.get("CodeValue") or c.get("LongCodeValue") or c.get("URNCodeValue")
            if value:
                out.append(
                    Code(
                        str(value),
                        str(c.get("CodingSchemeDesignator", "")),
                        str(c.get("CodeMeaning", "")),
                    )
                )
    return tuple(out)


def _lesion(
    mask: np.ndarray,
    label: str,
    number: int,
    source: MaskSource,
    reference_uid: str,
    codes: tuple[Code, ...],
    tracking_id: str = "",
    tracking_uid: str = "",
    in_field: bool | None = None,
) -> Lesion:
    organ = organ_of(codes, label)
    return Lesion(
        mask=final_mask(mask if mask.base is None else mask.copy()),
        label=label,
        number=number,
        source=source,
        reference_uid=reference_uid,
        tracking_id=tracking_id,
        tracking_uid=tracking_uid,
        organ=organ,
        is_node=organ is Organ.LYMPH_NODE,
        in_field=in_field,
        codes=codes,
    )


# ---------------------------------------------------------------- DICOM SEG


def lesions_from_seg(path: str | Path, volume: Volume, frame_of_reference: str = "") -> LesionSet:
    """Every segment of a DICOM SEG (binary, fractional or label map) on ``volume``'s grid.

    Frames are placed by their Plane Position (Patient); a fractional segment is kept where its
    value is at least half the maximum. A segment whose frames lie off the image grid or
    outside the image, a segment left empty, and every segment of a SEG on another frame of
    reference become failures naming the segment; segments that overlap are both refused
    (which lesion the shared voxels belong to is unknown).

    Raises
    ------
    UnreadableInputError
        Not a SEG, or its pixel data cannot be decoded (the whole object is unusable).
    """
    ds = _read(path)
    if str(ds.get("Modality", "")) != "SEG":
        raise UnreadableInputError(f"{path} is not a DICOM SEG (Modality {ds.get('Modality')})")
    reference_uid = str(ds.get("SOPInstanceUID", ""))
    segments: dict[int, Dataset] = {}
    for item in ds.get("SegmentSequence") or []:
        if int(item.SegmentNumber) > 0:  # 0: the background of a label map
            segments[int(item.SegmentNumber)] = item
    if not segments:
        raise UnreadableInputError(f"{path}: the SEG describes no segment")

    def name(n: int) -> str:
        return str(segments[n].get("SegmentLabel", "") or f"segment {n}")

    def failure(n: int, problem: LesionProblem, what: str) -> LesionFailure:
        return LesionFailure(
            name(n),
            n,
            problem,
            f"{path}: segment {n} {name(n)!r} {what}",
            reference_uid,
            str(segments[n].get("TrackingUID", "") or ""),
        )

    result = LesionSet()
    seg_for = _frame_of_reference(ds)
    if frame_of_reference and seg_for and seg_for != frame_of_reference:
        for n in segments:
            result.failures.append(
                failure(
                    n,
                    LesionProblem.FRAME_OF_REFERENCE,
                    f"is on frame of reference {seg_for}, not the image series' "
                    f"{frame_of_reference}: it cannot be placed on this scan",
                )
            )
        return result
    try:
        frames = ds.pixel_array
    except (ValueError, RuntimeError, NotImplementedError, AttributeError, TypeError) as err:
        raise UnreadableInputError(f"{path}: SEG pixel data cannot be decoded: {err}") from err
    if frames.ndim == 2:
        frames = frames[None]
    g = volume.geometry
    kind = str(ds.get("SegmentationType", "BINARY"))
    threshold = 0.5 * float(ds.get("MaximumFractionalValue", 255)) if kind == "FRACTIONAL" else 0.5
    masks = {n: np.zeros(g.shape, bool) for n in segments}
    bad: dict[int, LesionFailure] = {}
    shared = (ds.get("SharedFunctionalGroupsSequence") or [Dataset()])[0]
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    if frames.shape[1:] != g.shape[1:]:
        for n in segments:
            bad[n] = failure(
                n,
                LesionProblem.OFF_GRID,
                f"has frames of {frames.shape[1]} x {frames.shape[2]} pixels on an image of "
                f"{g.shape[1]} x {g.shape[2]}: it is not on the image series' grid",
            )
        per_frame = []
    for f, group in enumerate(per_frame):
        ident = group.get("SegmentIdentificationSequence") or shared.get(
            "SegmentIdentificationSequence"
        )
        if kind == "LABELMAP" or ident is None:
            present = [int(v) for v in np.unique(frames[f]) if v and int(v) in segments]
        else:
            present = [int(ident[0].ReferencedSegmentNumber)]
        present = [n for n in present if n in segments and n not in bad]
        if not present:
            continue
        plane = group.get("PlanePositionSequence") or shared.get("PlanePositionSequence")
        if plane is None:
            for n in present:
                bad[n] = failure(n, LesionProblem.OFF_GRID, f"frame {f + 1} has no plane position")
            continue
        position = np.asarray(plane[0].ImagePositionPatient, float)
        idx = g.patient_to_index(position)[0]
        k = round(float(idx[0]))
        if abs(idx[0] - k) > 0.1 or np.any(np.abs(idx[1:]) > 0.1):
            for n in present:
                bad[n] = failure(
                    n,
                    LesionProblem.OFF_GRID,
                    f"frame {f + 1} (position {np.round(position, 2).tolist()} mm) does not lie "
                    "on the image series' grid",
                )
            continue
        if not 0 <= k < g.shape[0]:
            for n in present:
                bad[n] = failure(
                    n,
                    LesionProblem.OUTSIDE_IMAGE,
                    f"frame {f + 1} lies outside the image (slice {k} of {g.shape[0]}, position "
                    f"{np.round(position, 2).tolist()} mm)",
                )
            continue
        for n in present:
            if kind == "LABELMAP" or ident is None:
                masks[n][k] |= frames[f] == n
            else:
                masks[n][k] |= frames[f] >= threshold if kind == "FRACTIONAL" else frames[f] > 0
    lesions = []
    for n, item in segments.items():
        if n in bad:
            result.failures.append(bad[n])
            continue
        if not masks[n].any():
            result.failures.append(failure(n, LesionProblem.EMPTY, "is empty on this series"))
            continue
        lesions.append(
            _lesion(
                masks[n],
                name(n),
                n,
                MaskSource.SEG,
                reference_uid,
                _codes(
                    item,
                    "AnatomicRegionSequence",
                    "PrimaryAnatomicStructureSequence",
                    "SegmentedPropertyTypeCodeSequence",
                ),
                tracking_id=str(item.get("TrackingID", "") or ""),
                tracking_uid=str(item.get("TrackingUID", "") or ""),
                in_field=_in_field(name(n)),
            )
        )
    kept, overlaps = separate_overlaps(lesions, what="segment")
    result.lesions.extend(kept)
    result.failures.extend(overlaps)
    return result


# ---------------------------------------------------------------- RTSTRUCT


def lesions_from_rtstruct(
    path: str | Path,
    volume: Volume,
    frame_of_reference: str = "",
    *,
    is_lesion: Callable[[RoiInfo], bool] = is_lesion_roi,
) -> LesionSet:
    """Every lesion ROI of an RTSTRUCT rasterised on ``volume``'s grid.

    Which ROIs are lesions is decided by ``is_lesion`` (default :func:`is_lesion_roi`: GTVs and
    ROIs named as lesions; PTV, CTV, organs and the body outline are not). Each closed planar
    contour is filled on the slice nearest its plane; contours of one slice are combined by
    XOR, so holes drawn as inner contours stay empty. An ROI with a contour outside the image
    (beyond the first or last slice, or beyond the field of view in-plane), an ROI on another
    frame of reference and an ROI without contours become failures naming the ROI; ROIs that
    overlap are both refused.

    Raises
    ------
    UnreadableInputError
        Not an RTSTRUCT.
    """
    ds = _read(path)
    if str(ds.get("Modality", "")) != "RTSTRUCT":
        raise UnreadableInputError(f"{path} is not an RTSTRUCT (Modality {ds.get('Modality')})")
    reference_uid = str(ds.get("SOPInstanceUID", ""))
    set_for = _frame_of_reference(ds)
    observations: dict[int, Dataset] = {}
    for obs in ds.get("RTROIObservationsSequence") or []:
        observations[int(obs.get("ReferencedROINumber", -1))] = obs
    contours: dict[int, list[Dataset]] = {}
    for roi in ds.get("ROIContourSequence") or []:
        contours.setdefault(int(roi.get("ReferencedROINumber", -1)), []).extend(
            roi.get("ContourSequence") or []
        )
    g = volume.geometry
    result = LesionSet()
    lesions = []
    for roi in ds.get("StructureSetROISequence") or []:
        number = int(roi.ROINumber)
        name = str(roi.get("ROIName", "") or f"ROI {number}")
        obs = observations.get(number, Dataset())
        info = RoiInfo(number, name, str(obs.get("RTROIInterpretedType", "") or ""))
        if not is_lesion(info):
            continue

        def failure(problem: LesionProblem, what: str, number: int = number, name: str = name):
            return LesionFailure(
                name, number, problem, f"{path}: ROI {number} {name!r} {what}", reference_uid
            )

        roi_for = str(roi.get("ReferencedFrameOfReferenceUID", "") or "") or set_for
        if frame_of_reference and roi_for and roi_for != frame_of_reference:
            result.failures.append(
                failure(
                    LesionProblem.FRAME_OF_REFERENCE,
                    f"is on frame of reference {roi_for}, not the image series' "
                    f"{frame_of_reference}: it cannot be placed on this scan",
                )
            )
            continue
        mask = np.zeros(g.shape, bool)
        outside: list[float] = []
        items = contours.get(number, [])
        for contour in items:
            pts = np.asarray(contour.ContourData, float).reshape(-1, 3)
            idx = g.patient_to_index(pts)
            kf = float(np.median(idx[:, 0]))
            k = round(kf)
            in_plane = (
                (idx[:, 1] >= -0.5)
                & (idx[:, 1] <= g.shape[1] - 0.5)
                & (idx[:, 2] >= -0.5)
                & (idx[:, 2] <= g.shape[2] - 0.5)
            )
            if not 0 <= k < g.shape[0] or not in_plane.all():
                outside.append(float(np.median(pts[:, 2])))
                continue
            rr, cc = draw_polygon(idx[:, 1], idx[:, 2], shape=g.shape[1:])
            layer = np.zeros(g.shape[1:], bool)
            layer[rr, cc] = True
            mask[k] ^= layer
        if outside:
            first = g.index_to_patient(np.zeros((1, 3)))[0][2]
            last = g.index_to_patient(np.array([[g.shape[0] - 1, 0, 0]], float))[0][2]
            result.failures.append(
                failure(
                    LesionProblem.OUTSIDE_IMAGE,
                    f"has {len(outside)} of {len(items)} contours outside the image (contour "
                    f"planes z = {sorted({round(z, 1) for z in outside})[:6]} mm; the series "
                    f"covers z = {min(first, last):.1f} to {max(first, last):.1f} mm and "
                    f"{g.shape[1]} x {g.shape[2]} pixels): a clipped lesion cannot be measured",
                )
            )
            continue
        if not mask.any():
            result.failures.append(failure(LesionProblem.EMPTY, "has no contour on this series"))
            continue
        codes = _codes(obs, "RTROIIdentificationCodeSequence", "AnatomicRegionSequence")
        lesions.append(
            _lesion(
                mask,
                name,
                number,
                MaskSource.RTSTRUCT,
                reference_uid,
                codes,
                in_field="GTV" in name.upper(),
            )
        )
    kept, overlaps = separate_overlaps(lesions, what="ROI")
    result.lesions.extend(kept)
    result.failures.extend(overlaps)
    return result


# ---------------------------------------------------------------- overlaps and dispatch


def separate_overlaps(
    lesions: Sequence[Lesion], what: str = "lesion"
) -> tuple[list[Lesion], list[LesionFailure]]:
    """Lesions that share no voxel with another, and a failure for each one that does.

    Both lesions of an overlapping pair are refused: which of them the shared voxels belong to
    is unknown, so neither can be measured safely.
    """
    if len(lesions) < 2:
        return list(lesions), []
    count = np.zeros(lesions[0].mask.shape, np.uint8)
    for lesion in lesions:
        count += lesion.mask
    shared = count > 1
    if not shared.any():
        return list(lesions), []
    partners: dict[int, list[str]] = {}
    for i, a in enumerate(lesions):
        if not (a.mask & shared).any():
            continue
        for j, b in enumerate(lesions):
            if i == j:
                continue
            n = int(np.count_nonzero(a.mask & b.mask))
            if n:
                smaller = min(int(a.mask.sum()), int(b.mask.sum()))
                partners.setdefault(i, []).append(
                    f"{what} {b.number} {b.label!r} ({n} voxels, {100 * n / smaller:.0f}% of the "
                    "smaller)"
                )
    kept, failures = [], []
    for i, lesion in enumerate(lesions):
        if i not in partners:
            kept.append(lesion)
            continue
        failures.append(
            LesionFailure(
                lesion.label,
                lesion.number,
                LesionProblem.OVERLAP,
                f"{what} {lesion.number} {lesion.label!r} overlaps "
                + ", ".join(partners[i])
                + ": the shared voxels cannot be assigned to one lesion",
                lesion.reference_uid,
                lesion.tracking_uid,
            )
        )
    return kept, failures


def read_lesions(
    path: str | Path,
    volume: Volume,
    frame_of_reference: str = "",
    *,
    is_lesion: Callable[[RoiInfo], bool] = is_lesion_roi,
) -> LesionSet:
    """Every lesion of a DICOM SEG or an RTSTRUCT, whichever ``path`` holds.

    Raises
    ------
    UnreadableInputError
        ``path`` is neither, or cannot be read at all.
    """
    if not Path(path).is_file():
        raise UnreadableInputError(f"lesion annotation {path} does not exist")
    try:
        head = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Modality"])
    except (InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError) as err:
        raise UnreadableInputError(f"lesion annotation {path} cannot be read: {err}") from err
    modality = str(head.get("Modality", ""))
    if modality == "SEG":
        return lesions_from_seg(path, volume, frame_of_reference)
    if modality == "RTSTRUCT":
        return lesions_from_rtstruct(path, volume, frame_of_reference, is_lesion=is_lesion)
    raise UnreadableInputError(f"lesion annotation {path} is neither RTSTRUCT nor SEG")
