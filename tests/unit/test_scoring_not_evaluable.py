"""A follow-up without the reader's outline on which no carried lesion can be evaluated is a
not-evaluable timepoint (RECIST 1.1 NE, iRECIST iNE), stored as such, not a dead letter: each
lesion's row says why, the assessment is made, and no burden is made up (no target measurement,
no sums, no model scores). The worker's seam, without a broker or database; the baseline's two
"lesions" are drawn by the reader on plain fat, so nothing tells them from their background and
propagation cannot outline them (models.imaging.lesion.MIN_CONTRAST_HU)."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pydicom
import pytest
from highdicom.sr import Comprehensive3DSR
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from models.imaging.study import analyse_study
from schemas import pseudonymise
from schemas.enums import IRECIST_SCORE, IRecistState, LesionStatus, RecistResponse
from schemas.results import NEW_LESIONS_SCORE, Outcome
from streams import scoring
from tests.unit.imaging import lesion_study as ls
from tests.unit.test_scoring_lesions import _event

PATIENT = pseudonymise("scoring-not-evaluable", "scoring-not-evaluable-key-0123456789")
T0 = datetime(2026, 3, 1, 10, 15, tzinfo=UTC)
SHIFT = (2.5, 3.0, -4.0)
FAINT = (
    ls.Ellipsoid("fat left", (30.0, 45.0, 45.0), (5.0, 6.0, 6.0), codes.SCT.Liver),
    ls.Ellipsoid("fat right", (30.0, 60.0, 60.0), (5.0, 7.0, 6.0), codes.SCT.AdrenalGland),
)


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("not-evaluable")
    base_dir = root / "baseline"
    images = ls.write_ct_with_simpleitk(base_dir / "CT", ls.image([]))
    ls.write_seg_with_highdicom(base_dir / "seg.dcm", images, [e.mask() for e in FAINT], FAINT)
    base_event = _event(base_dir, base_dir / "seg.dcm", images, T0, PATIENT)
    fu_dir = root / "follow-up"
    fu_images = ls.write_ct_with_simpleitk(
        fu_dir / "CT", ls.image([], seed=4, shift_mm=SHIFT), study_uid=generate_uid()
    )
    fu_event = _event(fu_dir, None, fu_images, T0 + timedelta(days=42), PATIENT)

    derived = root / "derived"
    baseline = scoring.Baseline(base_event.event_id, base_dir, base_dir / "seg.dcm", occurred_at=T0)
    request = scoring.imaging_request(base_event, [root], derived_dir=derived)
    request.baseline = baseline
    base = scoring.score_imaging(request)
    request = scoring.imaging_request(fu_event, [root], derived_dir=derived)
    request.baseline = baseline
    assert base.assessment is not None
    request.tracking_state = base.assessment.tracking_state
    return {"baseline": base, "follow_up": scoring.score_imaging(request), "root": root}


def test_the_baseline_measures_both_outlines(scored: dict) -> None:
    base: Outcome = scored["baseline"]
    assert [r.status for r in base.lesions] == [LesionStatus.SEEN] * 2
    assert len(base.measurements) == 1  # the primary lesion, for the models' history


def test_no_lesion_evaluable_is_an_assessed_not_evaluable_timepoint(scored: dict) -> None:
    fu: Outcome = scored["follow_up"]
    assert fu.assessment is not None
    assert fu.assessment.irecist is IRecistState.INE
    assert fu.assessment.recist is RecistResponse.NE
    assert fu.assessment.seen == 0 and fu.assessment.not_evaluable == 2
    assert [r.status for r in fu.lesions] == [LesionStatus.NOT_EVALUABLE] * 2
    for row in fu.lesions:  # each says why, by name
        assert row.label in (row.failure or "") and "not evaluable" in (row.failure or "")
        assert row.long_axis_mm is None and row.volume_ml is None
    assert {f["label"] for f in fu.assessment.failures} == {e.label for e in FAINT}


def test_no_burden_is_made_up(scored: dict) -> None:
    fu: Outcome = scored["follow_up"]
    assert fu.measurements == []  # no scan for the models' history
    names = {s.score_name: s.value for s in fu.scores}
    assert names == {NEW_LESIONS_SCORE: 0.0, IRECIST_SCORE: float(IRecistState.INE.code)}
    assert fu.features is not None and fu.features.values == {}
    assert len(fu.features.provenance["failures"]) == 2


def test_the_sr_reports_not_evaluable_without_a_sum(scored: dict) -> None:
    fu: Outcome = scored["follow_up"]
    base: Outcome = scored["baseline"]
    outputs = fu.features.provenance["dicom_outputs"]  # type: ignore[union-attr]
    assert "seg" not in outputs  # nothing was outlined
    names = []
    for which in (base, fu):
        path = which.features.provenance["dicom_outputs"]["sr"]["path"]  # type: ignore[union-attr]
        sr = Comprehensive3DSR.from_dataset(pydicom.dcmread(path))
        names.append({str(item.ConceptNameCodeSequence[0].CodeMeaning) for item in _items(sr)})
    assert "Sum of diameters of target lesions" in names[0]
    assert "Sum of diameters of target lesions" not in names[1]
    assert "Number of new lesions present" in names[1]


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools (dciodvfy) not installed")
def test_the_not_evaluable_sr_passes_dciodvfy(scored: dict) -> None:
    path = scored["follow_up"].features.provenance["dicom_outputs"]["sr"]["path"]
    run = subprocess.run(["dciodvfy", path], capture_output=True, text=True, check=False)
    report = run.stdout + run.stderr
    assert [line for line in report.splitlines() if line.startswith("Error")] == [], report


def test_the_study_result_carries_no_burden(scored: dict) -> None:
    root: Path = scored["root"]
    base = analyse_study(root / "baseline", time=0.0, radiomics=False, peritumoural=False)
    result = analyse_study(
        root / "follow-up",
        baseline=base.as_baseline(),
        state=base.tracking,
        time=42.0,
        radiomics=False,
        peritumoural=False,
        enhancement=False,
    )
    assert result.burden is None and result.features == {}
    assert result.to_dict()["burden"] is None
    assert result.assessment is not None and result.assessment.target is RecistResponse.NE


def _items(sr: Comprehensive3DSR) -> list:
    out, stack = [], list(sr.ContentSequence)
    while stack:
        item = stack.pop()
        out.append(item)
        stack.extend(getattr(item, "ContentSequence", []))
    return out
