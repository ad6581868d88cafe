"""Objects for the hospital: a DICOM SEG of the lesion and a TID 1500 SR of its burden.

Both are written with highdicom and reference the CT series they were computed on, so a PACS
stores them beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from models.imaging.burden import Burden
from models.imaging.lesion import MaskSource

__all__ = [
    "ALGORITHM_NAME",
    "ALGORITHM_VERSION",
    "DERIVED_MANUFACTURER",
    "build_seg",
    "build_sr",
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
    seg.save_as(seg_path, enforce_file_format=True)
    sr.save_as(sr_path, enforce_file_format=True)
    return seg_path, sr_path
