"""Small synthetic CT series written as real DICOM files, for fast unit tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

STUDY_UID = "1.2.826.0.1.3680043.8.498.1"
FOR_UID = "1.2.826.0.1.3680043.8.498.2"


def phantom(
    shape: tuple[int, int, int] = (24, 48, 48),
    spacing: tuple[float, float, float] = (2.0, 1.0, 1.0),
    centre_mm: tuple[float, float, float] = (24.0, 24.0, 24.0),
    semi_axes_mm: tuple[float, float, float] = (8.0, 12.0, 10.0),
    seed: int = 0,
    noise: float = 5.0,
) -> tuple[np.ndarray, np.ndarray]:
    """(HU array, lesion mask): a soft-tissue ellipsoid (40 HU) in lung (-850 HU)."""
    z, y, x = np.meshgrid(
        *(np.arange(n) * s for n, s in zip(shape, spacing, strict=True)), indexing="ij"
    )
    cz, cy, cx = centre_mm
    c, b, a = semi_axes_mm
    mask = ((x - cx) / a) ** 2 + ((y - cy) / b) ** 2 + ((z - cz) / c) ** 2 <= 1.0
    rng = np.random.default_rng(seed)
    hu = np.where(mask, 40.0, -850.0) + rng.normal(0, noise, shape)
    return hu.astype(np.float32), mask


def ct_datasets(
    hu: np.ndarray,
    spacing: tuple[float, float, float] = (2.0, 1.0, 1.0),
    series_uid: str | None = None,
    modality: str = "CT",
    edit: Callable[[int, Dataset], None] | None = None,
    z0: float = -20.0,
) -> list[Dataset]:
    """One CT Image Storage dataset per slice (stored = HU + 1024, intercept -1024)."""
    series_uid = series_uid or generate_uid()
    out = []
    for k in range(hu.shape[0]):
        sop = generate_uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = sop
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = sop
        ds.PatientID = "psn-0000000000000000"
        ds.PatientName = "psn^"
        ds.PatientBirthDate = ""
        ds.PatientSex = "O"
        ds.StudyInstanceUID = STUDY_UID
        ds.StudyDate = "20260101"
        ds.StudyTime = "120000"
        ds.StudyID = "1"
        ds.AccessionNumber = "A1"
        ds.ReferringPhysicianName = ""
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = 1
        ds.SeriesDescription = "synthetic CT"
        ds.Modality = modality
        ds.Manufacturer = "irtmon-tests"
        ds.ManufacturerModelName = "synth"
        ds.FrameOfReferenceUID = FOR_UID
        ds.PositionReferenceIndicator = ""
        ds.InstanceNumber = k + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ConvolutionKernel = "Br40"
        ds.ImagePositionPatient = [0.0, 0.0, z0 + k * spacing[0]]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing = [spacing[1], spacing[2]]
        ds.SliceThickness = spacing[0]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = hu.shape[1:]
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.RescaleIntercept = -1024
        ds.RescaleSlope = 1
        ds.RescaleType = "HU"
        ds.KVP = 120
        ds.AcquisitionNumber = 1
        ds.PatientPosition = "HFS"
        ds.ContentDate = "20260101"
        ds.ContentTime = "120000"
        stored = np.clip(np.round(hu[k] + 1024), 0, 65535).astype(np.uint16)
        ds.PixelData = stored.tobytes()
        if edit is not None:
            edit(k, ds)
        out.append(ds)
    return out


def write_series(folder: Path, datasets: list[Dataset], shuffle_names: bool = True) -> Path:
    """Write ``datasets`` to ``folder`` with file names in scrambled order."""
    folder.mkdir(parents=True, exist_ok=True)
    n = len(datasets)
    order = np.random.default_rng(1).permutation(n) if shuffle_names else np.arange(n)
    for name, ds in zip(order, datasets, strict=True):
        ds.save_as(folder / f"IM{name:04d}.dcm", enforce_file_format=True)
    return folder


def write_rtstruct(
    path: Path,
    images: list[Dataset],
    mask: np.ndarray,
    spacing: tuple[float, float, float],
    roi_name: str = "GTV",
) -> Path:
    """A minimal RTSTRUCT with the outline of ``mask`` on each slice (marching squares)."""
    from skimage import measure

    meta = FileMetaDataset()
    sop = generate_uid()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = sop
    ds.Modality = "RTSTRUCT"
    ds.StudyInstanceUID = images[0].StudyInstanceUID
    ds.SeriesInstanceUID = generate_uid()
    ds.FrameOfReferenceUID = FOR_UID
    roi = Dataset()
    roi.ROINumber = 1
    roi.ROIName = roi_name
    roi.ReferencedFrameOfReferenceUID = FOR_UID
    ds.StructureSetROISequence = DicomSequence([roi])
    contours = []
    for k in range(mask.shape[0]):
        if not mask[k].any():
            continue
        z = float(images[k].ImagePositionPatient[2])
        for c in measure.find_contours(np.pad(mask[k].astype(float), 1), 0.5):
            rc = c - 1.0
            pts = np.column_stack(
                [rc[:, 1] * spacing[2], rc[:, 0] * spacing[1], np.full(len(rc), z)]
            )
            item = Dataset()
            item.ContourGeometricType = "CLOSED_PLANAR"
            item.NumberOfContourPoints = len(pts)
            item.ContourData = [f"{v:.3f}" for v in pts.ravel()]
            contours.append(item)
    rc_item = Dataset()
    rc_item.ReferencedROINumber = 1
    rc_item.ContourSequence = DicomSequence(contours)
    ds.ROIContourSequence = DicomSequence([rc_item])
    ds.save_as(path, enforce_file_format=True)
    return path
