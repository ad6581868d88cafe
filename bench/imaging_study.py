"""Benchmark: time per CT study (read, lesion, features) against a plain SimpleITK read.

Run ``python -m bench.imaging_study`` (``--help`` for options). It writes a realistic study
(512 x 512 x 200 slices by default: a body with lungs and a soft-tissue lesion, a planning CT
with a DICOM SEG of the lesion and a follow-up CT, shifted and rotated, whose lesion has grown)
into a temporary folder, then measures in the same run:

* the baseline: SimpleITK's ``ImageSeriesReader`` reading the planning series (GDCM);
* ``read_series`` alone (pydicom, ordering and checks, HU);
* the planning study: read + lesion from the SEG + burden + radiomics + peritumoural ring;
* the follow-up study: read + registration to the planning CT + propagation and refinement +
  burden + radiomics + ring.

Each is the median of ``--repeat`` runs after one warm-up read (files in the page cache). It
prints a table and the ratios to the SimpleITK read, and ``--json`` writes them to a file.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import SimpleITK as sitk  # noqa: N813

from models.imaging import analyse_acquisition, read_series
from models.imaging.lesion import MaskSource
from models.imaging.writers import build_seg


def _phantom(
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    shift: tuple[float, float],
    yaw_deg: float,
    lesion_scale: float,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    nz, ny, nx = shape
    rng = np.random.default_rng(seed)
    y = (np.arange(ny) - ny / 2) * spacing[1]
    x = (np.arange(nx) - nx / 2) * spacing[2]
    yy, xx = np.meshgrid(y, x, indexing="ij")
    th = np.radians(yaw_deg)
    px = np.cos(th) * (xx - shift[1]) + np.sin(th) * (yy - shift[0])
    py = -np.sin(th) * (xx - shift[1]) + np.cos(th) * (yy - shift[0])
    body = (px / 160) ** 2 + (py / 110) ** 2 <= 1
    lungs = ((np.abs(px) - 70) / 55) ** 2 + ((py + 5) / 75) ** 2 <= 1
    spine = (px / 18) ** 2 + ((py - 75) / 16) ** 2 <= 1
    hu = np.full(shape, -1000.0, np.float32)
    mask = np.zeros(shape, bool)
    a, b, c = 16.0 * lesion_scale, 13.0 * lesion_scale, 11.0 * lesion_scale
    for k in range(nz):
        z = (k - nz / 2) * spacing[0]
        s = np.where(body, 40.0, -1000.0)
        if abs(z) < 120:
            s = np.where(lungs, -860.0, s)
        s = np.where(spine, 700.0, s)
        les = ((px + 70) / a) ** 2 + ((py + 10) / b) ** 2 + (z / c) ** 2 <= 1
        s = np.where(les, 45.0, s)
        mask[k] = les
        hu[k] = s
    hu += rng.normal(0, 12, shape).astype(np.float32)
    return hu, mask


def _write(folder: Path, hu: np.ndarray, spacing: tuple[float, float, float], seed: int) -> list:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    series, study, frame = generate_uid(), "1.2.826.0.1.3680043.8.498.77", generate_uid()
    nz, ny, nx = hu.shape
    out = []
    for k in range(nz):
        sop = generate_uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = sop
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, sop
        ds.PatientID, ds.PatientName = "psn-bench", "psn-bench^"
        ds.PatientBirthDate, ds.PatientSex = "", "O"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20260101", "1200", "1", ""
        ds.ReferringPhysicianName = ""
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", seed, k + 1
        ds.Manufacturer, ds.ManufacturerModelName = "irtmon-bench", "synthetic"
        ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = frame, ""
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ConvolutionKernel = "Br40"
        ds.ImagePositionPatient = [
            -(nx / 2) * spacing[2],
            -(ny / 2) * spacing[1],
            (k - nz / 2) * spacing[0],
        ]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [spacing[1], spacing[2]]
        ds.SliceThickness = spacing[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = ny, nx
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
        ds.PixelData = np.clip(np.round(hu[k] + 1024), 0, 65535).astype(np.uint16).tobytes()
        ds.save_as(folder / f"IM{(k * 7919) % nz:05d}-{k}.dcm", enforce_file_format=True)
        out.append(ds)
    return out


def _median_time(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _sitk_read(folder: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    uid = reader.GetGDCMSeriesIDs(str(folder))[0]
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder), uid))
    return reader.Execute()


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run the benchmark; return the timings (seconds) and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512, help="rows = columns (default 512)")
    parser.add_argument("--slices", type=int, default=200, help="slices (default 200)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per measure (median)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    spacing = (1.5, 350.0 / args.size, 350.0 / args.size)
    shape = (args.slices, args.size, args.size)
    with tempfile.TemporaryDirectory(prefix="irtmon-bench-") as tmp:
        root = Path(tmp)
        print(f"writing a {args.size} x {args.size} x {args.slices} planning CT and follow-up...")
        hu0, mask0 = _phantom(shape, spacing, (0.0, 0.0), 0.0, 1.0, 1)
        images = _write(root / "planning" / "CT", hu0, spacing, 1)
        build_seg(images, mask0, MaskSource.SEG).save_as(
            root / "planning" / "SEG.dcm", enforce_file_format=True
        )
        hu1, _ = _phantom(shape, spacing, (6.0, -4.0), 2.0, 1.15, 2)
        _write(root / "followup" / "CT", hu1, spacing, 2)
        del hu0, hu1, images

        _sitk_read(root / "planning" / "CT")  # warm the page cache for both readers
        results: dict[str, float] = {}
        results["sitk_read_s"] = _median_time(
            lambda: _sitk_read(root / "planning" / "CT"), args.repeat
        )
        results["irtmon_read_s"] = _median_time(
            lambda: read_series(root / "planning" / "CT"), args.repeat
        )
        planning = analyse_acquisition(root / "planning")
        results["planning_study_s"] = _median_time(
            lambda: analyse_acquisition(root / "planning"), args.repeat
        )
        baseline = planning.as_baseline()
        analyse_acquisition(root / "followup", baseline=baseline)  # warm
        results["followup_study_s"] = _median_time(
            lambda: analyse_acquisition(root / "followup", baseline=baseline), args.repeat
        )
        for key in ("irtmon_read_s", "planning_study_s", "followup_study_s"):
            results[key.replace("_s", "_ratio")] = results[key] / results["sitk_read_s"]

    print(f"\n{'measure':28s} {'seconds':>9s} {'x SimpleITK read':>17s}")
    print(f"{'SimpleITK series read':28s} {results['sitk_read_s']:9.2f} {1.0:17.1f}")
    for key, label in (
        ("irtmon_read_s", "irtmon read_series"),
        ("planning_study_s", "planning (SEG) study"),
        ("followup_study_s", "follow-up (propagated) study"),
    ):
        print(f"{label:28s} {results[key]:9.2f} {results[key.replace('_s', '_ratio')]:17.1f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
