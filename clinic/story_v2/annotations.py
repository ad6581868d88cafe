"""A reader's annotations as DICOM: one SEG per study, one segment per lesion seen; at planning,
an RT Structure Set with the GTV(s) and every other lesion, one ROI each.

Segment and ROI labels are neutral and numbered per study ("Lesion 1", "Lesion 2", ...), in the
order a reader goes through a scan (head to feet, then right to left): nothing in a SEG links a
segment to one of an earlier study. No Tracking ID or Tracking UID is written; matching lesions
across studies is the software's job. Each segment names its organ (Anatomic Region Sequence),
as a radiologist's report would.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from scipy import ndimage

from clinic.contours import StructureRoi, neoplasm_segment, write_seg, write_structure_set
from clinic.dicomio import StudyInfo
from clinic.story_v2.anatomy import Organ

ORGAN_CODES = {
    Organ.LUNG: codes.SCT.Lung,
    Organ.LIVER: codes.SCT.Liver,
    Organ.ADRENAL: codes.SCT.AdrenalGland,
    Organ.BONE: codes.SCT.Bone,
    Organ.LYMPH_NODE: codes.SCT.LymphNode,
}


@dataclass(frozen=True)
class Finding:
    """One lesion as a reader labels it in one study."""

    number: int  # segment / ROI number in this study, 1-based
    label: str  # "Lesion 3", "GTV", "GTV_2"
    organ: Organ
    track: int  # the ground-truth track it shows (never written to DICOM)


def reading_order(centres: dict[int, tuple[float, float, float]]) -> list[int]:
    """Tracks in the order a reader numbers them: superior first, then patient right first."""
    return sorted(centres, key=lambda t: (-round(centres[t][2], 1), round(centres[t][0], 1), t))


_IN_PLANE = np.array(
    [np.zeros((3, 3), bool), ndimage.generate_binary_structure(2, 1), np.zeros((3, 3), bool)]
)
"""Neighbours within the slice: a reader draws on axial slices."""


def misdraw(
    seg_map: np.ndarray,
    numbers: Sequence[int],
    margin_sd_mm: float,
    pixel_mm: float,
    g: np.random.Generator,
) -> np.ndarray:
    """``seg_map`` (segment number per voxel, 0 outside) with each segment of ``numbers`` drawn
    by a less careful reader: its outline moved outwards or inwards by a margin N(0,
    ``margin_sd_mm``), in-plane, dithered to whole pixels. A segment grows only into unlabelled
    voxels, and one that a shrink would erase is left as drawn (a reader never outlines
    nothing). Two draws per segment, in the order of ``numbers``, whatever they do."""
    out = seg_map.copy()
    boxes = ndimage.find_objects(seg_map)
    for n in numbers:
        margin, dither = float(g.normal(0.0, margin_sd_mm)), float(g.uniform())
        px = abs(margin) / pixel_mm
        steps = int(px) + int(dither < px - int(px))
        if steps == 0 or n > len(boxes) or boxes[n - 1] is None:
            continue
        box = tuple(
            slice(max(b.start - (steps if i else 0), 0), b.stop + (steps if i else 0))
            for i, b in enumerate(boxes[n - 1])
        )
        mask = seg_map[box] == n
        view = out[box]
        if margin > 0:
            grown = ndimage.binary_dilation(mask, _IN_PLANE, iterations=steps)
            view[grown & (view == 0)] = n
        else:
            kept = ndimage.binary_erosion(mask, _IN_PLANE, iterations=steps, border_value=1)
            if kept.any():
                view[mask & ~kept] = 0
    return out


def write_lesion_seg(
    path: Path,
    images: Sequence[Dataset],
    label_map: np.ndarray,
    findings: Sequence[Finding],
    series_uid: str,
    sop_uid: str,
    study: StudyInfo,
) -> hd.seg.Segmentation:
    """Write a binary SEG whose segment ``n`` is ``label_map == n`` (slices x rows x cols)."""
    if not findings:
        raise ValueError("a SEG needs at least one segment; write none for a study without one")
    numbers = [f.number for f in findings]
    if numbers != list(range(1, len(findings) + 1)):
        raise ValueError(f"segment numbers must run 1..{len(findings)}, got {numbers}")
    return write_seg(
        path,
        images,
        label_map.astype(np.uint8),
        [neoplasm_segment(f.number, f.label, [ORGAN_CODES[f.organ]]) for f in findings],
        series_uid,
        sop_uid,
        study,
        content_label="LESIONS",
        content_description="Reader annotation: every lesion seen",
        creator="VirtualClinic^Reader",
    )


@dataclass(frozen=True)
class Roi:
    """One ROI of a structure set: its finding and closed contours per slice index."""

    finding: Finding
    contours: dict[int, list[np.ndarray]]
    in_field: bool


_COLOURS = (
    (255, 0, 0),
    (255, 128, 0),
    (0, 160, 255),
    (0, 200, 0),
    (200, 0, 200),
    (255, 255, 0),
)


def write_lesion_rtstruct(
    path: Path,
    study: StudyInfo,
    images: Sequence[Dataset],
    rois: Sequence[Roi],
    series_uid: str,
    sop_uid: str,
) -> Dataset:
    """Write an RT Structure Set with one ROI per lesion (GTVs typed ``GTV``, others left empty).

    ``contours`` of each ROI map a slice index of ``images`` to closed planar polygons
    (N x 3, patient mm), as :func:`clinic.contours.slice_contours` makes them.
    """
    if not rois:
        raise ValueError("a structure set needs at least one ROI")
    structure_rois = [
        StructureRoi(
            name=roi.finding.label,
            contours=roi.contours,
            interpreted_type="GTV" if roi.in_field else "",
            colour=_COLOURS[n % len(_COLOURS)],
        )
        for n, roi in enumerate(rois)
    ]
    return write_structure_set(
        path,
        study,
        images,
        structure_rois,
        series_uid,
        sop_uid,
        description="RTSTRUCT lesions",
        name="GTV and other lesions",
    )
