"""Lesions as DICOM annotations, for both stories: RT Structure Sets and binary DICOM SEGs.

The RTSTRUCT is written with pydicom (highdicom 0.28 has no RT Structure Set class); each
closed planar contour is the 0.5 iso-line of a lesion's partial-volume fraction on one slice
(:func:`slice_contours`), so its area and Feret diameter carry sub-voxel accuracy. A SEG is a
binary ``highdicom.seg.Segmentation`` of voxel masks (partial volume >= 0.5). Story v1 writes
one GTV in each (:mod:`clinic.cohort`); story v2 one ROI or segment per lesion
(:mod:`clinic.story_v2.annotations`).
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
from pydicom.sr.coding import Code
from pydicom.uid import RTStructureSetStorage
from skimage import measure

from clinic.dicomio import StudyInfo, add_patient_study, add_series, new_dataset, pin_generated
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


@dataclass(frozen=True)
class StructureRoi:
    """One ROI of an RT Structure Set as written.

    ``contours`` maps a slice index of the referenced images to closed planar polygons
    (N x 3, patient mm), as :func:`slice_contours` makes them; ``interpreted_type`` is the RT ROI
    Interpreted Type (``""``: not given).
    """

    name: str
    contours: dict[int, list[np.ndarray]]
    interpreted_type: str = "GTV"
    colour: tuple[int, int, int] = (255, 0, 0)


def _image_ref(img: Dataset) -> Dataset:
    ref = Dataset()
    ref.ReferencedSOPClassUID = img.SOPClassUID
    ref.ReferencedSOPInstanceUID = img.SOPInstanceUID
    return ref


def _referenced_frame(study: StudyInfo, images: Sequence[Dataset]) -> Dataset:
    """The Referenced Frame of Reference item: the study's frame, study and image series."""
    series_ref = Dataset()
    series_ref.SeriesInstanceUID = images[0].SeriesInstanceUID
    series_ref.ContourImageSequence = DicomSequence([_image_ref(img) for img in images])
    study_ref = Dataset()
    study_ref.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"  # Study Component Management
    study_ref.ReferencedSOPInstanceUID = study.study_uid
    study_ref.RTReferencedSeriesSequence = DicomSequence([series_ref])
    frame_ref = Dataset()
    frame_ref.FrameOfReferenceUID = study.frame_of_reference_uid
    frame_ref.RTReferencedStudySequence = DicomSequence([study_ref])
    return frame_ref


def write_structure_set(
    path: Path,
    study: StudyInfo,
    images: Sequence[Dataset],
    rois: Sequence[StructureRoi],
    series_uid: str,
    sop_uid: str,
    *,
    description: str,
    name: str,
) -> Dataset:
    """Write an RT Structure Set with ``rois`` (numbered from 1) drawn on ``images``.

    ``description`` is the Series Description, ``name`` the Structure Set Name.
    """
    ds = new_dataset(RTStructureSetStorage, sop_uid)
    add_patient_study(ds, study)
    add_series(
        ds,
        study,
        modality="RTSTRUCT",
        series_uid=series_uid,
        number=100,
        description=description,
    )
    ds.OperatorsName = "VirtualClinic^Planner"
    ds.StructureSetLabel = "PLAN"
    ds.StructureSetName = name
    ds.StructureSetDate = study.date
    ds.StructureSetTime = study.time
    ds.ReferencedFrameOfReferenceSequence = DicomSequence([_referenced_frame(study, images)])

    structure_rois, contour_rois, observations = [], [], []
    for n, roi in enumerate(rois, start=1):
        item = Dataset()
        item.ROINumber = n
        item.ReferencedFrameOfReferenceUID = study.frame_of_reference_uid
        item.ROIName = roi.name
        item.ROIGenerationAlgorithm = "MANUAL"
        structure_rois.append(item)
        contours = []
        for k in sorted(roi.contours):
            for pts in roi.contours[k]:
                c = Dataset()
                c.ContourImageSequence = DicomSequence([_image_ref(images[k])])
                c.ContourGeometricType = "CLOSED_PLANAR"
                c.NumberOfContourPoints = len(pts)
                c.ContourData = [f"{v:.3f}" for v in pts.ravel()]
                contours.append(c)
        rc = Dataset()
        rc.ROIDisplayColor = list(roi.colour)
        rc.ReferencedROINumber = n
        rc.ContourSequence = DicomSequence(contours)
        contour_rois.append(rc)
        obs = Dataset()
        obs.ObservationNumber = n
        obs.ReferencedROINumber = n
        obs.RTROIInterpretedType = roi.interpreted_type
        obs.ROIInterpreter = ""
        observations.append(obs)
    ds.StructureSetROISequence = DicomSequence(structure_rois)
    ds.ROIContourSequence = DicomSequence(contour_rois)
    ds.RTROIObservationsSequence = DicomSequence(observations)
    ds.ApprovalStatus = "UNAPPROVED"
    ds.save_as(path, enforce_file_format=True)
    return ds


def neoplasm_segment(
    number: int, label: str, anatomic_regions: Sequence[Code] | None = None
) -> hd.seg.SegmentDescription:
    """A manually drawn segment of a neoplasm (a morphologically abnormal structure)."""
    return hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=label,
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Neoplasm,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
        anatomic_regions=anatomic_regions,
    )


def write_seg(
    path: Path,
    images: Sequence[Dataset],
    pixel_array: np.ndarray,
    segments: Sequence[hd.seg.SegmentDescription],
    series_uid: str,
    sop_uid: str,
    study: StudyInfo,
    *,
    content_label: str,
    content_description: str,
    creator: str,
) -> hd.seg.Segmentation:
    """Write a binary DICOM SEG of ``pixel_array`` (slices x rows x cols, ordered like ``images``).

    A boolean array is segment 1; an integer array holds segment numbers (0: background).
    Dates, times and the UIDs highdicom draws are pinned to the study (:func:`pin_generated`).
    """
    seg = hd.seg.Segmentation(
        source_images=list(images),
        pixel_array=pixel_array,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=list(segments),
        series_instance_uid=series_uid,
        series_number=101,
        sop_instance_uid=sop_uid,
        instance_number=1,
        manufacturer=study.manufacturer,
        manufacturer_model_name="irtmon virtual clinic",
        software_versions=study.software,
        device_serial_number="VC-0",
        content_label=content_label,
        content_description=content_description,
        content_creator_name=creator,
    )
    seg.ContentDate = study.date
    seg.ContentTime = study.time
    seg.SeriesDate = study.date
    seg.SeriesTime = study.time
    pin_generated(seg, study, sop_uid)
    seg.save_as(path, enforce_file_format=True)
    return seg
