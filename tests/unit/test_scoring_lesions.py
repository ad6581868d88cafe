"""The worker's scoring seam over every lesion, without a broker or database: a five-lesion
baseline and a follow-up read from its own SEG (written by highdicom, the series by SimpleITK),
the follow-up starting from the tracking state the baseline's assessment stored. Checks the
lesion rows, the assessment, the derived scores, and that the SEG and SR the worker writes pass
dciodvfy."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from schemas import FolderLocation, ImagingAcquired, LesionReference, Modality, pseudonymise
from schemas.enums import IRecistState, LesionOrigin, LesionRole, LesionStatus, RecistResponse
from schemas.results import (
    IN_FIELD_SUM_SCORE,
    NEW_LESIONS_SCORE,
    OUT_OF_FIELD_SUM_SCORE,
    SUM_DIAMETERS_SCORE,
    Outcome,
)
from streams import scoring
from tests.unit.imaging import lesion_study as ls

SHIFT = (2.5, 3.0, -4.0)
PATIENT = pseudonymise("scoring-lesions", "scoring-lesions-key-0123456789")
T0 = datetime(2026, 3, 1, 10, 15, tzinfo=UTC)


def _event(
    folder: Path, seg: Path | None, images: list, at: datetime, patient: str = PATIENT
) -> ImagingAcquired:
    """The acquisition event of a series written here, with its SEG (None: no annotation)."""
    return ImagingAcquired(
        patient=patient,
        occurred_at=at,
        modality=Modality.CT,
        study_uid=str(images[0].StudyInstanceUID),
        series_uids=[str(images[0].SeriesInstanceUID)],
        location=FolderLocation(path=str(folder)),
        lesion=None if seg is None else LesionReference(kind="seg", path=str(seg)),
    )


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("scoring")
    base_dir = root / "baseline"
    images = ls.write_ct_with_simpleitk(base_dir / "CT", ls.image())
    ls.write_seg_with_highdicom(base_dir / "seg.dcm", images, [e.mask() for e in ls.LESIONS])
    base_event = _event(base_dir, base_dir / "seg.dcm", images, T0)

    gtv, _liver, node, rib, adrenal = ls.LESIONS
    follow = [
        gtv.moved(SHIFT, 0.7),
        node.moved(SHIFT, 1.25),
        rib.moved(SHIFT),
        adrenal.moved(SHIFT),
        ls.Ellipsoid("reader's lesion 5", (22.5, 48.0, 74.0), (5.0, 7.0, 6.0)),  # new
    ]  # the liver lesion has gone
    fu_dir = root / "follow-up"
    fu_images = ls.write_ct_with_simpleitk(
        fu_dir / "CT",
        ls.image(follow, seed=3, shift_mm=SHIFT),
        study_uid=generate_uid(),
        frame_of_reference=generate_uid(),
    )
    order = [3, 1, 4, 0, 2]  # the reader's own order, no link to the baseline
    ls.write_seg_with_highdicom(
        fu_dir / "seg.dcm", fu_images, [follow[i].mask() for i in order], [follow[i] for i in order]
    )
    fu_event = _event(fu_dir, fu_dir / "seg.dcm", fu_images, T0 + timedelta(days=42))

    derived = root / "derived"
    request = scoring.imaging_request(base_event, [root], derived_dir=derived)
    request.baseline = scoring.Baseline(
        base_event.event_id, base_dir, base_dir / "seg.dcm", occurred_at=T0
    )
    base = scoring.score_imaging(request)

    request = scoring.imaging_request(fu_event, [root], derived_dir=derived)
    request.baseline = scoring.Baseline(
        base_event.event_id, base_dir, base_dir / "seg.dcm", occurred_at=T0
    )
    assert base.assessment is not None
    request.tracking_state = base.assessment.tracking_state  # as the database hands it back
    follow_up = scoring.score_imaging(request)
    return {"baseline": base, "follow_up": follow_up, "root": root}


def _scores(outcome: Outcome) -> dict[str, float]:
    return {s.score_name: s.value for s in outcome.scores if s.model_name == "irtmon-lesions"}


def test_the_baseline_has_a_row_per_lesion_and_its_sums(scored: dict) -> None:
    base: Outcome = scored["baseline"]
    rows = base.lesions
    assert [r.tracking_id for r in rows] == ["L1", "L2", "L3", "L4", "L5"]
    assert {r.status for r in rows} == {LesionStatus.SEEN}
    assert {r.origin for r in rows} == {LesionOrigin.ANNOTATED}
    # the bone lesion is non-target (RECIST 1.1, 3.1.2), the other four are targets
    assert {r.label: r.role for r in rows if r.role is not LesionRole.TARGET} == {
        "rib": LesionRole.NON_TARGET
    }
    assert all(r.segment_number for r in rows) and all(r.features for r in rows)
    gtv = next(r for r in rows if r.label == "GTV lung")
    assert gtv.in_field is True
    a = base.assessment
    assert a is not None and a.timepoint == 0 and a.recist is None
    expected = sum(r.diameter_mm for r in rows if r.role is LesionRole.TARGET)
    assert a.sum_mm == pytest.approx(expected, abs=0.01)
    assert a.in_field_sum_mm == pytest.approx(gtv.diameter_mm, abs=0.01)
    # the in-field and out-of-field sums are over every lesion measured
    everything = sum(r.diameter_mm for r in rows)
    assert a.in_field_sum_mm + a.out_of_field_sum_mm == pytest.approx(everything, abs=0.01)
    values = _scores(base)
    assert values[SUM_DIAMETERS_SCORE] == pytest.approx(a.sum_mm)
    assert values[IN_FIELD_SUM_SCORE] == pytest.approx(a.in_field_sum_mm)
    assert values[OUT_OF_FIELD_SUM_SCORE] == pytest.approx(a.out_of_field_sum_mm)
    assert values[NEW_LESIONS_SCORE] == 0
    assert "irecist_state" not in values  # no response category at baseline
    # the single-lesion rows of earlier releases: the primary (irradiated) lesion
    (m,) = base.measurements
    assert m.lesion_id == "target" and m.longest_diameter_mm == pytest.approx(
        gtv.long_axis_mm, abs=0.01
    )


def test_the_follow_up_is_matched_from_the_stored_state(scored: dict) -> None:
    base: Outcome = scored["baseline"]
    fu: Outcome = scored["follow_up"]
    before = {r.label: r.tracking_uid for r in base.lesions}
    after = {r.tracking_uid: r for r in fu.lesions}
    for label in ("GTV lung", "LN subcarinal", "rib", "adrenal"):
        assert after[before[label]].status is LesionStatus.SEEN
        assert after[before[label]].match == "matched"
        assert after[before[label]].tracking_id == next(
            r.tracking_id for r in base.lesions if r.label == label
        )
    liver = after[before["liver met"]]
    assert liver.status is LesionStatus.NOT_SEEN and liver.long_axis_mm is None
    (new,) = [r for r in fu.lesions if r.role.is_new]
    assert new.tracking_id == "L6" and new.role is LesionRole.NEW_TARGET
    a = fu.assessment
    assert a is not None and a.timepoint == 1
    assert a.irecist is IRecistState.IUPD and a.recist is RecistResponse.PD
    assert a.new_lesions == 1 and a.new_appeared == 1
    values = _scores(fu)
    assert values["irecist_state"] == IRecistState.IUPD.code
    assert values[NEW_LESIONS_SCORE] == 1
    # the state the next acquisition starts from holds both timepoints
    assert len(a.tracking_state["timepoints"]) == 2


def test_the_worker_writes_a_seg_and_sr_per_study(scored: dict) -> None:
    fu: Outcome = scored["follow_up"]
    outputs = fu.features.provenance["dicom_outputs"]  # type: ignore[union-attr]
    assert "stored_to" not in outputs  # not a DICOMweb acquisition: nothing sent back
    seg = pydicom.dcmread(outputs["seg"]["path"])
    seen = [r for r in fu.lesions if r.status is LesionStatus.SEEN]
    assert len(seg.SegmentSequence) == len(seen) == 5
    assert {s.TrackingID for s in seg.SegmentSequence} == {r.tracking_id for r in seen}
    sr = pydicom.dcmread(outputs["sr"]["path"])
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools (dciodvfy) not installed")
@pytest.mark.parametrize("which", ["baseline", "follow_up"])
@pytest.mark.parametrize("kind", ["seg", "sr"])
def test_the_workers_seg_and_sr_of_a_five_lesion_study_pass_dciodvfy(
    scored: dict, which: str, kind: str
) -> None:
    path = scored[which].features.provenance["dicom_outputs"][kind]["path"]
    run = subprocess.run(["dciodvfy", path], capture_output=True, text=True, check=False)
    report = run.stdout + run.stderr
    errors = [line for line in report.splitlines() if line.startswith("Error")]
    assert errors == [], report


def test_a_bad_segment_costs_one_lesion_and_is_named(scored: dict) -> None:
    root: Path = scored["root"]
    base: Outcome = scored["baseline"]
    images = ls.write_ct_with_simpleitk(
        root / "bad" / "CT", ls.image(ls.LESIONS, seed=9), study_uid=generate_uid()
    )
    masks = [e.mask() for e in ls.LESIONS]
    masks[1] = np.zeros_like(masks[1])  # the liver segment is empty
    ls.write_seg_with_highdicom(root / "bad" / "seg.dcm", images, masks)
    event = _event(root / "bad", root / "bad" / "seg.dcm", images, T0 + timedelta(days=42))
    request = scoring.imaging_request(event, [root])
    request.baseline = scoring.Baseline(
        base.source_event_id, root / "baseline", root / "baseline" / "seg.dcm", occurred_at=T0
    )
    assert base.assessment is not None
    request.tracking_state = base.assessment.tracking_state
    out = scoring.score_imaging(request)
    assert out.assessment is not None and out.features is not None
    failures = out.assessment.failures
    assert [(f["label"], f["problem"]) for f in failures] == [("liver met", "empty")]
    assert "'liver met'" in failures[0]["message"] and "empty" in failures[0]["message"]
    rows = {r.label: r for r in out.lesions}
    assert rows["liver met"].status is LesionStatus.NOT_EVALUABLE
    assert "liver met" in (rows["liver met"].failure or "")
    assert {r.status for k, r in rows.items() if k != "liver met"} == {LesionStatus.SEEN}
    assert out.features.provenance["failures"][0]["label"] == "liver met"  # type: ignore[index]
    assert out.assessment.irecist is IRecistState.INE  # a target could not be evaluated


def test_the_deformable_setting_reaches_the_registration(
    scored: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A follow-up without annotation is carried rigidly unless the site turns the B-spline
    stage on (IRTMON_DEFORMABLE_REGISTRATION): the setting goes from Settings through the
    request to the study's one registration."""
    from core.settings import Settings

    root: Path = scored["root"]
    base: Outcome = scored["baseline"]
    fu = root / "unannotated"  # the follow-up's CT without the reader's SEG
    shutil.copytree(root / "follow-up" / "CT", fu / "CT", dirs_exist_ok=True)
    images = [pydicom.dcmread(p) for p in sorted((fu / "CT").glob("*.dcm"))]
    event = _event(fu, fu / "seg.dcm", images, T0 + timedelta(days=42))
    event = event.model_copy(update={"lesion": None})
    tried = {}
    for value in ("false", "true"):
        monkeypatch.setenv("IRTMON_DEFORMABLE_REGISTRATION", value)
        on = Settings().deformable_registration
        request = scoring.imaging_request(event, [root], deformable=on)
        request.baseline = scoring.Baseline(
            base.source_event_id, root / "baseline", root / "baseline" / "seg.dcm", occurred_at=T0
        )
        assert base.assessment is not None
        request.tracking_state = base.assessment.tracking_state
        out = scoring.score_imaging(request)
        assert out.features is not None
        provenance = out.features.provenance
        assert provenance["mask_source"] == "propagated"
        tried[on] = provenance["registration"]["registration_bspline_tried"]
    assert tried == {False: False, True: True}


def test_the_radiomics_are_computed_when_the_site_or_a_model_asks(
    scored: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """IRTMON_RADIOMICS: 'auto' (the default) computes the radiomics and peritumoural features
    only when a promoted virtual biopsy reads them; the shipped one does not, so a study scored
    with it, or with no model, has none; 'on' computes them for every lesion."""
    import dataclasses

    from core.db.registry import ModelRef, ResponseModels
    from core.settings import Settings
    from models.registry import save_artifact
    from models.response.signature import load_signature, save_signature

    def radiomics_names(outcome: Outcome) -> set[str]:
        names = {k for r in outcome.lesions for k in (r.features or {})}
        return {n for n in names if n.startswith(scoring.RADIOMICS_PREFIXES)}

    assert radiomics_names(scored["baseline"]) == set()  # 'auto', no model promoted
    root: Path = scored["root"]
    images = [pydicom.dcmread(p) for p in sorted((root / "baseline" / "CT").glob("*.dcm"))]
    event = _event(root / "baseline", root / "baseline" / "seg.dcm", images, T0)
    monkeypatch.setenv("IRTMON_RADIOMICS", "on")
    request = scoring.imaging_request(event, [root], radiomics=Settings().radiomics)
    names = radiomics_names(scoring.score_imaging(request))
    assert any(n.startswith("rad_") for n in names) and any(n.startswith("peri_") for n in names)

    shipped = Path(__file__).resolve().parents[2] / "reference_models" / "ct-signature"
    folder = next(shipped.iterdir())
    card = json.loads((folder / "model.json").read_text())
    model = load_signature(folder, card["sha256"])
    names = [*model.names[:-1], "rad_morph_volume"]  # a site's model reading one radiomic
    model.standardiser = dataclasses.replace(model.standardiser, names=names)
    weights = save_signature(model, tmp_path / "ct-signature.pt")
    reading = save_artifact(tmp_path / "models", "ct-signature", "rad-1", weights)
    for ref, expected in (
        (ModelRef("ct-signature", card["version"], folder, card["sha256"]), False),
        (ModelRef("ct-signature", "rad-1", reading.folder, reading.sha256), True),
    ):
        request = scoring.imaging_request(event, [root])  # 'auto'
        request.models = ResponseModels(signature=ref, response=None, response_signature=None)
        assert scoring.wants_radiomics(request) is expected
    request.radiomics = "sometimes"
    with pytest.raises(ValueError, match="'auto', 'on' or 'off'"):
        scoring.wants_radiomics(request)
