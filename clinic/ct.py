"""CT Image Storage series: one file per axial slice with full image-plane geometry.

:func:`ct_slice` builds one slice's dataset from a float image (HU, or mg/ml for an iodine
map); :func:`write_series` renders and writes a whole series. Pixel data are 16-bit unsigned
with a rescale, as most scanners store them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import CTImageStorage

from clinic.dicomio import StudyInfo, add_patient_study, add_series, new_dataset, uid
from clinic.phantom import Geometry


@dataclass(frozen=True)
class SeriesSpec:
    """What distinguishes one image series of a study."""

    series_uid: str
    number: int
    description: str
    image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "AXIAL")
    rescale_slope: float = 1.0
    rescale_intercept: float = -1024.0
    rescale_type: str | None = None
    window: tuple[float, float] = (40.0, 400.0)  # centre, width
    kvp: float | None = 120.0  # None: empty, as multi-energy images require
    units: tuple[str, str] = ("[hnsf'U]", "Hounsfield unit")  # UCUM code, meaning
    extra: Callable[[Dataset], None] | None = field(default=None, compare=False)


def ct_slice(
    image: np.ndarray,
    study: StudyInfo,
    series: SeriesSpec,
    geometry: Geometry,
    k: int,
    sop_instance_uid: str,
) -> Dataset:
    """Dataset of slice ``k`` (0 = most inferior) holding ``image`` (rows x cols, real units)."""
    ds = new_dataset(CTImageStorage, sop_instance_uid)
    add_patient_study(ds, study)
    add_series(
        ds,
        study,
        modality="CT",
        series_uid=series.series_uid,
        number=series.number,
        description=series.description,
        instance_number=k + 1,
    )
    ds.BodyPartExamined = "CHEST"
    ds.PatientPosition = "HFS"
    ds.AcquisitionNumber = 1
    ds.ContentDate = study.date
    ds.ContentTime = study.time
    ds.AcquisitionDate = study.date
    ds.AcquisitionTime = study.time
    ds.ImageType = list(series.image_type)
    ds.ImagePositionPatient = [f"{v:.4f}" for v in geometry.origin_mm(k)]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.PixelSpacing = [f"{geometry.pixel_mm:.6g}", f"{geometry.pixel_mm:.6g}"]
    ds.SliceThickness = f"{geometry.slice_mm:.6g}"
    ds.SpacingBetweenSlices = f"{geometry.slice_mm:.6g}"
    ds.SliceLocation = f"{geometry.z_mm(k):.4f}"
    ds.KVP = None if series.kvp is None else f"{series.kvp:g}"
    ds.ConvolutionKernel = "Br40"
    ds.ContrastBolusAgent = "Iohexol"
    ds.ContrastBolusRoute = "IV"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = image.shape
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = f"{series.rescale_intercept:g}"
    ds.RescaleSlope = f"{series.rescale_slope:g}"
    if series.rescale_type:
        ds.RescaleType = series.rescale_type
    ds.WindowCenter = f"{series.window[0]:g}"
    ds.WindowWidth = f"{series.window[1]:g}"
    stored = np.rint((image - series.rescale_intercept) / series.rescale_slope)
    ds.PixelData = np.clip(stored, 0, 65535).astype("<u2").tobytes()
    ds.BurnedInAnnotation = "NO"
    ds.RealWorldValueMappingSequence = DicomSequence([_real_world_mapping(series)])
    if series.extra is not None:
        series.extra(ds)
    return ds


def _real_world_mapping(series: SeriesSpec) -> Dataset:
    """Real World Value Mapping of stored values to the series' physical unit."""
    unit = Dataset()
    unit.CodeValue, unit.CodeMeaning = series.units
    unit.CodingSchemeDesignator = "UCUM"
    item = Dataset()
    item.LUTExplanation = series.units[1]
    item.LUTLabel = series.units[1][:16].upper().replace(" ", "_")
    item.MeasurementUnitsCodeSequence = DicomSequence([unit])
    item.RealWorldValueFirstValueMapped = 0
    item.RealWorldValueLastValueMapped = 65535
    item.RealWorldValueIntercept = series.rescale_intercept
    item.RealWorldValueSlope = series.rescale_slope
    return item


def slice_uid(series_uid: str, k: int) -> str:
    """Deterministic SOP Instance UID of slice ``k`` of a series."""
    return uid(series_uid, "slice", k)


def write_series(
    folder: Path,
    images: Callable[[int], np.ndarray],
    study: StudyInfo,
    series: SeriesSpec,
    geometry: Geometry,
) -> list[Dataset]:
    """Write slices ``images(k)`` as ``folder/IM-0001.dcm`` ...; return the datasets (no pixels)."""
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Dataset] = []
    for k in range(geometry.n_slices):
        ds = ct_slice(images(k), study, series, geometry, k, slice_uid(series.series_uid, k))
        ds.save_as(folder / f"IM-{k + 1:04d}.dcm", enforce_file_format=True)
        del ds.PixelData
        written.append(ds)
    return written
