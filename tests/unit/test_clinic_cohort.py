"""A small generated cohort read back: DICOM geometry, validator, truth, slides, events."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk  # noqa: N813
import tiffslide

from clinic import generate_cohort, load_events, read_manifest, replay
from clinic.measure import mask_measure, rtstruct_measure, seg_mask
from clinic.slides import render_slide
from schemas.enums import ImagingPurpose, ImmunePhenotype, Modality
from schemas.events import BiopsyAcquired, ImagingAcquired, TreatmentEvent
from schemas.pseudonym import is_pseudonym

SEED = 2
DCIODVFY = shutil.which("dciodvfy")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_cohort(tmp_path_factory.mktemp("clinic") / "c", 2, SEED, n_timepoints=3)


@pytest.fixture(scope="module")
def manifest(cohort: Path):
    return read_manifest(cohort)


def _series_dirs(manifest, kind: str) -> list[str]:
    return sorted(manifest.loc[manifest.series_kind == kind, "path"].unique())


def test_ct_reads_back_with_declared_geometry(cohort: Path, manifest) -> None:
    folder = cohort / _series_dirs(manifest, "ct")[0]
    files = sorted(folder.glob("*.dcm"))
    assert len(files) == 40
    slices = [pydicom.dcmread(f) for f in files]
    first = slices[0]
    assert first.SOPClassUID == pydicom.uid.CTImageStorage
    assert (first.Rows, first.Columns) == (128, 128)
    assert [float(v) for v in first.PixelSpacing] == [2.7, 2.7]
    assert float(first.SliceThickness) == 3.0
    z = [float(s.ImagePositionPatient[2]) for s in slices]
    assert np.allclose(np.diff(z), 3.0)
    assert len({s.SeriesInstanceUID for s in slices}) == 1
    assert len({s.FrameOfReferenceUID for s in slices}) == 1
    hu = np.stack([pydicom.pixels.apply_rescale(s.pixel_array, s) for s in slices])
    assert hu.min() < -900 and -900 < np.median(hu[:, 40:90, 15:50]) < 100

    reader = sitk.ImageSeriesReader()
    ids = reader.GetGDCMSeriesIDs(str(folder))
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder), ids[0]))
    image = reader.Execute()
    assert image.GetSize() == (128, 128, 40)
    assert np.allclose(image.GetSpacing(), (2.7, 2.7, 3.0))
    assert np.allclose(image.GetOrigin(), [float(v) for v in first.ImagePositionPatient])
    assert np.allclose(sitk.GetArrayFromImage(image), hu, atol=0.5)


def test_patient_identity_and_uids(cohort: Path, manifest) -> None:
    clear = (cohort / "ground_truth" / "identities.csv").read_text()
    assert "VC-0001" in clear
    for text in ((cohort / "events.jsonl").read_text(), (cohort / "manifest.csv").read_text()):
        assert "VC-000" not in text
    for patient, rows in manifest.groupby("patient"):
        assert is_pseudonym(patient)
        for path in rows.path.unique():
            assert "VC-" not in path
            if rows.loc[rows.path == path, "series_kind"].iloc[0] == "he_slide":
                continue
            f = cohort / path
            ds = pydicom.dcmread(
                next(f.glob("*.dcm")) if f.is_dir() else f, stop_before_pixels=True
            )
            assert ds.PatientID == patient and str(ds.PatientName).rstrip("^") == patient
            study = rows.loc[rows.path == path, "study_uid"].iloc[0]
            assert ds.StudyInstanceUID == study
    studies = manifest.dropna(subset=["study_uid"]).groupby("timepoint_label").study_uid.nunique()
    assert (studies == manifest.patient.nunique()).all()


def test_pcct_series_carry_multienergy_attributes(cohort: Path, manifest) -> None:
    vmi = manifest[manifest.series_kind == "vmi"]
    assert not vmi.empty, "choose a seed whose small cohort holds a PCCT study"
    study = vmi.study_uid.iloc[0]
    iodine = manifest[(manifest.series_kind == "iodine") & (manifest.study_uid == study)]
    ds = pydicom.dcmread(cohort / iodine.path.iloc[0] / "IM-0020.dcm")
    assert ds.ImageType[3] == "MAT_SPECIFIC" and float(ds.RescaleSlope) == 0.01
    mgml = pydicom.pixels.apply_rescale(ds.pixel_array, ds)
    enhancing = mgml > 3.0  # heart and aorta
    assert enhancing.sum() > 50
    means = {}
    for _, row in vmi[vmi.study_uid == study].iterrows():
        ds = pydicom.dcmread(cohort / row.path / "IM-0020.dcm")
        assert ds.MultienergyCTAcquisition == "YES"
        assert ds.ImageType[3] == "VMI"
        kev = ds.MultienergyCTCharacteristicsSequence[0].MonoenergeticEnergyEquivalent
        assert kev == row.energy_kev
        assert ds.ManufacturerModelName == "NAEOTOM Alpha"
        assert f"{kev:g} keV" in ds.SeriesDescription
        means[kev] = float(pydicom.pixels.apply_rescale(ds.pixel_array, ds)[enhancing].mean())
    energies = sorted(means)
    assert [means[e] for e in energies] == sorted(means.values(), reverse=True)
    assert means[energies[0]] > means[energies[-1]] + 200  # iodine shines at low keV
    assert 3.0 < mgml.max() < 12.0


@pytest.mark.skipif(DCIODVFY is None, reason="dciodvfy missing: apt-get install dicom3tools")
def test_dicom_validator_finds_no_error(cohort: Path, manifest) -> None:
    files = [cohort / p / "IM-0010.dcm" for p in manifest.path if not p.endswith((".dcm", ".tiff"))]
    files += [cohort / p for p in manifest.path if p.endswith(".dcm")]
    kinds = {}
    for f in files:
        kinds.setdefault(f.parent.name if f.name.startswith("IM-") else f.name, f)
    for name, f in kinds.items():
        out = subprocess.run([DCIODVFY, str(f)], capture_output=True, text=True, check=False)
        errors = [ln for ln in (out.stdout + out.stderr).splitlines() if ln.startswith("Error")]
        assert not errors, f"{name}: {errors}"


def test_lesion_measurements_match_truth(cohort: Path) -> None:
    for gt in sorted((cohort / "ground_truth").glob("psn-*.json")):
        truth = json.loads(gt.read_text())
        plan = truth["timepoints"][0]
        target = plan["lesions"][0]
        vol, diam = rtstruct_measure(cohort / plan["folder"] / "RTSTRUCT.dcm")
        assert vol == pytest.approx(target["volume_ml"], rel=0.05)
        assert diam == pytest.approx(target["longest_axial_diameter_mm"], rel=0.05)
        mask, px, dz = seg_mask(cohort / plan["folder"] / "SEG.dcm")
        assert (px, dz) == (2.7, 3.0)
        seg_vol, seg_diam = mask_measure(mask, px, dz)
        assert seg_vol == pytest.approx(target["volume_ml"], rel=0.05)
        # a voxel mask measures a diameter to within a pixel; the contour measures it finely
        assert abs(seg_diam - target["longest_axial_diameter_mm"]) <= px
        for tp in truth["timepoints"]:
            labels = np.load(cohort / tp["folder"] / "labels.npz")["labels"]
            for lesion in tp["lesions"]:
                mask_vol, _ = mask_measure(labels == lesion["label"], 2.7, 3.0)
                assert mask_vol == pytest.approx(lesion["volume_ml"], rel=0.05)


def test_slides_open_as_pyramids_with_tile_truth(cohort: Path, manifest) -> None:
    path = cohort / _series_dirs(manifest, "he_slide")[0]
    slide = tiffslide.TiffSlide(path)
    assert slide.level_count >= 3 and slide.dimensions == (2048, 2048)
    assert float(slide.properties["tiffslide.mpp-x"]) == pytest.approx(0.5)
    region = np.asarray(slide.read_region((0, 0), 1, (256, 256)).convert("RGB"))
    assert region.shape == (256, 256, 3)
    import pandas as pd

    tiles = pd.read_parquet(path.with_suffix(".tiles.parquet"))
    assert len(tiles) == 64 and {"tissue_fraction", "lymphocyte_count"} <= set(tiles.columns)


def test_lymphocytes_follow_phenotype() -> None:
    def truth(phenotype: ImmunePhenotype, intra: float, stroma: float):
        return render_slide(np.random.default_rng(1), phenotype, intra, stroma, 1024)[2]

    inflamed = truth(ImmunePhenotype.INFLAMED, 900, 500)
    excluded = truth(ImmunePhenotype.EXCLUDED, 90, 700)
    desert = truth(ImmunePhenotype.DESERT, 25, 40)
    assert inflamed.til_intratumoral_per_mm2 > 5 * excluded.til_intratumoral_per_mm2
    assert excluded.til_stromal_per_mm2 > 3 * excluded.til_intratumoral_per_mm2
    assert desert.lymphocytes < excluded.lymphocytes < inflamed.lymphocytes


def test_events_in_time_order_with_lesion_reference(cohort: Path) -> None:
    events = load_events(cohort)
    times = [e.occurred_at for e in events]
    assert times == sorted(times)
    kinds = {type(e) for e in events}
    assert kinds == {ImagingAcquired, BiopsyAcquired, TreatmentEvent}
    imaging = [e for e in events if isinstance(e, ImagingAcquired)]
    assert len(imaging) == 2 * 3
    planning = [e for e in imaging if e.purpose is ImagingPurpose.PLANNING]
    assert len(planning) == 2
    for e in planning:
        assert e.modality is Modality.CT and e.lesion is not None and e.lesion.kind == "seg"
        assert Path(e.lesion.path).is_file()
        seg = pydicom.dcmread(e.lesion.path, stop_before_pixels=True)
        assert seg.SOPInstanceUID == e.lesion.sop_instance_uid
    for e in imaging:
        assert Path(e.location.path).is_dir()
    delays = list(replay(events, speedup=86400.0))
    assert delays[0][0] == 0.0 and all(d >= 0 for d, _ in delays)
    total = sum(d for d, _ in delays)
    assert total == pytest.approx((times[-1] - times[0]).total_seconds() / 86400.0)


def test_moved_cohort_rebases_paths(cohort: Path, tmp_path: Path) -> None:
    moved = tmp_path / "moved"
    shutil.copytree(cohort, moved, ignore=shutil.ignore_patterns("*.dcm", "*.tiff"))
    events = load_events(moved)
    imaging = [e for e in events if isinstance(e, ImagingAcquired)]
    assert all(e.location.path.startswith(str(moved)) for e in imaging)
    assert [e.event_id for e in events] == [e.event_id for e in load_events(cohort)]
