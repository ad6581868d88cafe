"""analyse_study end to end: every lesion of a baseline, a follow-up read from its own SEG
(matched, one vanished, one new), a follow-up without annotation (every lesion propagated by
one registration), and bad annotations that cost one lesion, not the study."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from models.exceptions import NoLesionMeasuredError
from models.imaging import propagation
from models.imaging.annotations import LesionProblem
from models.imaging.lesion_results import StudyResult
from models.imaging.matching import MatchStatus
from models.imaging.study import analyse_study
from schemas.enums import IRecistState, LesionRole, Organ, RecistResponse
from tests.unit.imaging import lesion_study as ls

SHIFT = (2.5, 3.0, -4.0)  # the patient lies elsewhere at the follow-up (z, y, x mm)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, StudyResult]:
    root = tmp_path_factory.mktemp("baseline")
    images = ls.write_ct_with_simpleitk(root / "study" / "CT", ls.image())
    ls.write_seg_with_highdicom(root / "study" / "seg.dcm", images, [e.mask() for e in ls.LESIONS])
    result = analyse_study(
        root / "study", time=0.0, output_dir=root / "out", peritumoural=False, enhancement=False
    )
    return root, result


def test_baseline_reads_measures_and_selects_every_lesion(
    baseline: tuple[Path, StudyResult],
) -> None:
    _, result = baseline
    assert result.failures == []
    assert [r.label for r in result.lesions] == [
        "GTV lung",
        "liver met",
        "LN subcarinal",
        "adrenal",
        "rib",
    ]
    assert [r.tracking_id for r in result.lesions] == ["L1", "L2", "L3", "L4", "L5"]
    # 5 organs, all large enough; a bone lesion is non-target (RECIST 1.1, 3.1.2), listed last
    assert [r.role for r in result.lesions] == [LesionRole.TARGET] * 4 + [LesionRole.NON_TARGET]
    assert all(r.status is MatchStatus.BASELINE for r in result.lesions)
    truth = {e.label: e for e in ls.LESIONS}
    for r in result.lesions:
        e = truth[r.label]
        assert r.burden.longest_diameter_mm == pytest.approx(e.long_mm, rel=0.06)
        assert r.burden.short_axis_mm == pytest.approx(e.short_mm, rel=0.08)
        assert r.burden.volume_ml == pytest.approx(e.volume_ml, rel=0.06)
        # radiomics per lesion, on its own region, at its real spacing (mm3)
        assert r.features["rad_morph_volume"].value == pytest.approx(
            1000 * r.burden.volume_ml, rel=0.12
        )
    node = next(r for r in result.lesions if r.organ is Organ.LYMPH_NODE)
    assert node.is_node
    # sum of diameters: long axes, and the node's short axis
    expected_sum = sum(r.diameter_mm for r in result.lesions if r.role is LesionRole.TARGET)
    assert result.assessment.sum_mm == pytest.approx(expected_sum)
    assert result.study_features["lesions_sum_diameters_mm"].value == pytest.approx(expected_sum)
    assert result.assessment.state is IRecistState.ISD
    # the single-lesion fields describe the irradiated lesion (a GTV)
    gtv = result.lesions[0]
    assert result.primary_uid == gtv.tracking_uid and gtv.in_field
    assert result.burden == gtv.burden
    assert result.features["burden_volume_ml"].value == gtv.burden.volume_ml
    assert result.provenance["mask_source"] == "seg"
    assert result.study_features["lesions_in_field_sum_mm"].value == pytest.approx(gtv.diameter_mm)
    json.dumps(result.to_dict())


def test_baseline_outputs_have_one_segment_and_one_group_per_lesion(
    baseline: tuple[Path, StudyResult],
) -> None:
    _, result = baseline
    seg = pydicom.dcmread(result.outputs["seg"])
    assert len(seg.SegmentSequence) == 5
    assert [s.TrackingUID for s in seg.SegmentSequence] == [r.tracking_uid for r in result.lesions]
    assert Path(result.outputs["sr"]).is_file()


def test_tracking_uids_are_reproducible(baseline: tuple[Path, StudyResult]) -> None:
    root, result = baseline
    again = analyse_study(
        root / "study", time=0.0, radiomics=False, peritumoural=False, enhancement=False
    )
    assert [r.tracking_uid for r in again.lesions] == [r.tracking_uid for r in result.lesions]


def _follow_up(folder: Path, base: StudyResult, time: float, **options: object) -> StudyResult:
    """A follow-up read against the baseline, features off (they change nothing measured)."""
    return analyse_study(
        folder,
        baseline=base.as_baseline(),
        state=base.tracking,
        time=time,
        radiomics=False,
        peritumoural=False,
        enhancement=False,
        **options,  # type: ignore[arg-type]
    )


def _follow_up_lesions() -> list[ls.Ellipsoid]:
    gtv, _liver, node, rib, adrenal = ls.LESIONS
    return [
        gtv.moved(SHIFT, 0.7),  # responding
        node.moved(SHIFT, 1.25),  # growing
        rib.moved(SHIFT),
        adrenal.moved(SHIFT),
        ls.Ellipsoid("reader's lesion 5", (22.5, 48.0, 74.0), (5.0, 7.0, 6.0)),  # new
    ]  # the liver lesion has gone


def test_follow_up_from_its_own_seg_is_matched(
    baseline: tuple[Path, StudyResult], tmp_path: Path
) -> None:
    _, base = baseline
    lesions = _follow_up_lesions()
    images = ls.write_ct_with_simpleitk(
        tmp_path / "fu" / "CT",
        ls.image(lesions, seed=3, shift_mm=SHIFT),
        study_uid=generate_uid(),
        frame_of_reference=generate_uid(),
    )
    order = [3, 1, 4, 0, 2]  # the reader's own segment order, no link to the baseline
    ls.write_seg_with_highdicom(
        tmp_path / "fu" / "seg.dcm",
        images,
        [lesions[i].mask() for i in order],
        [lesions[i] for i in order],
    )
    result = _follow_up(tmp_path / "fu", base, 42.0, output_dir=tmp_path / "out")
    before = {r.label: r.tracking_uid for r in base.lesions}
    after = {r.tracking_uid: r for r in result.lesions}
    for label in ("GTV lung", "LN subcarinal", "rib", "adrenal"):
        r = after[before[label]]
        assert r.status is MatchStatus.MATCHED and r.label == label
        assert r.distance_mm < 3.0  # centres through the registration
    liver = after[before["liver met"]]
    assert liver.status is MatchStatus.NOT_SEEN and liver.burden is None
    (new,) = [r for r in result.lesions if r.status is MatchStatus.NEW]
    assert new.role is LesionRole.NEW_TARGET and new.tracking_id == "L6"
    assert new.tracking_uid not in before.values()
    a = result.assessment
    assert a.state is IRecistState.IUPD and a.recist is RecistResponse.PD
    assert a.new_lesions == 1 and a.target is RecistResponse.SD
    # the vanished target counts 0 mm in the sum; the rib is non-target
    assert a.sum_mm == pytest.approx(
        sum(after[before[k]].diameter_mm for k in ("GTV lung", "LN subcarinal", "adrenal"))
    )
    assert len(pydicom.dcmread(result.outputs["seg"]).SegmentSequence) == 5
    assert result.tracking is not None and len(result.tracking.timepoints) == 2


@pytest.mark.slow
def test_follow_up_without_annotation_propagates_every_lesion_with_one_registration(
    baseline: tuple[Path, StudyResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, base = baseline
    calls = []
    real = propagation.register

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(propagation, "register", counted)
    grown = [e.moved(SHIFT, 1.1) for e in ls.LESIONS]
    ls.write_ct_with_simpleitk(
        tmp_path / "fu" / "CT",
        ls.image(grown, seed=5, shift_mm=SHIFT),
        study_uid=generate_uid(),
    )
    result = _follow_up(tmp_path / "fu", base, 42.0)
    assert len(calls) == 1
    assert result.failures == []
    assert [r.status for r in result.lesions] == [MatchStatus.BY_UID] * 5
    truth = {e.label: e for e in grown}
    for r in result.lesions:
        assert r.source.value == "propagated"
        assert r.burden.longest_diameter_mm == pytest.approx(truth[r.label].long_mm, rel=0.1)
        assert r.quality["dice_propagated_refined"] > 0.7
    assert result.assessment.state is IRecistState.ISD


@pytest.mark.slow
def test_follow_up_without_annotation_where_every_lesion_has_gone_is_a_complete_response(
    baseline: tuple[Path, StudyResult], tmp_path: Path
) -> None:
    """No SEG at a follow-up (the reader drew nothing) and nothing at any lesion's registered
    site: the study is assessed, not refused; every lesion is not seen (0 mm)."""
    _, base = baseline
    ls.write_ct_with_simpleitk(
        tmp_path / "fu" / "CT", ls.image([], seed=7, shift_mm=SHIFT), study_uid=generate_uid()
    )
    result = _follow_up(tmp_path / "fu", base, 84.0, output_dir=tmp_path / "out")
    assert len(result.failures) == 5
    assert all(f.problem is LesionProblem.NOT_FOUND for f in result.failures)
    assert [r.status for r in result.lesions] == [MatchStatus.NOT_SEEN] * 5
    assert all(r.burden is None and r.diameter_mm == 0.0 for r in result.lesions)
    a = result.assessment
    assert a.recist is RecistResponse.CR and a.state is IRecistState.ICR
    assert a.sum_mm == 0.0
    assert result.burden.volume_ml == 0.0 and result.burden.longest_diameter_mm == 0.0
    assert result.primary_uid == next(r.tracking_uid for r in base.lesions if r.label == "GTV lung")
    assert result.features["burden_volume_ml"].value == 0.0
    assert "seg" not in result.outputs  # nothing to outline; the SR says what was assessed
    assert pydicom.dcmread(result.outputs["sr"]).Modality == "SR"


@pytest.mark.slow
def test_a_carried_lesion_that_has_gone_is_not_seen_one_outside_the_scan_not_evaluable(
    baseline: tuple[Path, StudyResult], tmp_path: Path
) -> None:
    _, base = baseline
    gtv, _liver, node, rib, adrenal = ls.LESIONS
    present = [e.moved(SHIFT) for e in (gtv, node, rib, adrenal)]  # the liver lesion has gone
    ls.write_ct_with_simpleitk(
        tmp_path / "fu" / "CT", ls.image(present, seed=9, shift_mm=SHIFT), study_uid=generate_uid()
    )
    result = _follow_up(tmp_path / "fu", base, 42.0)
    by_label = {r.label: r for r in result.lesions}
    assert by_label["liver met"].status is MatchStatus.NOT_SEEN
    assert [f.problem for f in result.failures] == [LesionProblem.NOT_FOUND]
    assert all(by_label[e.label].status is MatchStatus.BY_UID for e in present)
    assert result.assessment.recist is not None  # evaluable: the gone lesion counts 0 mm


def test_bad_segments_cost_one_lesion_each_not_the_study(
    baseline: tuple[Path, StudyResult], tmp_path: Path
) -> None:
    _, base = baseline
    images = ls.write_ct_with_simpleitk(
        tmp_path / "fu" / "CT", ls.image(ls.LESIONS, seed=9), study_uid=generate_uid()
    )
    masks = [e.mask() for e in ls.LESIONS]
    masks[1] = np.zeros_like(masks[1])  # liver: empty segment
    masks[4] = masks[4] | np.roll(masks[3], 6, axis=1)  # adrenal spills onto the rib
    ls.write_seg_with_highdicom(tmp_path / "fu" / "seg.dcm", images, masks)
    result = _follow_up(tmp_path / "fu", base, 42.0)
    problems = {f.label: f.problem for f in result.failures}
    assert problems == {
        "liver met": LesionProblem.EMPTY,
        "rib": LesionProblem.OVERLAP,
        "adrenal": LesionProblem.OVERLAP,
    }
    assert all(f["message"] for f in result.provenance["failures"])
    seen = {r.label for r in result.lesions if r.seen}
    assert seen == {"GTV lung", "LN subcarinal"}
    # a failed read is no evidence that a lesion is gone: not evaluable, not 0 mm
    unread = [r for r in result.lesions if not r.seen]
    assert {r.status for r in unread} == {MatchStatus.NOT_EVALUABLE}
    assert result.assessment.state is IRecistState.INE
    assert result.assessment.recist is RecistResponse.NE


def test_a_study_with_no_usable_lesion_says_why(tmp_path: Path) -> None:
    images = ls.write_ct_with_simpleitk(tmp_path / "s" / "CT", ls.image(ls.LESIONS[:2]))
    masks = [np.zeros_like(ls.LESIONS[0].mask()), np.zeros_like(ls.LESIONS[1].mask())]
    ls.write_seg_with_highdicom(tmp_path / "s" / "seg.dcm", images, masks, ls.LESIONS[:2])
    with pytest.raises(NoLesionMeasuredError, match="segment 1 'GTV lung' is empty") as info:
        analyse_study(tmp_path / "s", time=0.0, radiomics=False)
    assert len(info.value.failures) == 2


def test_a_lesion_too_small_for_radiomics_is_measured_and_the_study_scored(
    baseline: tuple[Path, StudyResult], tmp_path: Path
) -> None:
    """The irradiated lesion shrunk to two voxels (high local control): radiomics cannot run
    on it, yet every lesion is measured and the study is scored; the provenance says which
    lesion's features were skipped and why."""
    _, base = baseline
    images = ls.write_ct_with_simpleitk(
        tmp_path / "fu" / "CT", ls.image(ls.LESIONS, seed=5), study_uid=generate_uid()
    )
    masks = [e.mask() for e in ls.LESIONS]
    z, y, x = (int(v) for v in np.argwhere(masks[0]).mean(axis=0))
    tiny = np.zeros_like(masks[0])
    tiny[z, y, x : x + 2] = True  # 2 voxels (4 mm3): under radiomics' 8 at 1 mm
    masks[0] = tiny
    ls.write_seg_with_highdicom(tmp_path / "fu" / "seg.dcm", images, masks)
    result = analyse_study(
        tmp_path / "fu",
        baseline=base.as_baseline(),
        state=base.tracking,
        time=42.0,
        peritumoural=False,
        enhancement=False,
    )
    assert result.failures == []
    assert all(r.seen for r in result.lesions)
    gtv = result.lesions[0]
    assert gtv.label == "GTV lung" and gtv.burden.volume_ml < 0.05
    assert "too small for radiomics" in gtv.features_problem
    assert not any(k.startswith("rad_") for k in gtv.features)
    assert result.provenance["features_skipped"] == {gtv.tracking_id: gtv.features_problem}
    others = [r for r in result.lesions if r is not gtv]
    assert all("rad_morph_volume" in r.features and r.features_problem is None for r in others)
