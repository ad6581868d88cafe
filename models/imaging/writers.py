"""Objects for the hospital: a DICOM SEG of the lesions and a TID 1500 SR of their measures.

Both are written with highdicom and reference the CT series they were computed on, so a PACS
stores them beside it. :func:`build_seg` / :func:`build_sr` / :func:`write_outputs` write the
one target lesion of earlier releases; :func:`build_lesions_seg` / :func:`build_lesions_sr` /
:func:`write_lesion_outputs` write every lesion of a study: one segment per lesion, and one
measurement group per lesion (tracking identifier and UID, finding site, RECIST role, long
axis, short axis, volume, and the RECIST 1.1 / iRECIST category of the timepoint), plus a
group for the timepoint (sum of diameters, category responses). Concepts without a standard
code (the RECIST 1.1 and iRECIST overall categories, the new-lesion roles, the radiotherapy
field) use the private coding scheme ``99IRTMON``, declared in the SR's Coding Scheme
Identification Sequence.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from models.imaging.burden import Burden
from models.imaging.lesion import MaskSource
from models.imaging.volume import mask_box
from schemas.enums import LesionRole, Organ, RecistResponse

__all__ = [
    "ALGORITHM_NAME",
    "ALGORITHM_VERSION",
    "DERIVED_MANUFACTURER",
    "LesionOutput",
    "TimepointOutput",
    "build_lesions_seg",
    "build_lesions_sr",
    "build_seg",
    "build_sr",
    "write_lesion_outputs",
    "write_outputs",
]

ALGORITHM_NAME = "irtmon-imaging"
ALGORITHM_VERSION = "0.2.1"
DERIVED_MANUFACTURER = "irtmon"
"""Manufacturer of the SEG and SR irtmon writes (so a PACS feed can skip its own output)."""


def _algorithm() -> hd.AlgorithmIdentificationSequence:
    return hd.AlgorithmIdentificationSequence(
        name=ALGORITHM_NAME, version=ALGORITHM_VERSION, family=codes.DCM.ArtificialIntelligence
    )


def build_seg(
    source_images: Sequence[Dataset],
    mask: np.ndarray,
    mask_source: MaskSource,
    label: str = "GTV",
    series_number: int = 901,
) -> hd.seg.Segmentation:
    """A binary DICOM SEG of ``mask`` (slices ordered like ``source_images``).

    The segment algorithm type is MANUAL for a contour read from the hospital's RTSTRUCT or SEG
    and SEMIAUTOMATIC for one propagated by registration and refined here.
    """
    manual = mask_source in (MaskSource.RTSTRUCT, MaskSource.SEG, MaskSource.GIVEN)
    description = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label=label[:64] or "lesion",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Neoplasm,
        algorithm_type=(
            hd.seg.SegmentAlgorithmTypeValues.MANUAL
            if manual
            else hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC
        ),
        algorithm_identification=None if manual else _algorithm(),
        tracking_id="target lesion",
        tracking_uid=generate_uid(),
    )
    return hd.seg.Segmentation(
        source_images=list(source_images),
        pixel_array=mask.astype(bool),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description],
        series_instance_uid=generate_uid(),
        series_number=series_number,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer=DERIVED_MANUFACTURER,
        manufacturer_model_name=ALGORITHM_NAME,
        software_versions=ALGORITHM_VERSION,
        device_serial_number="irtmon-0",
        content_label="LESION",
        content_description=f"Target lesion ({mask_source.value})",
        omit_empty_frames=True,
    )


def build_sr(
    source_images: Sequence[Dataset],
    seg: hd.seg.Segmentation,
    burden: Burden,
    series_number: int = 902,
) -> hd.sr.Comprehensive3DSR:
    """A TID 1500 Measurement Report of the lesion volume (ml) and longest axial diameter (mm)."""
    tracking = hd.sr.TrackingIdentifier(uid=generate_uid(), identifier="target lesion")
    # built by hand: ReferencedSegment.from_segmentation (highdicom 0.28) misses the segment
    # identification that a one-segment SEG keeps in its shared functional groups
    referenced_segment = hd.sr.ReferencedSegment(
        sop_class_uid=seg.SOPClassUID,
        sop_instance_uid=seg.SOPInstanceUID,
        segment_number=1,
        source_series=hd.sr.SourceSeriesForSegmentation(str(source_images[0].SeriesInstanceUID)),
    )
    measurements = [
        hd.sr.Measurement(
            name=codes.SCT.Volume,
            value=float(round(burden.volume_ml, 3)),
            unit=hd.sr.CodedConcept("ml", "UCUM", "milliliter"),
            algorithm_id=hd.sr.AlgorithmIdentification(ALGORITHM_NAME, ALGORITHM_VERSION),
        ),
        hd.sr.Measurement(
            name=codes.SCT.LongAxis,
            value=float(round(burden.longest_diameter_mm, 2)),
            unit=hd.sr.CodedConcept("mm", "UCUM", "millimeter"),
            algorithm_id=hd.sr.AlgorithmIdentification(ALGORITHM_NAME, ALGORITHM_VERSION),
        ),
    ]
    group = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking,
        referenced_segment=referenced_segment,
        finding_type=codes.SCT.Neoplasm,
        measurements=measurements,
    )
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(), name=ALGORITHM_NAME
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=hd.sr.CodedConcept("25045-6", "LN", "CT unspecified body region"),
        imaging_measurements=[group],
    )
    return hd.sr.Comprehensive3DSR(
        evidence=[*source_images, seg],
        content=report,
        series_instance_uid=generate_uid(),
        series_number=series_number,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer=DERIVED_MANUFACTURER,
        is_complete=True,
    )


def write_outputs(
    out_dir: str | Path,
    source_images: Sequence[Dataset],
    mask: np.ndarray,
    mask_source: MaskSource,
    burden: Burden,
    label: str = "GTV",
) -> tuple[Path, Path]:
    """Write ``lesion-seg.dcm`` and ``burden-sr.dcm`` into ``out_dir``; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seg = build_seg(source_images, mask, mask_source, label)
    sr = build_sr(source_images, seg, burden)
    seg_path, sr_path = out / "lesion-seg.dcm", out / "burden-sr.dcm"
    save_together([(seg, seg_path), (sr, sr_path)])
    return seg_path, sr_path


# ----------------------------------------------------------------------------- every lesion

IRTMON_SCHEME = "99IRTMON"


def _irtmon(value: str, meaning: str) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(value, IRTMON_SCHEME, meaning)


_ORGAN_CODE = {
    Organ.LUNG: codes.SCT.Lung,
    Organ.LIVER: codes.SCT.Liver,
    Organ.LYMPH_NODE: codes.SCT.LymphNode,
    Organ.ADRENAL: codes.SCT.AdrenalGland,
    Organ.BONE: codes.SCT.Bone,
    Organ.BRAIN: codes.SCT.Brain,
    Organ.KIDNEY: codes.SCT.Kidney,
    Organ.PLEURA: codes.SCT.Pleura,
    Organ.SOFT_TISSUE: codes.SCT.SoftTissue,
}
_ROLE_NAME = _irtmon("lesion-role", "RECIST lesion role")
_ROLE_CODE = {
    LesionRole.TARGET: codes.DCM.TargetLesionAtBaseline,
    LesionRole.NON_TARGET: codes.DCM.NonTargetLesionAtBaseline,
    LesionRole.NORMAL_NODE: codes.DCM.NonLesionAtBaseline,
    LesionRole.NEW_TARGET: _irtmon("new-target", "New target lesion"),
    LesionRole.NEW_NON_TARGET: _irtmon("new-non-target", "New non-target lesion"),
}
_RECIST_NAME = _irtmon("recist-response", "RECIST 1.1 timepoint response")
_IRECIST_NAME = _irtmon("irecist-response", "iRECIST timepoint response")
_RECIST_CODE = {r: _irtmon(f"RECIST-{r.value}", f"RECIST 1.1 {r.value}") for r in RecistResponse}
_TARGET_CODE = {
    RecistResponse.CR: codes.DCM.TargetLesionCompleteResponse,
    RecistResponse.PR: codes.DCM.TargetLesionPartialResponse,
    RecistResponse.SD: codes.DCM.TargetLesionStableDisease,
    RecistResponse.PD: codes.DCM.TargetLesionProgressiveDisease,
}
_NONTARGET_CODE = {
    RecistResponse.CR: codes.DCM.NonTargetLesionCompleteResponse,
    RecistResponse.NON_CR_NON_PD: codes.DCM.NonTargetLesionIncompleteResponseOrStableDisease,
    RecistResponse.PD: codes.DCM.NonTargetLesionProgressiveDisease,
}
_IN_FIELD_NAME = _irtmon("in-rt-field", "Within the radiotherapy field")
_SEEN_NAME = _irtmon("lesion-seen", "Lesion seen at this timepoint")
_SUM_NAME = _irtmon("sum-of-diameters", "Sum of diameters of target lesions")
_NEW_COUNT_NAME = _irtmon("new-lesions", "Number of new lesions present")
_MM = hd.sr.CodedConcept("mm", "UCUM", "millimeter")
_ML = hd.sr.CodedConcept("ml", "UCUM", "milliliter")
_COUNT = hd.sr.CodedConcept("{lesions}", "UCUM", "lesions")


@dataclass(frozen=True)
class LesionOutput:
    """One lesion as the SEG and SR report it (``mask`` None: a tracked lesion not seen now,
    reported in the SR with 0 mm and no segment)."""

    tracking_id: str
    tracking_uid: str
    label: str
    mask: np.ndarray | None
    source: MaskSource = MaskSource.SEG
    burden: Burden | None = None
    organ: Organ = Organ.OTHER
    role: LesionRole | None = None
    in_field: bool | None = None


@dataclass(frozen=True)
class TimepointOutput:
    """The RECIST 1.1 / iRECIST reading of the timepoint the lesions belong to."""

    order: int
    """0 for the baseline, 1 for the first follow-up..."""
    irecist: str
    """The iRECIST state label (iCR, iPR, iSD, iUPD, iCPD, iNE)."""
    recist: RecistResponse | None = None
    target: RecistResponse | None = None
    nontarget: RecistResponse | None = None
    sum_mm: float | None = 0.0
    """Sum of the target lesions' diameters; None when the targets are not evaluable (NE):
    the sum of those seen is not reported as the sum."""
    new_lesions: int = 0

    @property
    def name(self) -> str:
        return "baseline" if self.order == 0 else f"follow-up {self.order}"


def build_lesions_seg(
    source_images: Sequence[Dataset],
    lesions: Sequence[LesionOutput],
    series_number: int = 903,
) -> hd.seg.Segmentation:
    """A binary DICOM SEG with one segment per lesion that has a mask, in the given order.

    Each segment carries the lesion's tracking identifier and UID and, when known, its organ as
    the anatomic region. Segments read from the hospital's annotation are MANUAL; propagated
    and refined ones SEMIAUTOMATIC.

    Raises
    ------
    ValueError
        No lesion has a mask.
    """
    shown = [lesion for lesion in lesions if lesion.mask is not None and lesion.mask.any()]
    if not shown:
        raise ValueError("no lesion with a mask to write into a SEG")
    descriptions = []
    for number, lesion in enumerate(shown, start=1):
        manual = lesion.source in (MaskSource.RTSTRUCT, MaskSource.SEG, MaskSource.GIVEN)
        site = _ORGAN_CODE.get(lesion.organ)
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=number,
                segment_label=f"{lesion.tracking_id} {lesion.label}".strip()[:64] or "lesion",
                segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
                segmented_property_type=codes.SCT.Neoplasm,
                algorithm_type=(
                    hd.seg.SegmentAlgorithmTypeValues.MANUAL
                    if manual
                    else hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC
                ),
                algorithm_identification=None if manual else _algorithm(),
                tracking_id=lesion.tracking_id[:64] or f"lesion {number}",
                tracking_uid=lesion.tracking_uid or generate_uid(),
                anatomic_regions=[site] if site is not None else None,
            )
        )
    # only the slices that hold a lesion go to highdicom: the SEG omits empty frames anyway, and
    # checking and casting a full-size array per lesion was most of its cost
    masks = [np.asarray(lesion.mask, dtype=bool) for lesion in shown]
    if any(m.shape[0] != len(source_images) for m in masks):
        raise ValueError(
            f"a lesion mask does not have one slice per source image ({len(source_images)})"
        )
    seen = np.zeros(len(source_images), bool)
    for m in masks:  # the slices that hold a voxel, looked for on each mask's box only
        box = mask_box(m)
        if box is not None:
            seen[box[0]] |= m[box].any(axis=(1, 2))
    keep = np.flatnonzero(seen)
    pixels = _segment_pixels(masks, keep)
    return hd.seg.Segmentation(
        source_images=[source_images[int(i)] for i in keep],
        pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=generate_uid(),
        series_number=series_number,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer=DERIVED_MANUFACTURER,
        manufacturer_model_name=ALGORITHM_NAME,
        software_versions=ALGORITHM_VERSION,
        device_serial_number="irtmon-0",
        content_label="LESIONS",
        content_description=f"{len(shown)} lesions, one segment each",
        omit_empty_frames=True,
    )


def _segment_pixels(masks: Sequence[np.ndarray], keep: np.ndarray | None = None) -> np.ndarray:
    """The masks on the slices ``keep`` (every slice when None; each slice with a voxel of any
    mask must be kept) as highdicom's pixel array: a label map (segment ``k`` where mask ``k``
    is) when no two overlap, else the masks stacked on a last axis.

    Both give the same BINARY SEG (one frame per segment and slice); from a stack highdicom
    first sums it over the segments to learn whether they overlap, which on a five-lesion
    full-size follow-up cost more than the rest of the SEG (2026-12-04). The label map is made
    from each mask's box, straight on the kept slices, and overlap is found there: copying each
    whole mask's kept slices first was 14 ms and 75 MB of new memory on that follow-up."""
    rows = np.arange(masks[0].shape[0]) if keep is None else np.asarray(keep)
    at = np.full(masks[0].shape[0], -1)
    at[rows] = np.arange(len(rows))  # each slice's place among the kept ones
    labels = np.zeros((len(rows), *masks[0].shape[1:]), np.uint8 if len(masks) < 256 else np.uint16)
    for number, mask in enumerate(masks, start=1):
        box = mask_box(mask)
        if box is None:
            continue
        inside = mask[box]
        kept = at[box[0]] >= 0  # the box's slices without a kept place hold no voxel
        places = at[box[0]][kept]
        region = labels[places[0] : places[-1] + 1, box[1], box[2]]
        inside = inside[kept]
        if region[inside].any():
            return np.stack([m[rows] for m in masks], axis=-1)
        region[inside] = number
    return labels


def _timepoint_evaluations(tp: TimepointOutput) -> list[hd.sr.QualitativeEvaluation]:
    out = [
        hd.sr.QualitativeEvaluation(codes.DCM.ResponseEvaluationMethod, codes.DCM.RECIST1Point1),
        hd.sr.QualitativeEvaluation(
            _IRECIST_NAME, _irtmon(f"iRECIST-{tp.irecist}", f"iRECIST {tp.irecist}")
        ),
    ]
    if tp.recist is not None:
        out.append(hd.sr.QualitativeEvaluation(_RECIST_NAME, _RECIST_CODE[tp.recist]))
    return out


def _yes_no(value: bool) -> hd.sr.CodedConcept:
    return codes.SCT.Yes if value else codes.SCT.No


def build_lesions_sr(
    source_images: Sequence[Dataset],
    seg: hd.seg.Segmentation | None,
    lesions: Sequence[LesionOutput],
    timepoint: TimepointOutput,
    series_number: int = 904,
) -> hd.sr.Comprehensive3DSR:
    """A TID 1500 Measurement Report: one measurement group per lesion, one for the timepoint.

    A lesion with a mask is a volumetric group referencing its segment of ``seg`` (written by
    :func:`build_lesions_seg` from the same ``lesions``); a tracked lesion not seen now is a
    group without an image region, its long axis 0 mm. Each group holds the tracking
    identifier and UID, the finding site (the organ, when known), the RECIST role, long axis,
    short axis and volume, whether it lies in the radiotherapy field (when known), and the
    timepoint's RECIST 1.1 and iRECIST categories; the timepoint group adds the sum of
    diameters, the number of new lesions and the target and non-target responses.
    """
    time_point = hd.sr.TimePointContext(
        time_point=timepoint.name,
        time_point_type=codes.UMLS.Baseline if timepoint.order == 0 else codes.DCM.Posttreatment,
        time_point_order=timepoint.order + 1,
    )
    algorithm = hd.sr.AlgorithmIdentification(ALGORITHM_NAME, ALGORITHM_VERSION)
    series_uid = str(source_images[0].SeriesInstanceUID)
    groups: list = []
    segment = 0
    for lesion in lesions:
        has_mask = lesion.mask is not None and lesion.mask.any()
        burden = lesion.burden
        long_mm = burden.longest_diameter_mm if burden is not None and has_mask else 0.0
        short_mm = burden.short_axis_mm if burden is not None and has_mask else 0.0
        volume = burden.volume_ml if burden is not None and has_mask else 0.0
        measurements = [
            hd.sr.Measurement(
                name=codes.SCT.LongAxis,
                value=round(float(long_mm), 2),
                unit=_MM,
                algorithm_id=algorithm,
            ),
            hd.sr.Measurement(
                name=codes.SCT.ShortAxis,
                value=round(float(short_mm), 2),
                unit=_MM,
                algorithm_id=algorithm,
            ),
            hd.sr.Measurement(
                name=codes.SCT.Volume,
                value=round(float(volume), 4),
                unit=_ML,
                algorithm_id=algorithm,
            ),
        ]
        evaluations = [hd.sr.QualitativeEvaluation(_SEEN_NAME, _yes_no(has_mask))]
        if lesion.role is not None:
            evaluations.append(hd.sr.QualitativeEvaluation(_ROLE_NAME, _ROLE_CODE[lesion.role]))
        if lesion.in_field is not None:
            evaluations.append(
                hd.sr.QualitativeEvaluation(_IN_FIELD_NAME, _yes_no(lesion.in_field))
            )
        evaluations += _timepoint_evaluations(timepoint)
        site = _ORGAN_CODE.get(lesion.organ)
        common = {
            "tracking_identifier": hd.sr.TrackingIdentifier(
                uid=lesion.tracking_uid or generate_uid(),
                identifier=lesion.tracking_id or lesion.label or "lesion",
            ),
            "time_point_context": time_point,
            "finding_type": codes.SCT.Neoplasm,
            "finding_sites": [hd.sr.FindingSite(site)] if site is not None else None,
            "measurements": measurements,
            "qualitative_evaluations": evaluations,
        }
        if has_mask and seg is not None:
            segment += 1
            groups.append(
                hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
                    referenced_segment=hd.sr.ReferencedSegment(
                        sop_class_uid=seg.SOPClassUID,
                        sop_instance_uid=seg.SOPInstanceUID,
                        segment_number=segment,
                        source_series=hd.sr.SourceSeriesForSegmentation(series_uid),
                    ),
                    **common,
                )
            )
        else:
            groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(**common))
    summary = _timepoint_evaluations(timepoint)
    if timepoint.target in _TARGET_CODE:
        summary.append(
            hd.sr.QualitativeEvaluation(codes.DCM.CurrentResponse, _TARGET_CODE[timepoint.target])
        )
    if timepoint.nontarget in _NONTARGET_CODE:
        summary.append(
            hd.sr.QualitativeEvaluation(
                codes.DCM.CurrentResponse, _NONTARGET_CODE[timepoint.nontarget]
            )
        )
    groups.append(
        hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(
                uid=generate_uid(), identifier=f"{timepoint.name} response"
            ),
            time_point_context=time_point,
            measurements=[
                *(
                    []
                    if timepoint.sum_mm is None
                    else [
                        hd.sr.Measurement(
                            name=_SUM_NAME,
                            value=round(float(timepoint.sum_mm), 2),
                            unit=_MM,
                            algorithm_id=algorithm,
                        )
                    ]
                ),
                hd.sr.Measurement(
                    name=_NEW_COUNT_NAME,
                    value=float(timepoint.new_lesions),
                    unit=_COUNT,
                    algorithm_id=algorithm,
                ),
            ],
            qualitative_evaluations=summary,
        )
    )
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(), name=ALGORITHM_NAME
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=hd.sr.CodedConcept("25045-6", "LN", "CT unspecified body region"),
        imaging_measurements=groups,
    )
    sr = hd.sr.Comprehensive3DSR(
        evidence=[*source_images, *([seg] if seg is not None else [])],
        content=report,
        series_instance_uid=generate_uid(),
        series_number=series_number,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer=DERIVED_MANUFACTURER,
        is_complete=True,
    )
    scheme = Dataset()
    scheme.CodingSchemeDesignator = IRTMON_SCHEME
    scheme.CodingSchemeName = "irtmon response codes"
    scheme.CodingSchemeResponsibleOrganization = "irtmon"
    known = list(sr.get("CodingSchemeIdentificationSequence") or [])
    sr.CodingSchemeIdentificationSequence = [*known, scheme]
    return sr


def write_lesion_outputs(
    out_dir: str | Path,
    source_images: Sequence[Dataset],
    lesions: Sequence[LesionOutput],
    timepoint: TimepointOutput,
) -> tuple[Path | None, Path]:
    """Write ``lesions-seg.dcm`` (when a lesion has a mask) and ``lesions-sr.dcm``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seg = None
    seg_path = None
    if any(lesion.mask is not None and lesion.mask.any() for lesion in lesions):
        seg = build_lesions_seg(source_images, lesions)
        seg_path = out / "lesions-seg.dcm"
    sr = build_lesions_sr(source_images, seg, lesions, timepoint)
    sr_path = out / "lesions-sr.dcm"
    save_together([(sr, sr_path)] if seg is None else [(seg, seg_path), (sr, sr_path)])
    return seg_path, sr_path


def save_together(files: Sequence[tuple[Dataset, Path]]) -> None:
    """Write DICOM files all or none: each to ``NAME.part`` first, renamed only once every one
    is written, so a full disk or a crash leaves no truncated file and no SEG without its SR.

    Raises
    ------
    OSError
        A write failed (its partial files are removed first).
    """
    parts = [(ds, path, path.with_name(path.name + ".part")) for ds, path in files]
    try:
        for ds, _, part in parts:
            ds.save_as(part, enforce_file_format=True)
    except BaseException:
        for _, _, part in parts:
            part.unlink(missing_ok=True)
        raise
    for _, path, part in parts:
        os.replace(part, path)
