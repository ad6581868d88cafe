"""A several-lesion CT study for unit tests, written as real DICOM by other writers than ours:
the CT series by SimpleITK, the SEG by highdicom directly, the RTSTRUCT by pydicom.

A small "patient": a body of fat (-100 HU) in air, a lung (-850 HU) and a spine (400 HU), with
lesions as ellipsoids of soft tissue (40 HU), each with a known long axis (twice its largest
in-plane semi-axis), short axis (twice the other in-plane semi-axis, the ellipsoid's axes being
aligned with the image) and volume (4/3 pi a b c). ``shift_mm`` moves the whole patient (a
follow-up scan with the patient lying elsewhere).
"""

from __future__ import annotations

import locale
from dataclasses import dataclass, replace
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import SimpleITK as sitk  # noqa: N813
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import ExplicitVRLittleEndian, RTStructureSetStorage, generate_uid
from skimage import measure

from models.imaging.volume import Geometry, Volume

SPACING = (2.5, 0.9, 0.9)  # z, y, x mm
SHAPE = (26, 100, 100)
ORIGIN = (-40.0, -45.0, 100.0)  # x, y, z of the first voxel (LPS, mm)


@dataclass(frozen=True)
class Ellipsoid:
    label: str
    centre_mm: tuple[float, float, float]  # z, y, x from the first voxel
    semi_mm: tuple[float, float, float]  # z, y, x
    site: Code | None = None

    @property
    def long_mm(self) -> float:
        return 2 * max(self.semi_mm[1:])

    @property
    def short_mm(self) -> float:
        return 2 * min(self.semi_mm[1:])

    @property
    def volume_ml(self) -> float:
        c, b, a = self.semi_mm
        return 4 / 3 * np.pi * a * b * c / 1000

    def fraction(self, shape=SHAPE, spacing=SPACING, sub: int = 3) -> np.ndarray:
        """Partial-volume fraction of each voxel (``sub``^3 samples per voxel)."""
        offsets = (np.arange(sub) + 0.5) / sub - 0.5
        out = np.zeros(shape, np.float32)
        grids = [np.arange(n) * s for n, s in zip(shape, spacing, strict=True)]
        for dz in offsets:
            for dy in offsets:
                for dx in offsets:
                    z, y, x = np.meshgrid(
                        grids[0] + dz * spacing[0],
                        grids[1] + dy * spacing[1],
                        grids[2] + dx * spacing[2],
                        indexing="ij",
                    )
                    r = sum(
                        ((v - c) / s) ** 2
                        for v, c, s in zip((z, y, x), self.centre_mm, self.semi_mm, strict=True)
                    )
                    out += r <= 1.0
        return out / sub**3

    def mask(self, shape=SHAPE, spacing=SPACING) -> np.ndarray:
        return self.fraction(shape, spacing) >= 0.5

    def moved(self, shift_mm=(0.0, 0.0, 0.0), scale: float = 1.0) -> Ellipsoid:
        """The same lesion with the patient shifted by ``shift_mm`` (z, y, x) and its size
        scaled by ``scale``."""
        return replace(
            self,
            centre_mm=tuple(c + d for c, d in zip(self.centre_mm, shift_mm, strict=True)),
            semi_mm=tuple(scale * v for v in self.semi_mm),
        )


LESIONS = (
    Ellipsoid("GTV lung", (30.0, 28.0, 26.0), (9.0, 13.0, 10.0), codes.SCT.Lung),
    Ellipsoid("liver met", (30.0, 30.0, 66.0), (7.5, 9.0, 8.0), codes.SCT.Liver),
    Ellipsoid("LN subcarinal", (32.0, 66.0, 28.0), (6.0, 12.0, 8.5), codes.SCT.LymphNode),
    Ellipsoid("adrenal", (28.0, 68.0, 68.0), (6.0, 7.0, 6.0), codes.SCT.AdrenalGland),
    Ellipsoid("rib", (44.0, 48.0, 48.0), (5.0, 6.0, 7.5), codes.SCT.Bone),
)


def image(
    lesions=LESIONS, seed: int = 0, shape=SHAPE, spacing=SPACING, shift_mm=(0.0, 0.0, 0.0)
) -> np.ndarray:
    """HU volume: the patient's anatomy shifted by ``shift_mm``, soft-tissue lesions (placed
    where ``lesions`` say: shift them with :meth:`Ellipsoid.moved`) with partial volume, and
    a little noise."""
    _, y, x = np.meshgrid(
        *(np.arange(n) * s for n, s in zip(shape, spacing, strict=True)), indexing="ij"
    )
    y, x = y - shift_mm[1], x - shift_mm[2]
    hu = np.full(shape, -1000.0, np.float32)
    hu[((y - 45) / 44) ** 2 + ((x - 45) / 44) ** 2 <= 1] = -100.0  # body (fat)
    hu[((y - 30) / 20) ** 2 + ((x - 25) / 15) ** 2 <= 1] = -850.0  # lung
    hu[(y >= 70) & (y <= 85) & (x >= 40) & (x <= 50)] = 400.0  # spine
    for e in lesions:
        f = e.fraction(shape, spacing)
        hu = hu * (1 - f) + 40.0 * f
    rng = np.random.default_rng(seed)
    return (hu + rng.normal(0, 5, shape)).astype(np.float32)


def volume(hu: np.ndarray, spacing=SPACING, origin=ORIGIN) -> Volume:
    """``hu`` (an :func:`image`, by default) as an axial volume, without DICOM: on the study's
    grid, or with another ``spacing`` (z, y, x mm) and ``origin`` (x, y, z of the first voxel)."""
    geometry = Geometry(
        origin=origin,
        row_direction=(1.0, 0.0, 0.0),
        column_direction=(0.0, 1.0, 0.0),
        normal=(0.0, 0.0, 1.0),
        spacing=spacing,
        shape=hu.shape,
    )
    return Volume(hu, geometry)


def write_ct_with_simpleitk(
    folder: Path,
    hu: np.ndarray,
    spacing=SPACING,
    origin=ORIGIN,
    frame_of_reference: str | None = None,
    study_uid: str | None = None,
) -> list[Dataset]:
    """Write ``hu`` as a CT series with SimpleITK (GDCM); return the datasets read back."""
    folder.mkdir(parents=True, exist_ok=True)
    img = sitk.GetImageFromArray(np.round(hu).astype(np.int16))
    img.SetSpacing(tuple(float(s) for s in spacing[::-1]))
    img.SetOrigin(origin)
    study = study_uid or generate_uid()
    series = generate_uid()
    frame = frame_of_reference or generate_uid()
    tags = {
        "0010|0010": "Lesions^Test",
        "0010|0020": "psn-lesions",
        "0010|0030": "",
        "0010|0040": "O",
        "0020|000d": study,
        "0020|000e": series,
        "0020|0052": frame,
        "0020|0010": "1",
        "0008|0050": "A1",
        "0008|0090": "",
        "0008|0060": "CT",
        "0008|0016": "1.2.840.10008.5.1.4.1.1.2",
        "0008|0020": "20260301",
        "0008|0030": "101500",
        "0008|0021": "20260301",
        "0008|0031": "101500",
        "0008|0070": "SimpleITK",
        "0008|103e": "CT written by SimpleITK",
        "0020|0011": "2",
        "0020|0037": "1\\0\\0\\0\\1\\0",
        "0018|0050": str(spacing[0]),
        "0028|1052": "0",
        "0028|1053": "1",
        "0028|1054": "HU",
    }
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    ctype = locale.setlocale(locale.LC_CTYPE)  # GDCM's writer sets the C library's locale to C
    for k in range(img.GetDepth()):
        layer = img[:, :, k]
        for tag, value in tags.items():
            layer.SetMetaData(tag, value)
        layer.SetMetaData("0008|0018", generate_uid())
        layer.SetMetaData("0020|0013", str(k + 1))
        position = img.TransformIndexToPhysicalPoint((0, 0, k))
        layer.SetMetaData("0020|0032", "\\".join(f"{v:.4f}" for v in position))
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(layer)
    locale.setlocale(locale.LC_CTYPE, ctype)  # ... and leaves it, making later text I/O ASCII
    return sorted(
        (pydicom.dcmread(p) for p in folder.glob("slice*.dcm")),
        key=lambda ds: float(ds.ImagePositionPatient[2]),
    )


def write_seg_with_highdicom(
    path: Path,
    images: list[Dataset],
    masks: list[np.ndarray],
    lesions=LESIONS,
    fractional: bool = False,
    fractions: list[np.ndarray] | None = None,
) -> hd.seg.Segmentation:
    """One segment per lesion, written by highdicom (binary, or fractional from ``fractions``)."""
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=i + 1,
            segment_label=e.label,
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=codes.SCT.Neoplasm,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
            tracking_id=f"reader lesion {i + 1}",
            tracking_uid=generate_uid(),
            anatomic_regions=[e.site] if e.site is not None else None,
        )
        for i, e in enumerate(lesions)
    ]
    if fractional:
        assert fractions is not None
        pixels = np.stack(fractions, axis=-1).astype(np.float32)
        kind = hd.seg.SegmentationTypeValues.FRACTIONAL
    else:
        pixels = np.stack(masks, axis=-1).astype(bool)
        kind = hd.seg.SegmentationTypeValues.BINARY
    seg = hd.seg.Segmentation(
        source_images=images,
        pixel_array=pixels,
        segmentation_type=kind,
        segment_descriptions=descriptions,
        series_instance_uid=generate_uid(),
        series_number=50,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="reader workstation",
        manufacturer_model_name="tests",
        software_versions="1",
        device_serial_number="1",
        max_fractional_value=255,
        omit_empty_frames=True,
    )
    seg.save_as(path, enforce_file_format=True)
    return seg


def write_rtstruct(
    path: Path,
    images: list[Dataset],
    rois: list[tuple[str, np.ndarray]],
    frame_of_reference: str | None = None,
    roi_frames: dict[str, str] | None = None,
    interpreted: dict[str, str] | None = None,
    shift_mm: dict[str, tuple[float, float, float]] | None = None,
) -> Path:
    """An RTSTRUCT with one ROI per ``(name, mask)``: the 0.5 iso-line of each slice.

    ``roi_frames`` gives an ROI another frame of reference; ``shift_mm`` moves an ROI's
    contours (x, y, z mm), e.g. out of the image.
    """
    frame = frame_of_reference or str(images[0].FrameOfReferenceUID)
    meta = FileMetaDataset()
    sop = generate_uid()
    meta.MediaStorageSOPClassUID = RTStructureSetStorage
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = RTStructureSetStorage
    ds.SOPInstanceUID = sop
    ds.Modality = "RTSTRUCT"
    ds.StudyInstanceUID = images[0].StudyInstanceUID
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = images[0].PatientID
    ref = Dataset()
    ref.FrameOfReferenceUID = frame
    ds.ReferencedFrameOfReferenceSequence = DicomSequence([ref])
    spacing = [float(v) for v in images[0].PixelSpacing]
    x0, y0 = float(images[0].ImagePositionPatient[0]), float(images[0].ImagePositionPatient[1])
    structure, contours, observations = [], [], []
    for number, (name, mask) in enumerate(rois, start=1):
        roi = Dataset()
        roi.ROINumber = number
        roi.ROIName = name
        roi.ReferencedFrameOfReferenceUID = (roi_frames or {}).get(name, frame)
        structure.append(roi)
        obs = Dataset()
        obs.ObservationNumber = number
        obs.ReferencedROINumber = number
        obs.RTROIInterpretedType = (interpreted or {}).get(name, "GTV")
        obs.ROIInterpreter = ""
        observations.append(obs)
        dx, dy, dz = (shift_mm or {}).get(name, (0.0, 0.0, 0.0))
        items = []
        for k in range(mask.shape[0]):
            if not mask[k].any():
                continue
            z = float(images[k].ImagePositionPatient[2]) + dz
            for c in measure.find_contours(np.pad(mask[k].astype(float), 1), 0.5):
                rc = c - 1.0
                pts = np.column_stack(
                    [
                        x0 + dx + rc[:, 1] * spacing[1],
                        y0 + dy + rc[:, 0] * spacing[0],
                        np.full(len(rc), z),
                    ]
                )
                item = Dataset()
                item.ContourGeometricType = "CLOSED_PLANAR"
                item.NumberOfContourPoints = len(pts)
                item.ContourData = [f"{v:.3f}" for v in pts.ravel()]
                items.append(item)
        rc_item = Dataset()
        rc_item.ReferencedROINumber = number
        rc_item.ContourSequence = DicomSequence(items)
        contours.append(rc_item)
    ds.StructureSetROISequence = DicomSequence(structure)
    ds.ROIContourSequence = DicomSequence(contours)
    ds.RTROIObservationsSequence = DicomSequence(observations)
    ds.save_as(path, enforce_file_format=True)
    return path
