"""A story-v2 cohort read back: the reader's SEG per study, the planning RTSTRUCT, the lesion
truth against what was drawn, the events, the manifest and the version everywhere."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

from clinic import generate_cohort, load_events, read_manifest
from clinic.measure import mask_measure
from clinic.story_v2.course import rt_change_severity
from clinic.story_v2.patient import sample_patient
from schemas.events import ImagingAcquired

DCIODVFY = shutil.which("dciodvfy")
TIMEPOINTS = 3


def _seed() -> int:
    """The first seed whose two patients show a new lesion, and a lung change after SBRT that
    the reader draws into the lesion, by the last scan: found by the story, not by hand, so
    that the cohort below exercises both."""
    for seed in range(2000):
        pts = [sample_patient(np.random.default_rng([seed, i, 0]), i, TIMEPOINTS) for i in (1, 2)]
        last = [p.timepoints[-1].days for p in pts]
        new = any(
            les.new and les.reference_days <= t
            for p, t in zip(pts, last, strict=True)
            for les in p.lesions
        )
        rt = any(
            les.reader_includes_rt_change and rt_change_severity(les, t) > 0.5
            for p, t in zip(pts, last, strict=True)
            for les in p.lesions
        )
        if new and rt:
            return seed
    raise AssertionError("no seed below 2000 draws both a new lesion and a drawn lung change")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("clinic-v2") / "c"
    return generate_cohort(out, 2, _seed(), n_timepoints=TIMEPOINTS, story="v2")


@pytest.fixture(scope="module")
def lesions(cohort: Path) -> pd.DataFrame:
    return pd.read_parquet(cohort / "ground_truth" / "lesions.parquet")


def _segments(path: Path) -> tuple[pydicom.Dataset, dict[int, np.ndarray]]:
    """A SEG read frame by frame (pydicom only): segment number -> frames by slice z."""
    ds = pydicom.dcmread(path)
    frames = ds.pixel_array
    if frames.ndim == 2:
        frames = frames[None]
    out: dict[int, dict[float, np.ndarray]] = {}
    for f, group in enumerate(ds.PerFrameFunctionalGroupsSequence):
        number = int(group.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        z = round(float(group.PlanePositionSequence[0].ImagePositionPatient[2]), 3)
        out.setdefault(number, {})[z] = frames[f] > 0
    return ds, out


def _as_volume(by_z: dict[float, np.ndarray], zs: list[float], shape) -> np.ndarray:
    vol = np.zeros(shape, dtype=bool)
    for k, z in enumerate(zs):
        if round(z, 3) in by_z:
            vol[k] = by_z[round(z, 3)]
    return vol


def _slice_z(folder: Path) -> list[float]:
    series = next(d for d in sorted(folder.iterdir()) if d.is_dir())
    return [
        float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2])
        for f in sorted(series.glob("IM-*.dcm"))
    ]


def test_version_is_written_everywhere(cohort: Path, lesions: pd.DataFrame) -> None:
    assert json.loads((cohort / "cohort.json").read_text())["story_version"] == "v2"
    manifest = read_manifest(cohort)
    assert set(manifest.story_version) == {"v2"}
    for column in ("pd_l1_tps", "in_field_sum_mm", "out_of_field_sum_mm", "new_lesion_count"):
        assert column in manifest.columns
    assert manifest.pd_l1_tps.between(0, 100).all()
    assert set(lesions.story_version) == {"v2"}
    for truth in (cohort / "ground_truth").glob("psn-*.json"):
        assert json.loads(truth.read_text())["story_version"] == "v2"
    assert (cohort / "ground_truth" / "lesions.csv").is_file()


def test_reader_seg_has_one_segment_per_visible_lesion(cohort: Path, lesions: pd.DataFrame) -> None:
    studies = 0
    for (patient, tp), rows in lesions.groupby(["patient", "timepoint"]):
        folder = next((cohort / "patients" / patient).glob(f"tp{tp}-*"))
        shown = rows[rows.seg_segment_number.notna()]
        if shown.empty:
            assert not (folder / "SEG.dcm").exists()
            continue
        studies += 1
        ds, segments = _segments(folder / "SEG.dcm")
        labels = np.load(folder / "labels.npz")["labels"]
        zs = _slice_z(folder)
        numbers = sorted(int(n) for n in shown.seg_segment_number)
        assert [int(s.SegmentNumber) for s in ds.SegmentSequence] == numbers
        assert numbers == list(range(1, len(numbers) + 1))  # numbered per study
        for item in ds.SegmentSequence:
            assert "TrackingID" not in item and "TrackingUID" not in item  # no link to others
            label = str(item.SegmentLabel)
            assert label.startswith("Lesion ") or (tp == 0 and label.startswith("GTV"))
            if label.startswith("Lesion "):
                assert label == f"Lesion {int(item.SegmentNumber)}"
        masks = {}
        for _, row in shown.iterrows():
            mask = _as_volume(segments[int(row.seg_segment_number)], zs, labels.shape)
            drawn = labels == row.track_id
            if row.rt_change_in_seg:
                assert (mask & drawn).sum() == drawn.sum() and mask.sum() > drawn.sum()
            else:
                assert np.array_equal(mask, drawn)
            organ = (
                str(
                    ds.SegmentSequence[int(row.seg_segment_number) - 1]
                    .AnatomicRegionSequence[0]
                    .CodeMeaning
                )
                .lower()
                .replace(" ", "_")
            )
            assert organ.startswith(row.organ.split("_")[0])
            masks[row.track_id] = mask
        total = sum(m.astype(int) for m in masks.values())
        assert total.max() == 1  # segments do not overlap
        # the SEG points at its own study's images only
        own = {
            pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID
            for d in folder.iterdir()
            if d.is_dir()
            for f in d.glob("IM-*.dcm")
        }
        refs = {
            r.ReferencedSOPInstanceUID
            for s in ds.ReferencedSeriesSequence
            for r in s.ReferencedInstanceSequence
        }
        assert refs <= own
    assert studies >= 2 * TIMEPOINTS - 1
    assert lesions.new.any() and lesions[lesions.new].seg_segment_number.notna().any()
    assert lesions.rt_change_in_seg.any()


def test_planning_rtstruct_has_the_gtv_and_every_other_lesion(
    cohort: Path, lesions: pd.DataFrame
) -> None:
    for patient, rows in lesions[lesions.timepoint == 0].groupby("patient"):
        ds = pydicom.dcmread(next((cohort / "patients" / patient).glob("tp0-*")) / "RTSTRUCT.dcm")
        names = [str(r.ROIName) for r in ds.StructureSetROISequence]
        shown = rows[rows.seg_segment_number.notna()]
        assert sorted(names) == sorted(shown.seg_label)
        assert "GTV" in names
        types = {
            int(o.ReferencedROINumber): str(o.RTROIInterpretedType)
            for o in ds.RTROIObservationsSequence
        }
        for n, name in enumerate(names, start=1):
            row = shown[shown.seg_label == name].iloc[0]
            assert (types[n] == "GTV") == bool(row.in_field)
        assert all(len(c.ContourSequence) > 0 for c in ds.ROIContourSequence)


def test_lesion_truth_matches_what_is_drawn(cohort: Path, lesions: pd.DataFrame) -> None:
    """Long axis of the rendered mask within one voxel or 10 % of the truth, centre within a
    voxel; nodes' short axis likewise (voxels are 2.7 x 2.7 x 3 mm)."""
    checked = 0
    for _, row in lesions[lesions.visible & (lesions.long_axis_mm >= 10.0)].iterrows():
        folder = next((cohort / "patients" / row.patient).glob(f"tp{row.timepoint}-*"))
        labels = np.load(folder / "labels.npz")["labels"]
        mask = labels == row.track_id
        _volume, diameter = mask_measure(mask, 2.7, 3.0)
        assert abs(diameter - row.long_axis_mm) <= max(2.7, 0.1 * row.long_axis_mm), row.to_dict()
        zs = np.array(_slice_z(folder))
        k, r, c = np.nonzero(mask)
        x0 = -(labels.shape[2] - 1) / 2.0 * 2.7
        y0 = -(labels.shape[1] - 1) / 2.0 * 2.7
        centre = (x0 + c.mean() * 2.7, y0 + r.mean() * 2.7, zs[k].mean())
        assert np.allclose(centre, (row.centre_x_mm, row.centre_y_mm, row.centre_z_mm), atol=2.7)
        assert abs(mask.sum() * 2.7 * 2.7 * 3.0 / 1000 - row.volume_ml) <= 0.25 * row.volume_ml
        checked += 1
    assert checked >= 5


def test_events_point_at_the_annotations(cohort: Path, lesions: pd.DataFrame) -> None:
    imaging = [e for e in load_events(cohort) if isinstance(e, ImagingAcquired)]
    assert len(imaging) == 2 * TIMEPOINTS
    for event in imaging:
        if event.purpose.value == "planning":
            assert event.lesion.kind == "rtstruct" and event.lesion.roi_name == "GTV"
        elif event.lesion is not None:
            assert event.lesion.kind == "seg" and event.lesion.roi_name is None
        if event.lesion is not None:
            ds = pydicom.dcmread(event.lesion.path, stop_before_pixels=True)
            assert ds.SOPInstanceUID == event.lesion.sop_instance_uid
            assert ds.StudyInstanceUID == event.study_uid


@pytest.mark.skipif(DCIODVFY is None, reason="dciodvfy missing: apt-get install dicom3tools")
def test_dicom_validator_finds_no_error(cohort: Path) -> None:
    files = sorted(cohort.rglob("SEG.dcm"))[:3] + sorted(cohort.rglob("RTSTRUCT.dcm"))
    for f in files:
        out = subprocess.run([DCIODVFY, str(f)], capture_output=True, text=True, check=False)
        errors = [ln for ln in (out.stdout + out.stderr).splitlines() if ln.startswith("Error")]
        assert not errors, f"{f.name}: {errors}"


def test_manifest_without_story_version_reads_as_v1(tmp_path: Path) -> None:
    pd.DataFrame({"patient": ["psn-0000000000000000"], "path": ["x"]}).to_csv(
        tmp_path / "manifest.csv", index=False
    )
    assert list(read_manifest(tmp_path).story_version) == ["v1"]


def test_unknown_story_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown story"):
        generate_cohort(tmp_path / "c", 1, 0, story="v3")
