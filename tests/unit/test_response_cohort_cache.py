"""The cohort feature cache: resumable after a kill, refused when the pipeline or the inputs
change, failures cached only when they cannot pass. The analysis itself is replaced by a
counting stand-in (the imaging is tested in tests/unit/imaging; the slow end-to-end test
runs the real one)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from models.response import cohort
from models.response.cohort import (
    ExtractionOptions,
    PatientSkipped,
    StudyRecord,
    clinical_from_events,
    extract_features,
    labs_from_manifest,
)

PATIENTS = [f"psn-{i}" for i in range(5)]
PSN = "psn-0123456789abcdef"


def write_cohort(root: Path) -> pd.DataFrame:
    rows = []
    for p in PATIENTS:
        for tp in range(3):
            folder = root / "patients" / p / f"tp{tp}"
            (folder / "CT").mkdir(parents=True)
            (folder / "CT" / "1.dcm").write_bytes(b"x" * (10 + tp))
            rows.append(
                {
                    "patient": p,
                    "timepoint": tp,
                    "timepoint_label": "planning" if tp == 0 else f"fu{tp}",
                    "acquired_at": f"2026-0{tp + 1}-01T10:00:00+00:00",
                    "modality": "CT",
                    "path": f"patients/{p}/tp{tp}/CT",
                }
            )
    return pd.DataFrame(rows)


class Analyser:
    """Stands in for :func:`cohort.analyse_patient`; counts calls, can die or fail."""

    def __init__(self, die_after: int | None = None, fail: dict[str, PatientSkipped] | None = None):
        self.calls: list[str] = []
        self.die_after = die_after
        self.fail = fail or {}

    def __call__(
        self, studies: Sequence[StudyRecord], options: ExtractionOptions
    ) -> list[dict[str, Any]] | PatientSkipped:
        patient = studies[0].patient
        if self.die_after is not None and len(self.calls) >= self.die_after:
            raise KeyboardInterrupt("killed")  # a kill: nothing returns, nothing is written
        self.calls.append(patient)
        if patient in self.fail:
            return self.fail[patient]
        return [
            {"patient": patient, "at": s.at.isoformat(), "timepoint": s.timepoint} for s in studies
        ]


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    manifest = write_cohort(tmp_path / "c")

    def run(analyser: Analyser, **kw: Any):
        monkeypatch.setattr(cohort, "analyse_patient", analyser)
        return extract_features(tmp_path / "c", manifest, tmp_path / "cache", **kw)

    return run, tmp_path


def test_a_killed_run_resumes_where_it_stopped(setup) -> None:
    run, tmp = setup
    seen: list[tuple[int, int]] = []
    with pytest.raises(KeyboardInterrupt):
        run(Analyser(die_after=2), progress=lambda stage, done, total: seen.append((done, total)))
    assert len(list((tmp / "cache").glob("psn-*.json"))) == 2  # the two finished patients
    assert seen[-1] == (2, 5)
    again = Analyser()
    result = run(again)
    assert again.calls == PATIENTS[2:]  # only the patients the killed run had not finished
    assert (result.patients_cached, result.patients_computed) == (2, 3)
    assert (result.studies_cached, result.studies_computed) == (6, 9)
    assert sorted({r["patient"] for r in result.rows}) == PATIENTS and len(result.rows) == 15
    assert not list((tmp / "cache").glob(".*.tmp"))  # no half-written file left
    third = Analyser()
    assert run(third).studies_cached == 15 and third.calls == []
    summary = result.summary()
    assert summary["studies_computed"] == 9 and summary["studies_per_hour"] > 0


def test_a_changed_pipeline_or_input_never_reuses_the_cache(setup, monkeypatch) -> None:
    run, tmp = setup
    run(Analyser())
    monkeypatch.setattr(cohort, "ALGORITHM_VERSION", "9.9.9")  # an imaging version bump
    bumped = Analyser()
    assert run(bumped).studies_computed == 15 and bumped.calls == PATIENTS
    # another option: another key
    other = Analyser()
    run(other, options=ExtractionOptions(radiomics=True))
    assert other.calls == PATIENTS
    # a study file rewritten: that patient only
    (tmp / "c" / "patients" / "psn-3" / "tp1" / "CT" / "1.dcm").write_bytes(b"y" * 99)
    changed = Analyser()
    run(changed)
    assert changed.calls == ["psn-3"]


def test_a_cache_file_from_another_pipeline_is_refused(setup) -> None:
    """A file under the right name whose recorded versions differ (copied, or edited) is stale:
    refused and recomputed, never read."""
    run, tmp = setup
    run(Analyser())
    path = sorted((tmp / "cache").glob("psn-1-*.json"))[0]
    data = json.loads(path.read_text())
    data["versions"]["algorithm_version"] = "0.0.1"
    data["rows"] = [{"patient": "psn-1", "at": "stale", "timepoint": 0}]
    path.write_text(json.dumps(data))
    again = Analyser()
    result = run(again)
    assert again.calls == ["psn-1"] and result.stale == 1
    assert all(r["at"] != "stale" for r in result.rows)
    path.write_text("[1, 2")  # a truncated file (written before atomic writes)
    assert run(Analyser()).stale == 1


def test_failures_are_cached_unless_they_may_pass(setup) -> None:
    run, _ = setup
    first = Analyser(
        fail={
            "psn-1": PatientSkipped("psn-1: no lesion could be measured"),
            "psn-2": PatientSkipped("psn-2: [Errno 5] I/O error", retry=True),
        }
    )
    result = run(first)
    assert sorted(result.skipped) == [
        "psn-1: no lesion could be measured",
        "psn-2: [Errno 5] I/O error",
    ]
    assert result.studies_computed == 9
    again = Analyser()
    result = run(again)
    assert again.calls == ["psn-2"]  # the I/O error is tried again; the input error is not
    assert result.skipped == ["psn-1: no lesion could be measured"]


def test_workers_give_the_same_rows(setup) -> None:
    run, tmp = setup
    parallel = run(Analyser(), workers=2)
    assert parallel.studies_computed == 15 and parallel.workers == 2
    for f in (tmp / "cache").glob("psn-*.json"):
        f.unlink()
    serial = run(Analyser())
    assert serial.rows == parallel.rows


def test_pd_l1_from_events_and_manifest(tmp_path: Path) -> None:
    event = {
        "event_id": "1bca08f3-acbe-5d8c-831f-6c946f41dd49",
        "lab": {"pd_l1_tps": 64.0},
        "occurred_at": "2025-12-20T18:00:00Z",
        "patient": PSN,
        "schema_version": 1,
        "slides": [{"path": "/x/slide.tiff", "slide_id": "WSI-1", "stain": "H&E"}],
        "specimen_id": "SP-1",
    }
    (tmp_path / "events.jsonl").write_text(
        json.dumps({"topic": "biopsy.acquired", "event": event}) + "\n"
    )
    treatments, labs = clinical_from_events(tmp_path)
    assert treatments == {} and [r.pd_l1_tps for r in labs[PSN]] == [64.0]
    assert labs[PSN][0].at.isoformat() == "2025-12-20T18:00:00+00:00"
    manifest = pd.DataFrame(
        [
            {"patient": "b", "modality": "CT", "acquired_at": "2026-01-10", "pd_l1_tps": 5.0},
            {"patient": "b", "modality": "WSI", "acquired_at": "2025-12-30", "pd_l1_tps": 5.0},
            {"patient": "c", "modality": "CT", "acquired_at": "2026-01-10", "pd_l1_tps": None},
        ]
    )
    found = labs_from_manifest(manifest)
    assert list(found) == ["b"] and found["b"][0].pd_l1_tps == 5.0
    assert found["b"][0].at.date().isoformat() == "2025-12-30"  # dated by the biopsy
    assert labs_from_manifest(manifest.drop(columns="pd_l1_tps")) == {}


def test_a_study_whose_lesion_defeats_radiomics_is_kept_without_them(monkeypatch) -> None:
    """With --radiomics, a lesion of a few voxels makes analyse_study give up the whole study:
    the study is analysed again without radiomics (and says so) instead of losing the patient."""
    from types import SimpleNamespace

    from models.exceptions import InsufficientDataError

    calls: list[bool] = []

    def analyse_study(folder: Path, **kw: Any) -> SimpleNamespace:
        calls.append(kw["radiomics"])
        if kw["radiomics"]:
            raise InsufficientDataError("lesion too small for radiomics (4 voxels)")
        return SimpleNamespace(provenance={})

    monkeypatch.setattr(cohort.imaging, "analyse_study", analyse_study)
    s = StudyRecord(
        "psn-0", 1, "fu1", pd.Timestamp("2026-02-01").to_pydatetime(), "CT", Path("."), None
    )
    result = cohort._analyse_study(s, None, None, ExtractionOptions(radiomics=True))
    assert calls == [True, False]
    assert "too small" in result.provenance["radiomics_skipped"]
    calls.clear()
    cohort._analyse_study(s, None, None, ExtractionOptions())  # the default: no radiomics
    assert calls == [False]
