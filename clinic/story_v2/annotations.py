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
from pydicom.sequence import Sequence as DicomSequence
from pydicom.sr.codedict import codes
from pydicom.uid import RTStructureSetStorage

from clinic.dicomio import StudyInfo, add_patient_study, new_dataset, pin_generated
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
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=f.number,
            segment_label=f.label,
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=codes.SCT.Neoplasm,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
            anatomic_regions=[ORGAN_CODES[f.organ]],
        )
        for f in findings
    ]
    seg = hd.seg.Segmentation(
        source_images=list(images),
        pixel_array=label_map.astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=series_uid,
        series_number=101,
        sop_instance_uid=sop_uid,
        instance_number=1,
        manufacturer=study.manufacturer,
        manufacturer_model_name="irtmon virtual clinic",
        software_versions=study.software,
        device_serial_number="VC-0",
        content_label="LESIONS",
        content_description="Reader annotation: every lesion seen",
        content_creator_name="VirtualClinic^Reader",
    )
    seg.ContentDate = study.date
    seg.ContentTime = study.time
    seg.SeriesDate = study.date
    seg.SeriesTime = study.time
    pin_generated(seg, study, sop_uid)
    seg.save_as(path, enforce_file_format=True)
    return seg


@dataclass(frozen=True)
class Roi:
    """One ROI of a structure set: its finding and closed contours per slice index."""

    finding: Finding
    contours: dict[int, list[np.ndarray]]
    in_field: bool


_COLOURS = [[255, 0, 0], [255, 128, 0], [0, 160, 255], [0, 200, 0], [200, 0, 200], [255, 255, 0]]


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
    ds = new_dataset(RTStructureSetStorage, sop_uid)
    add_patient_study(ds, study)
    ds.Modality = "RTSTRUCT"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = 100
    ds.SeriesDescription = "RTSTRUCT lesions"
    ds.SeriesDate = study.date
    ds.SeriesTime = study.time
    ds.OperatorsName = "VirtualClinic^Planner"
    ds.FrameOfReferenceUID = study.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.InstanceNumber = 1
    ds.StructureSetLabel = "PLAN"
    ds.StructureSetName = "GTV and other lesions"
    ds.StructureSetDate = study.date
    ds.StructureSetTime = study.time

    def image_ref(img: Dataset) -> Dataset:
        ref = Dataset()
        ref.ReferencedSOPClassUID = img.SOPClassUID
        ref.ReferencedSOPInstanceUID = img.SOPInstanceUID
        return ref

    series_ref = Dataset()
    series_ref.SeriesInstanceUID = images[0].SeriesInstanceUID
    series_ref.ContourImageSequence = DicomSequence([image_ref(img) for img in images])
    study_ref = Dataset()
    study_ref.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"  # Study Component Management
    study_ref.ReferencedSOPInstanceUID = study.study_uid
    study_ref.RTReferencedSeriesSequence = DicomSequence([series_ref])
    frame_ref = Dataset()
    frame_ref.FrameOfReferenceUID = study.frame_of_reference_uid
    frame_ref.RTReferencedStudySequence = DicomSequence([study_ref])
    ds.ReferencedFrameOfReferenceSequence = DicomSequence([frame_ref])

    structure_rois, contour_rois, observations = [], [], []
    for n, roi in enumerate(rois, start=1):
        item = Dataset()
        item.ROINumber = n
        item.ReferencedFrameOfReferenceUID = study.frame_of_reference_uid
        item.ROIName = roi.finding.label
        item.ROIGenerationAlgorithm = "MANUAL"
        structure_rois.append(item)
        contours = []
        for k in sorted(roi.contours):
            for pts in roi.contours[k]:
                c = Dataset()
                c.ContourImageSequence = DicomSequence([image_ref(images[k])])
                c.ContourGeometricType = "CLOSED_PLANAR"
                c.NumberOfContourPoints = len(pts)
                c.ContourData = [f"{v:.3f}" for v in pts.ravel()]
                contours.append(c)
        rc = Dataset()
        rc.ROIDisplayColor = _COLOURS[(n - 1) % len(_COLOURS)]
        rc.ReferencedROINumber = n
        rc.ContourSequence = DicomSequence(contours)
        contour_rois.append(rc)
        obs = Dataset()
        obs.ObservationNumber = n
        obs.ReferencedROINumber = n
        obs.RTROIInterpretedType = "GTV" if roi.in_field else ""
        obs.ROIInterpreter = ""
        observations.append(obs)
    ds.StructureSetROISequence = DicomSequence(structure_rois)
    ds.ROIContourSequence = DicomSequence(contour_rois)
    ds.RTROIObservationsSequence = DicomSequence(observations)
    ds.ApprovalStatus = "UNAPPROVED"
    ds.save_as(path, enforce_file_format=True)
    return ds
