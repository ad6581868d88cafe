"""The planning CT's target as DICOM: an RT Structure Set (GTV contours) and a DICOM SEG.

The RTSTRUCT is written with pydicom (highdicom 0.28 has no RT Structure Set class); each
closed planar contour is the 0.5 iso-line of the target's partial-volume fraction on one slice,
so its area and Feret diameter carry sub-voxel accuracy. The SEG is a binary
``highdicom.seg.Segmentation`` of the voxel mask (partial volume >= 0.5).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.sr.codedict import codes
from pydicom.uid import RTStructureSetStorage
from skimage import measure

from clinic.dicomio import StudyInfo, add_patient_study, new_dataset, pin_generated
from clinic.phantom import Geometry

ROI_NAME = "GTV"


def slice_contours(fraction: np.ndarray, geometry: Geometry, k: int) -> list[np.ndarray]:
    """Closed contours (N x 3, patient mm) of the 0.5 iso-line of ``fraction`` on slice ``k``."""
    if fraction.max() < 0.5:
        return []
    padded = np.pad(fraction, 1)
    x0, y0, z = geometry.origin_mm(k)
    out = []
    for c in measure.find_contours(padded, 0.5):
        rows, cols = c[:, 0] - 1.0, c[:, 1] - 1.0
        pts = np.column_stack(
            [x0 + cols * geometry.pixel_mm, y0 + rows * geometry.pixel_mm, np.full(len(c), z)]
        )
        if len(pts) > 3 and np.allclose(pts[0], pts[-1]):
            pts = pts[:-1]  # DICOM closed contours do not repeat the first point
        if len(pts) >= 3:
            out.append(pts)
    return out


def write_rtstruct(
    path: Path,
    study: StudyInfo,
    images: Sequence[Dataset],
    contours: dict[int, list[np.ndarray]],
    series_uid: str,
    sop_uid: str,
    roi_name: str = ROI_NAME,
) -> Dataset:
    """Write an RT Structure Set with one GTV ROI; ``contours`` maps slice index to polygons."""
    ds = new_dataset(RTStructureSetStorage, sop_uid)
    add_patient_study(ds, study)
    ds.Modality = "RTSTRUCT"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = 100
    ds.SeriesDescription = f"RTSTRUCT {roi_name}"
    ds.SeriesDate = study.date
    ds.SeriesTime = study.time
    ds.OperatorsName = "VirtualClinic^Planner"
    ds.FrameOfReferenceUID = study.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.InstanceNumber = 1
    ds.StructureSetLabel = "PLAN"
    ds.StructureSetName = "Planning target"
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

    roi = Dataset()
    roi.ROINumber = 1
    roi.ReferencedFrameOfReferenceUID = study.frame_of_reference_uid
    roi.ROIName = roi_name
    roi.ROIGenerationAlgorithm = "MANUAL"
    ds.StructureSetROISequence = DicomSequence([roi])

    items = []
    for k in sorted(contours):
        for pts in contours[k]:
            item = Dataset()
            item.ContourImageSequence = DicomSequence([image_ref(images[k])])
            item.ContourGeometricType = "CLOSED_PLANAR"
            item.NumberOfContourPoints = len(pts)
            item.ContourData = [f"{v:.3f}" for v in pts.ravel()]
            items.append(item)
    roi_contour = Dataset()
    roi_contour.ROIDisplayColor = [255, 0, 0]
    roi_contour.ReferencedROINumber = 1
    roi_contour.ContourSequence = DicomSequence(items)
    ds.ROIContourSequence = DicomSequence([roi_contour])

    obs = Dataset()
    obs.ObservationNumber = 1
    obs.ReferencedROINumber = 1
    obs.RTROIInterpretedType = "GTV"
    obs.ROIInterpreter = ""
    ds.RTROIObservationsSequence = DicomSequence([obs])
    ds.ApprovalStatus = "UNAPPROVED"
    ds.save_as(path, enforce_file_format=True)
    return ds


def write_seg(
    path: Path,
    images: Sequence[Dataset],
    mask: np.ndarray,
    series_uid: str,
    sop_uid: str,
    study: StudyInfo,
    label: str = ROI_NAME,
) -> hd.seg.Segmentation:
    """Write a binary DICOM SEG of ``mask`` (slices x rows x cols, ordered like ``images``)."""
    description = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label=label,
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Neoplasm,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
    )
    seg = hd.seg.Segmentation(
        source_images=list(images),
        pixel_array=mask.astype(bool),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description],
        series_instance_uid=series_uid,
        series_number=101,
        sop_instance_uid=sop_uid,
        instance_number=1,
        manufacturer=study.manufacturer,
        manufacturer_model_name="irtmon virtual clinic",
        software_versions=study.software,
        device_serial_number="VC-0",
        content_label="GTV",
        content_description="Planning target (ground truth)",
        content_creator_name="VirtualClinic^Planner",
    )
    seg.ContentDate = study.date
    seg.ContentTime = study.time
    seg.SeriesDate = study.date
    seg.SeriesTime = study.time
    pin_generated(seg, study, sop_uid)
    seg.save_as(path, enforce_file_format=True)
    return seg
