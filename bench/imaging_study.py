"""Benchmark: time per CT study (read, lesions, features) against a plain SimpleITK read.

Run ``python -m bench.imaging_study`` (``--help`` for options). It writes a realistic study
(512 x 512 x 200 slices by default: a body with lungs, mediastinal and retroperitoneal fat, a
liver and a spine, and five lesions of known size; a planning CT with a DICOM SEG of one lesion
and one of all five, and a follow-up CT, the patient shifted and turned, whose lesions have
grown or shrunk) into a temporary folder, then measures in the same run:

* the baseline: SimpleITK's ``ImageSeriesReader`` reading the planning series (GDCM);
* ``read_series`` alone (pydicom, ordering and checks, HU);
* one lesion (:func:`~models.imaging.analyse_acquisition`): the planning study read from its
  SEG, and the follow-up propagated by registration;
* five lesions (:func:`~models.imaging.study.analyse_study`): the planning study from its SEG;
  the follow-up from the reader's SEG, its lesions matched to the baseline's (one rigid
  registration: a research cohort's usual follow-up); and the follow-up with every lesion
  propagated by the study's one registration, with and without writing the SEG and SR (the
  worker writes them; a cohort does not need them);
* as the worker scores them (``IRTMON_RADIOMICS=auto`` and a virtual biopsy that reads no
  radiomics, as the shipped one): one and five lesions propagated, the SEG and SR written, no
  radiomics or peritumoural ring; their lesions checked identical to the full run's.

Each measure runs once to warm up (imports, files in the page cache), then ``--repeat`` rounds
run every measure once each, in turn (interleaved since 2026-12-04: this machine's speed drifts
by a quarter between minutes, and measures timed back to back each met a different phase). Each
is reported as its median wall time with the CPU seconds of the process (all threads) beside it,
and its ratio as the median over the rounds of its time over that round's SimpleITK read. The
follow-up's diameters are
compared with the truth (the phantom's ellipsoids), and the five-lesion follow-up is run twice
to check that re-runs give identical numbers. Cohort throughput is reported as
``3600 x cores / CPU seconds per study``. It prints a table and ``--json`` writes the results.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk  # noqa: N813

from models.imaging import analyse_acquisition, read_series
from models.imaging.lesion import MaskSource
from models.imaging.study import analyse_study
from models.imaging.writers import LesionOutput, build_lesions_seg, build_seg
from schemas.enums import Organ

LUNG_Z_MM = 100.0
"""The lungs span |z| below this; the liver and the retroperitoneum lie beneath."""


@dataclass(frozen=True)
class Lesion:
    """An ellipsoid lesion, its axes aligned with the patient's: centre and semi-axes (x, y, z
    mm; x, y from the centre of the slice, z from the centre of the scan), its HU, and how it
    changes at the follow-up (``scale``)."""

    label: str
    organ: Organ
    centre: tuple[float, float, float]
    semi: tuple[float, float, float]
    hu: float
    scale: float

    def long_mm(self, scale: float = 1.0) -> float:
        """True RECIST long axis (the largest in-plane axis)."""
        return 2 * max(self.semi[:2]) * scale

    def short_mm(self, scale: float = 1.0) -> float:
        """True short axis (the other in-plane axis)."""
        return 2 * min(self.semi[:2]) * scale


LESIONS = (
    Lesion("GTV lung", Organ.LUNG, (-70.0, -10.0, 0.0), (16.0, 13.0, 11.0), 45.0, 0.75),
    Lesion("lung nodule", Organ.LUNG, (80.0, -35.0, 50.0), (9.0, 8.0, 8.0), 40.0, 1.0),
    Lesion("LN mediastinal", Organ.LYMPH_NODE, (0.0, -35.0, 20.0), (9.0, 14.0, 9.0), 40.0, 1.2),
    Lesion("liver met", Organ.LIVER, (-60.0, 10.0, -125.0), (14.0, 12.0, 11.0), 0.0, 1.15),
    Lesion("adrenal", Organ.ADRENAL, (50.0, 45.0, -120.0), (10.0, 9.0, 8.0), 40.0, 0.9),
)
"""Five lesions in five sites: two in the lungs, a node in mediastinal fat, a hypodense liver
metastasis and an adrenal lesion in retroperitoneal fat. The first is the irradiated one."""


def _rotate(
    x: np.ndarray, y: np.ndarray, shift: tuple[float, float, float], yaw_deg: float
) -> tuple[np.ndarray, np.ndarray]:
    """Patient coordinates of scanner points (the patient moved by ``shift``, turned by
    ``yaw_deg`` about the scanner axis)."""
    th = np.radians(yaw_deg)
    px = np.cos(th) * (x - shift[0]) + np.sin(th) * (y - shift[1])
    py = -np.sin(th) * (x - shift[0]) + np.cos(th) * (y - shift[1])
    return px, py


def phantom(
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    shift: tuple[float, float, float],
    yaw_deg: float,
    lesions: tuple[Lesion, ...],
    follow_up: bool,
    seed: int,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """HU volume ``[z, y, x]`` and each lesion's mask (partial-volume fraction >= 0.5)."""
    nz, ny, nx = shape
    rng = np.random.default_rng(seed)
    y = (np.arange(ny) - ny / 2) * spacing[1]
    x = (np.arange(nx) - nx / 2) * spacing[2]
    yy, xx = np.meshgrid(y, x, indexing="ij")
    px, py = _rotate(xx, yy, shift, yaw_deg)
    body = (px / 160) ** 2 + (py / 110) ** 2 <= 1
    lungs = ((np.abs(px) - 70) / 55) ** 2 + ((py + 5) / 75) ** 2 <= 1
    mediastinum = (px / 22) ** 2 + ((py + 20) / 45) ** 2 <= 1
    spine = (px / 18) ** 2 + ((py - 75) / 16) ** 2 <= 1
    retro = ((px - 50) / 38) ** 2 + ((py - 45) / 30) ** 2 <= 1
    hu = np.empty(shape, np.float32)
    for k in range(nz):
        z = (k - nz / 2) * spacing[0] - shift[2]
        s = np.where(body, 40.0, -1000.0)
        if abs(z) < LUNG_Z_MM:
            s = np.where(lungs, -860.0, s)
            s = np.where(mediastinum, -100.0, s)
        else:
            liver = ((px + 50) / 95) ** 2 + ((py - 5) / 70) ** 2 + ((z + 130) / 45) ** 2 <= 1
            s = np.where(liver, 60.0, s)
            if abs(z + 120) < 40:
                s = np.where(retro, -100.0, s)
        s = np.where(spine, 700.0, s)
        hu[k] = s
    masks = []
    for lesion in lesions:
        frac, box = _lesion_fraction(shape, spacing, shift, yaw_deg, lesion, follow_up)
        hu[box] = hu[box] * (1 - frac) + lesion.hu * frac
        mask = np.zeros(shape, bool)
        mask[box] = frac >= 0.5
        masks.append(mask)
    hu += rng.normal(0, 12, shape).astype(np.float32)
    return hu, masks


def _lesion_fraction(
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    shift: tuple[float, float, float],
    yaw_deg: float,
    lesion: Lesion,
    follow_up: bool,
    sub: int = 3,
) -> tuple[np.ndarray, tuple[slice, ...]]:
    """Partial-volume fraction of the lesion (``sub``^3 samples a voxel) in its bounding box."""
    scale = lesion.scale if follow_up else 1.0
    semi = np.asarray(lesion.semi) * scale
    th = np.radians(yaw_deg)
    cx, cy, cz = lesion.centre
    # the lesion centre in scanner coordinates (inverse of _rotate)
    sx = np.cos(th) * cx - np.sin(th) * cy + shift[0]
    sy = np.sin(th) * cx + np.cos(th) * cy + shift[1]
    sz = cz + shift[2]
    reach = float(semi.max()) + 3.0
    centre_idx = (sz / spacing[0] + shape[0] / 2, sy / spacing[1] + shape[1] / 2)
    centre_idx += (sx / spacing[2] + shape[2] / 2,)
    lo = [max(0, int(c - reach / s)) for c, s in zip(centre_idx, spacing, strict=True)]
    hi = [
        min(n, int(c + reach / s) + 2) for c, s, n in zip(centre_idx, spacing, shape, strict=True)
    ]
    if any(b <= a for a, b in zip(lo, hi, strict=True)):
        raise ValueError(f"{lesion.label} lies outside a scan of {shape}: give more slices")
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    offsets = (np.arange(sub) + 0.5) / sub - 0.5
    frac = np.zeros([b - a for a, b in zip(lo, hi, strict=True)], np.float32)
    kz = np.arange(lo[0], hi[0])[:, None, None]
    ky = np.arange(lo[1], hi[1])[None, :, None]
    kx = np.arange(lo[2], hi[2])[None, None, :]
    for dz in offsets:
        for dy in offsets:
            for dx in offsets:
                z = (kz + dz - shape[0] / 2) * spacing[0] - shift[2]
                y = (ky + dy - shape[1] / 2) * spacing[1]
                x = (kx + dx - shape[2] / 2) * spacing[2]
                px, py = _rotate(x, y, shift, yaw_deg)
                r = ((px - cx) / semi[0]) ** 2 + ((py - cy) / semi[1]) ** 2
                frac += r + ((z - cz) / semi[2]) ** 2 <= 1.0
    return frac / sub**3, box


def write_series(folder: Path, hu: np.ndarray, spacing: tuple[float, float, float], seed: int):
    """Write ``hu`` as a CT series with pydicom (uncompressed, shuffled file names)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    series, study, frame = generate_uid(), generate_uid(), generate_uid()
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


MOVE_MM, YAW_DEG = (6.0, -4.0, 3.0), 2.0
"""How the patient lies at the follow-up: shifted (x, y, z mm) and turned about the scanner
axis."""


def write_study(
    root: Path, shape: tuple[int, int, int], spacing: tuple[float, float, float]
) -> tuple[Path, Path, Path, Path]:
    """Write the planning CT, its SEGs (the GTV alone; all five lesions), the follow-up CT and
    the reader's SEG of its five lesions (``annotations/followup-seg.dcm``, outside the study
    folder so the propagated measures do not find it) under ``root`` (kept when ``root/done``
    says they are there already); the first four paths."""
    planning, followup = root / "planning" / "CT", root / "followup" / "CT"
    seg1, seg5 = root / "annotations" / "gtv-seg.dcm", root / "annotations" / "lesions-seg.dcm"
    done = root / "done"
    stamp = repr((shape, spacing, "followup-seg"))
    if done.is_file() and done.read_text() == stamp:
        return planning, followup, seg1, seg5
    print(f"writing a {shape[2]} x {shape[1]} x {shape[0]} planning CT and follow-up...")
    hu0, masks0 = phantom(shape, spacing, (0.0, 0.0, 0.0), 0.0, LESIONS, False, 1)
    images = write_series(planning, hu0, spacing, 1)
    seg1.parent.mkdir(parents=True, exist_ok=True)
    build_seg(images, masks0[0], MaskSource.SEG).save_as(seg1, enforce_file_format=True)
    outputs = [
        LesionOutput("", "", e.label, m, MaskSource.SEG, organ=e.organ)
        for e, m in zip(LESIONS, masks0, strict=True)
    ]
    build_lesions_seg(images, outputs).save_as(seg5, enforce_file_format=True)
    del hu0, images, masks0, outputs
    hu1, masks1 = phantom(shape, spacing, MOVE_MM, YAW_DEG, LESIONS, True, 2)
    images = write_series(followup, hu1, spacing, 2)
    outputs = [
        LesionOutput("", "", e.label, m, MaskSource.SEG, organ=e.organ)
        for e, m in zip(LESIONS, masks1, strict=True)
    ]
    build_lesions_seg(images, outputs).save_as(
        root / "annotations" / "followup-seg.dcm", enforce_file_format=True
    )
    done.write_text(stamp)
    return planning, followup, seg1, seg5


def _rounds(
    measures: dict[str, Callable[[], Any]], repeat: int
) -> dict[str, list[tuple[float, float]]]:
    """Wall and CPU seconds (process, all threads) of every measure, ``repeat`` rounds, each
    round every measure once in order: a machine whose speed drifts between minutes slows every
    measure of a round alike, where one measure's repeats run back to back would each meet a
    different phase."""
    out: dict[str, list[tuple[float, float]]] = {key: [] for key in measures}
    for n in range(repeat):
        for key, fn in measures.items():
            w, c = time.perf_counter(), time.process_time()
            fn()
            out[key].append((time.perf_counter() - w, time.process_time() - c))
        line = ", ".join(f"{key} {runs[-1][0]:.2f}" for key, runs in out.items())
        print(f"  round {n + 1}/{repeat}: {line} s", flush=True)
    return out


def _ratios(rounds: dict[str, list[tuple[float, float]]]) -> dict[str, float]:
    """Each measure's median, over the rounds, of its wall time over that round's SimpleITK
    read (``sitk_read``)."""
    reads = [w for w, _ in rounds["sitk_read"]]
    return {
        key: statistics.median(w / r for (w, _), r in zip(runs, reads, strict=True))
        for key, runs in rounds.items()
    }


def _sitk_read(folder: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    uid = reader.GetGDCMSeriesIDs(str(folder))[0]
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder), uid))
    return reader.Execute()


def _numbers(result: Any) -> list[Any]:
    """Every number a study result holds (lesions, burden, features, registration), in order:
    what must be identical on a re-run."""
    out: list[Any] = [sorted((k, v.value) for k, v in result.features.items())]
    for r in getattr(result, "lesions", []):
        out.append((r.tracking_uid, r.burden, sorted((k, v.value) for k, v in r.features.items())))
        out.append(r.quality)
    out.append(result.provenance.get("registration"))
    return out


def _numbers_of_lesions(result: Any) -> list[Any]:
    """Each lesion's tracking, burden and registration quality: what features do not change."""
    out: list[Any] = [(r.tracking_uid, r.burden, r.quality) for r in result.lesions]
    return [*out, result.provenance.get("registration")]


def _errors(lesions, results, scale: bool) -> dict[str, dict[str, float]]:
    """Per lesion: measured and true long / short axis and the relative errors (%)."""
    out = {}
    for lesion, r in zip(lesions, results, strict=True):
        s = lesion.scale if scale else 1.0
        long_true, short_true = lesion.long_mm(s), lesion.short_mm(s)
        out[lesion.label] = {
            "long_mm": round(r.longest_diameter_mm, 2),
            "long_true_mm": round(long_true, 2),
            "long_error_pct": round(100 * (r.longest_diameter_mm / long_true - 1), 2),
            "short_mm": round(r.short_axis_mm, 2),
            "short_true_mm": round(short_true, 2),
            "short_error_pct": round(100 * (r.short_axis_mm / short_true - 1), 2),
        }
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; return the timings (seconds), ratios, errors and throughput."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512, help="rows = columns (default 512)")
    parser.add_argument("--slices", type=int, default=200, help="slices (default 200)")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of every measure (medians)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--dir", type=Path, help="write the study here and keep it (reused when already there)"
    )
    args = parser.parse_args(argv)

    spacing = (1.5, 350.0 / args.size, 350.0 / args.size)
    shape = (args.slices, args.size, args.size)
    results: dict[str, Any] = {"shape": list(shape), "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="irtmon-bench-") as tmp:
        root = args.dir or Path(tmp)
        planning, followup, seg1, seg5 = write_study(root, shape, spacing)

        _sitk_read(planning)  # warm the page cache for every reader
        _sitk_read(followup)
        measures: dict[str, Callable[[], Any]] = {}

        def timed(key: str, fn: Callable[[], Any]) -> Any:
            """Run ``fn`` once (the warm-up: imports, caches; its result is returned for the
            measures that build on it) and keep it for the timed rounds."""
            measures[key] = fn
            return fn()

        timed("sitk_read", lambda: _sitk_read(planning))
        timed("irtmon_read", lambda: read_series(planning))
        one_base = timed("one_contours", lambda: analyse_acquisition(planning, lesion_path=seg1))
        one_fu = timed(
            "one_propagated",
            lambda: analyse_acquisition(followup, baseline=one_base.as_baseline()),
        )
        base = timed("five_contours", lambda: analyse_study(planning, lesion_paths=[seg5]))

        def five_followup(output_dir: Path | None = None, radiomics: bool = True):
            return analyse_study(
                followup,
                baseline=base.as_baseline(),
                state=base.tracking,
                time=42.0,
                output_dir=output_dir,
                radiomics=radiomics,
                peritumoural=radiomics,
            )

        fu_seg = timed(
            "five_contours_followup",
            lambda: analyse_study(
                followup,
                lesion_paths=[root / "annotations" / "followup-seg.dcm"],
                baseline=base.as_baseline(),
                state=base.tracking,
                time=42.0,
            ),
        )
        fu = timed("five_propagated", five_followup)
        timed("five_propagated_outputs", lambda: five_followup(root / "out"))
        # as the worker scores with IRTMON_RADIOMICS=auto and a virtual biopsy that reads no
        # radiomics (the shipped one): the SEG and SR written, no radiomics or ring
        timed(
            "one_propagated_worker",
            lambda: analyse_acquisition(
                followup, baseline=one_base.as_baseline(), radiomics=False, peritumoural=False
            ),
        )
        fu_worker = timed(
            "five_propagated_worker", lambda: five_followup(root / "out", radiomics=False)
        )
        again = five_followup()
        rounds = _rounds(measures, args.repeat)

    timings = {
        key: (statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs))
        for key, runs in rounds.items()
    }
    ratios = _ratios(rounds)
    for key, (wall, cpu) in timings.items():
        results[f"{key}_s"] = round(wall, 3)
        results[f"{key}_cpu_s"] = round(cpu, 3)
        results[f"{key}_ratio"] = round(ratios[key], 2)
    by_label = {r.label: r.burden for r in fu.lesions if r.burden is not None}
    missing = [e.label for e in LESIONS if e.label not in by_label]
    results["five_missing"] = missing
    found = [e for e in LESIONS if e.label in by_label]
    results["five_errors"] = _errors(found, [by_label[e.label] for e in found], True)
    results["one_errors"] = _errors(LESIONS[:1], [one_fu.burden], True)
    by_label = {r.label: r.burden for r in fu_seg.lesions if r.burden is not None}
    results["five_followup_seg_errors"] = _errors(
        [e for e in LESIONS if e.label in by_label],
        [by_label[e.label] for e in LESIONS if e.label in by_label],
        True,
    )
    results["five_registration"] = fu.provenance["registration"]
    results["worker_same_lesions"] = _numbers_of_lesions(fu) == _numbers_of_lesions(fu_worker)
    results["deterministic"] = _numbers(fu) == _numbers(again)
    cores = os.cpu_count() or 1
    for key in (
        "five_contours",
        "five_contours_followup",
        "five_propagated",
        "five_propagated_worker",
    ):
        results[f"{key}_studies_per_hour"] = round(3600 * cores / timings[key][1])

    print(f"\n{'measure':34s} {'wall s':>8s} {'CPU s':>8s} {'x SimpleITK read':>17s}")
    labels = {
        "sitk_read": "SimpleITK series read",
        "irtmon_read": "irtmon read_series",
        "one_contours": "1 lesion, from its SEG",
        "one_propagated": "1 lesion, propagated",
        "five_contours": "5 lesions, from their SEG",
        "five_contours_followup": "5 lesions, SEG, matched (follow-up)",
        "five_propagated": "5 lesions, propagated",
        "five_propagated_outputs": "5 lesions, propagated, SEG+SR",
        "one_propagated_worker": "1 lesion, propagated, no radiomics",
        "five_propagated_worker": "5 lesions, as the worker (auto)",
    }
    for key, label in labels.items():
        wall, cpu = timings[key]
        print(f"{label:34s} {wall:8.2f} {cpu:8.2f} {ratios[key]:17.1f}")
    print(f"\nfollow-up diameters against the truth ({missing or 'all found'}):")
    rows = [("1 lesion: " + k, v) for k, v in results["one_errors"].items()]
    rows += [("5 lesions: " + k, v) for k, v in results["five_errors"].items()]
    for label, e in rows:
        print(
            f"  {label:26s} long {e['long_mm']:6.1f} mm (true {e['long_true_mm']:5.1f}, "
            f"{e['long_error_pct']:+5.1f} %)  short {e['short_mm']:6.1f} mm "
            f"(true {e['short_true_mm']:5.1f}, {e['short_error_pct']:+5.1f} %)"
        )
    print(f"registration: {results['five_registration']}")
    print(f"re-run identical: {results['deterministic']}")
    print(f"the worker's lesions (no radiomics) identical: {results['worker_same_lesions']}")
    print(
        f"cohort throughput ({cores} cores, CPU s per study): "
        f"{results['five_contours_studies_per_hour']} baseline / "
        f"{results['five_contours_followup_studies_per_hour']} annotated follow-up / "
        f"{results['five_propagated_studies_per_hour']} propagated follow-up studies an hour"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return results


if __name__ == "__main__":
    main()
