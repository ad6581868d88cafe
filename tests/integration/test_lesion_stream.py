"""Every lesion through the real stack: a story-v2 cohort (a non-responder with two lesions; a
hyperprogression with five lesions, one going against the course, and two new lesions) replayed
through a worker.

Checks: every tracked lesion stored once per scan, and the same rows after a second replay and
after a re-score; one tracking identity per truth lesion across scans; the new lesion found at
the scan that first shows it; the iRECIST state of each scan as the rules give it on the truth;
the SEG and SR written; the change-point inputs read from the lesions. A SEG with an empty
segment costs that lesion only (named with its segment); a SEG where nothing can be measured is
dead-lettered with every segment named; a follow-up without annotation where no carried lesion
can be evaluated is a stored NE timepoint that the decision rule, the timeline and FHIR read.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections import defaultdict
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
import pydicom
import pytest
from pydicom.pixels import pack_bits
from pydicom.uid import generate_uid

from bench.lesion_accuracy import truth_categories, truth_new_lesions
from clinic import load_events
from core.db import connect, history, lesions
from core.publish import Publisher
from core.settings import Settings
from schemas import ImagingAcquired, LesionReference, TreatmentEvent
from schemas.enums import IRECIST_SCORE, IRecistState
from schemas.results import NEW_LESIONS_SCORE, Outcome
from streams import scoring
from tests.integration.conftest import Workers, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def rows(settings: Settings, sql: str, params: tuple) -> list[tuple]:
    with psycopg.connect(settings.dsn, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


def _status(settings: Settings, ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    return dict(
        rows(settings, "SELECT event_id, status FROM acquisitions WHERE event_id = ANY(%s)", (ids,))
    )


def _snapshot(settings: Settings, patients: list[str]) -> tuple:
    lesion_rows = rows(
        settings,
        "SELECT source_event_id, tracking_uid, tracking_id, role, status, match, long_axis_mm, "
        "short_axis_mm, volume_ml, origin, segment_number, failure FROM lesion_measurements "
        "WHERE patient = ANY(%s) ORDER BY 1, 2",
        (patients,),
    )
    assessments = rows(
        settings,
        "SELECT source_event_id, timepoint, irecist_state, recist, sum_diameters_mm, "
        "in_field_sum_mm, out_of_field_sum_mm, new_lesions, tracking_state "
        "FROM lesion_assessments WHERE patient = ANY(%s) ORDER BY 1",
        (patients,),
    )
    scores = rows(
        settings,
        "SELECT event_id, score_name, value FROM timepoint_scores WHERE patient = ANY(%s) "
        "AND model_name = 'irtmon-lesions' ORDER BY 1",
        (patients,),
    )
    return lesion_rows, assessments, scores


@pytest.fixture(scope="module")
def replayed(settings: Settings, cohort_v2: Path, tmp_path_factory: pytest.TempPathFactory):
    """The cohort's treatment and imaging events published and scored by one worker."""
    events = [e for e in load_events(cohort_v2) if isinstance(e, ImagingAcquired | TreatmentEvent)]
    imaging = [e for e in events if isinstance(e, ImagingAcquired)]
    ids = [e.event_id for e in imaging]
    workers = Workers(settings, tmp_path_factory.mktemp("lesion-workers"))
    workers.start()
    try:
        with Publisher(settings) as pub:
            pub.publish(events)

        def settled() -> bool:  # one read: two could see the last rows appear in between
            status = _status(settings, ids)
            return len(status) == len(ids) and set(status.values()) <= {"scored", "failed"}

        wait_for(
            settled,
            timeout=1500,
            what="every imaging acquisition of the v2 cohort settled",
        )
        yield {"events": events, "imaging": imaging, "workers": workers}
    finally:
        workers.stop_all()


def _first_split_at_a_threshold(
    got: list[str], expected: list[str], truth_sums_mm: list[float]
) -> int | None:
    """The first follow-up where the pipeline's iRECIST state differs from the truth's, when
    the truth's target sum there lies within a measurement error (3 % of the sum, or 1 mm on
    the 5 mm rule) of a RECIST 1.1 threshold: +20 % and +5 mm over the nadir, -30 % from
    baseline. None when the states agree or differ elsewhere (the caller's assertion fails)."""
    for i in range(1, min(len(got), len(expected))):
        if got[i] == expected[i]:
            continue
        s, nadir, base = truth_sums_mm[i], min(truth_sums_mm[:i]), truth_sums_mm[0]
        near = (
            abs(s - 1.2 * nadir) <= 0.03 * s
            or abs((s - nadir) - 5.0) <= 1.0
            or abs(s - 0.7 * base) <= 0.03 * s
        )
        return i if near else None
    return None


def _truth(cohort: Path, patient: str) -> dict:
    return json.loads((cohort / "ground_truth" / f"{patient}.json").read_text())


@pytest.mark.timeout(2400)
def test_every_lesion_is_stored_once_tracked_and_assessed(
    settings: Settings, cohort_v2: Path, replayed: dict
) -> None:
    imaging: list[ImagingAcquired] = replayed["imaging"]
    patients = sorted({e.patient for e in imaging})
    status = _status(settings, [e.event_id for e in imaging])
    assert set(status.values()) == {"scored"}, status
    with connect(settings) as conn:
        assert lesions.duplicate_lesion_rows(conn, patients) == 0
    first = _snapshot(settings, patients)
    assert len(first[1]) == len(imaging)  # one assessment per scan

    at_threshold: list[tuple] = []
    for patient in patients:
        truth = _truth(cohort_v2, patient)
        mine = sorted((e for e in imaging if e.patient == patient), key=lambda e: e.occurred_at)
        with connect(settings) as conn:
            stored = lesions.patient_lesions(conn, patient, cohorts=None)
            assessed = lesions.patient_assessments(conn, patient, cohorts=None)
            series, sources = history.load_assessments(conn, patient)
        by_event = defaultdict(list)
        for r in stored:
            by_event[r["source_event_id"]].append(r)
        # one tracking identity per truth lesion: the reader's segment (or ROI) of each scan
        # is followed to the tracking UID it was stored under
        uid_of_track: dict[int, set[str]] = defaultdict(set)
        track_of_uid: dict[str, set[int]] = defaultdict(set)
        tracked_so_far: set[str] = set()
        newly = truth_new_lesions(truth["timepoints"])
        for tp, ev in zip(truth["timepoints"], mine, strict=True):
            here = by_event[ev.event_id]
            assert {r["tracking_uid"] for r in here} >= tracked_so_far  # no lesion dropped
            tracked_so_far |= {r["tracking_uid"] for r in here}
            by_segment = {r["segment_number"]: r for r in here if r["status"] == "seen"}
            drawn = [t for t in tp["lesions"] if t["seg_segment_number"] is not None]
            assert len(by_segment) == len(drawn), (patient, tp["timepoint"])
            for t in drawn:
                r = by_segment[t["seg_segment_number"]]
                uid_of_track[t["track_id"]].add(r["tracking_uid"])
                track_of_uid[r["tracking_uid"]].add(t["track_id"])
                if newly.get(int(t["track_id"])) == tp["timepoint"]:
                    # the new lesion (iRECIST, an equivocal node only once unequivocal), found
                    # at the scan where the truth makes it new
                    assert r["role"] in ("new_target", "new_non_target"), r
                    assert r["match"] == "new", r
        assert all(len(u) == 1 for u in uid_of_track.values()), uid_of_track
        assert all(len(t) == 1 for t in track_of_uid.values()), track_of_uid
        ids_of = defaultdict(set)
        for r in stored:
            ids_of[r["tracking_uid"]].add(r["tracking_id"])
        assert all(len(v) == 1 for v in ids_of.values())  # tracking ids stable
        # iRECIST per scan as the rules say on the truth (the pipeline's target selection)
        categories = truth_categories(truth["timepoints"], "pipeline")
        expected = [c["irecist"] for c in categories]
        stored_states = [IRecistState(a["irecist_state"]).label for a in assessed]
        got = stored_states
        split = _first_split_at_a_threshold(got, expected, [c["sum_mm"] for c in categories])
        if split is not None:  # measured within a reader's error of a RECIST threshold
            at_threshold.append((patient, split, got, expected))
            got, expected = got[:split], expected[:split]  # later states follow that call
        assert got[1:] == expected[1:], (patient, got, expected)
        # the change-point rule reads the lesions: target sums, new lesions, the same states
        assert [s.label for s in series.irecist_states] == stored_states
        assert list(series.sum_diameters_mm) == [a["sum_diameters_mm"] for a in assessed]
        assert list(series.new_lesions) == [a["new_lesions"] for a in assessed]
        assert list(sources) == [e.event_id for e in mine]
        # one stored iRECIST state per follow-up: the lesions' (the rule stores none); the
        # app tests' seed (model seed-lesions) writes the same cohort's patients beside them
        states = rows(
            settings,
            "SELECT model_name, count(*) FROM timepoint_scores WHERE patient = %s "
            "AND score_name = 'irecist_state' AND model_name NOT LIKE 'seed-%%' GROUP BY 1",
            (patient,),
        )
        assert states == [("irtmon-lesions", len(mine) - 1)]
        # the SEG and SR of every scan: one segment per lesion seen
        for ev in mine:
            prov = rows(
                settings,
                "SELECT provenance FROM acquisition_features WHERE source_event_id = %s "
                "AND extractor = 'irtmon-imaging'",
                (ev.event_id,),
            )[0][0]
            outputs = prov["dicom_outputs"]
            seen = [r for r in by_event[ev.event_id] if r["status"] == "seen"]
            seg = pydicom.dcmread(outputs["seg"]["path"])
            assert {s.TrackingUID for s in seg.SegmentSequence} == {r["tracking_uid"] for r in seen}
            sr = pydicom.dcmread(outputs["sr"]["path"])
            assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"

    # a call may differ from the truth's only where the truth sits within a measurement error
    # of a RECIST 1.1 threshold, and for few patients (bench.lesion_accuracy counts the rate)
    assert len(at_threshold) <= max(1, len(patients) // 5), at_threshold

    # the hyperprogression's new lesions made the pipeline's own iUPD/iCPD
    assert any(
        IRecistState(a[2]) in (IRecistState.IUPD, IRecistState.ICPD) and a[7] > 0 for a in first[1]
    )

    # published twice: the same rows
    with Publisher(settings) as pub:
        pub.publish(replayed["events"])
    sentinel = replayed["imaging"][0].model_copy(
        update={
            "event_id": uuid.uuid4(),
            "patient": "psn-" + uuid.uuid4().hex[:16],
            "lesion": None,
        }
    )
    with Publisher(settings) as pub:
        pub.publish([sentinel])
    wait_for(
        lambda: (
            _status(settings, [sentinel.event_id]).get(sentinel.event_id) in ("scored", "failed")
        ),
        timeout=900,
        what="the sentinel after the replay",
    )
    assert _snapshot(settings, patients) == first

    # re-scored (the scoring seam, as the worker runs it): the same rows again
    follow_up = sorted(
        (e for e in imaging if e.patient == patients[0]), key=lambda e: e.occurred_at
    )[2]
    request = scoring.imaging_request(
        follow_up, settings.data_roots, derived_dir=settings.derived_dir.resolve()
    )
    with connect(settings) as conn:
        request = scoring.with_history(conn, request)
    outcome: Outcome = scoring.score_imaging(request)
    with connect(settings) as conn:
        scoring.store_outcome(conn, outcome)
        conn.commit()
    assert _snapshot(settings, patients) == first


def _ct_follow_up(cohort: Path, imaging: list[ImagingAcquired]) -> tuple[ImagingAcquired, dict]:
    """A conventional-CT follow-up whose SEG draws at least two lesions, and its truth."""
    for ev in sorted(imaging, key=lambda e: e.occurred_at):
        truth = _truth(cohort, ev.patient)
        tp = next(t for t in truth["timepoints"] if t["study_uid"] == ev.study_uid)
        drawn = [t for t in tp["lesions"] if t["seg_segment_number"] is not None]
        if tp["timepoint"] > 0 and tp["modality"] == "CT" and len(drawn) >= 2:
            return ev, tp
    raise AssertionError("the cohort has no CT follow-up with two lesions drawn")


def _empty_segments(folder: Path, empty: set[int]) -> Path:
    """The study's SEG with the frames of segments ``empty`` set to 0 (a reader's SEG whose
    segments hold nothing), under a new SOP Instance UID; the original SEG is removed."""
    original = folder / "SEG.dcm"
    ds = pydicom.dcmread(original)
    frames = ds.pixel_array.copy()
    if frames.ndim == 2:
        frames = frames[None]
    for i, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
        if int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber) in empty:
            frames[i] = 0
    if int(ds.BitsAllocated) == 1:
        ds.PixelData = pack_bits(frames.astype(np.uint8))
    else:
        ds.PixelData = frames.astype(np.uint8).tobytes()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    original.unlink()
    out = folder / "reader-seg.dcm"
    ds.save_as(out, enforce_file_format=True)
    return out


@pytest.mark.timeout(1800)
def test_a_bad_segment_costs_one_lesion_and_an_unusable_seg_is_dead_lettered(
    settings: Settings, cohort_v2: Path, replayed: dict
) -> None:
    imaging: list[ImagingAcquired] = replayed["imaging"]
    source, tp = _ct_follow_up(cohort_v2, imaging)
    last = max(e.occurred_at for e in imaging if e.patient == source.patient)
    drawn = sorted(t["seg_segment_number"] for t in tp["lesions"] if t["seg_segment_number"])
    cases = {}
    for name, empty in (("one-empty", {drawn[1]}), ("all-empty", set(drawn))):
        folder = Path(settings.data_roots[0]) / f"bad-seg-{name}-{uuid.uuid4().hex[:6]}"
        shutil.copytree(Path(source.location.path), folder)  # type: ignore[union-attr]
        seg = _empty_segments(folder, empty)
        cases[name] = source.model_copy(
            update={
                "event_id": uuid.uuid4(),
                "occurred_at": last + timedelta(days=42),
                "location": source.location.model_copy(update={"path": str(folder)}),
                "lesion": LesionReference(kind="seg", path=str(seg)),
            }
        )
    # nothing measurable at a patient's first scan: no baseline to carry lesions over from
    cases["all-empty"] = cases["all-empty"].model_copy(
        update={"patient": "psn-" + uuid.uuid4().hex[:16]}
    )
    with Publisher(settings) as pub:
        pub.publish([cases["one-empty"]])
    ev = cases["one-empty"]
    wait_for(
        lambda: _status(settings, [ev.event_id]).get(ev.event_id) in ("scored", "failed"),
        timeout=900,
        what="the study with an empty segment",
    )
    assert _status(settings, [ev.event_id])[ev.event_id] == "scored"
    label = next(t["seg_label"] for t in tp["lesions"] if t["seg_segment_number"] == drawn[1])
    (failures,) = rows(
        settings,
        "SELECT failures FROM lesion_assessments WHERE source_event_id = %s",
        (ev.event_id,),
    )[0]
    assert [(f["label"], f["number"], f["problem"]) for f in failures] == [
        (label, drawn[1], "empty")
    ]
    prov = rows(
        settings,
        "SELECT provenance FROM acquisition_features WHERE source_event_id = %s",
        (ev.event_id,),
    )[0][0]
    assert prov["failures"][0]["label"] == label
    stored = rows(
        settings,
        "SELECT status, failure FROM lesion_measurements WHERE source_event_id = %s",
        (ev.event_id,),
    )
    seen = [s for s in stored if s[0] == "seen"]
    assert len(seen) == len(drawn) - 1  # the rest measured
    unreadable = [s for s in stored if s[0] == "not_evaluable"]
    assert unreadable and all(label in s[1] for s in unreadable)  # named in the row

    # nothing measurable: dead-lettered, every segment named
    bad = cases["all-empty"]
    with Publisher(settings) as pub:
        pub.publish([bad])
    wait_for(
        lambda: bool(
            rows(settings, "SELECT 1 FROM dead_letters WHERE failed_event_id = %s", (bad.event_id,))
        ),
        timeout=900,
        what="the dead letter of the SEG with no usable segment",
    )
    error_class, reason = rows(
        settings,
        "SELECT error_class, reason FROM dead_letters WHERE failed_event_id = %s",
        (bad.event_id,),
    )[0]
    assert error_class == "NoLesionMeasuredError"
    for t in tp["lesions"]:
        if t["seg_segment_number"] is not None:
            assert f"'{t['seg_label']}'" in reason, reason
    assert _status(settings, [bad.event_id])[bad.event_id] == "failed"
    assert all(p.poll() is None for p in replayed["workers"].procs)


def test_a_follow_up_with_no_lesion_evaluable_is_stored_not_evaluable(
    settings: Settings, replayed: dict
) -> None:
    """A follow-up without annotation whose carried lesions cannot be outlined (drawn by the
    reader on plain fat, so nothing tells them from their background) is a stored NE timepoint,
    not a dead letter: its lesions say why, no burden is made up, and what the app, the
    decision rule and FHIR read of the patient holds."""
    from core.db import alerts, audit, events, scores
    from monitoring_app import charts
    from schemas.fhir import lesion_observations
    from tests.unit.imaging import lesion_study as ls
    from tests.unit.test_scoring_lesions import _event
    from tests.unit.test_scoring_not_evaluable import FAINT, SHIFT, T0

    root = Path(settings.data_roots[0]) / f"not-evaluable-{uuid.uuid4().hex[:6]}"
    base_images = ls.write_ct_with_simpleitk(root / "baseline" / "CT", ls.image([]))
    seg = root / "baseline" / "seg.dcm"
    ls.write_seg_with_highdicom(seg, base_images, [e.mask() for e in FAINT], FAINT)
    fu_images = ls.write_ct_with_simpleitk(
        root / "follow-up" / "CT", ls.image([], seed=4, shift_mm=SHIFT), study_uid=generate_uid()
    )
    patient = "psn-" + uuid.uuid4().hex[:16]
    base = _event(root / "baseline", seg, base_images, T0, patient)
    follow_up = _event(root / "follow-up", None, fu_images, T0 + timedelta(days=42), patient)
    with Publisher(settings) as pub:
        pub.publish([base, follow_up])
    ids = [base.event_id, follow_up.event_id]
    wait_for(
        lambda: (
            set(_status(settings, ids).values()) <= {"scored", "failed"}
            and len(_status(settings, ids)) == 2
        ),
        timeout=900,
        what="the baseline and its not-evaluable follow-up",
    )
    assert _status(settings, ids) == {base.event_id: "scored", follow_up.event_id: "scored"}
    ev = follow_up.event_id
    assert rows(settings, "SELECT 1 FROM dead_letters WHERE failed_event_id = %s", (ev,)) == []
    stored = rows(
        settings,
        "SELECT label, status, long_axis_mm, failure FROM lesion_measurements "
        "WHERE source_event_id = %s ORDER BY label",
        (ev,),
    )
    assert [(r[0], r[1], r[2]) for r in stored] == [
        (e.label, "not_evaluable", None) for e in sorted(FAINT, key=lambda e: e.label)
    ]
    assert all(r[0] in r[3] and "not evaluable" in r[3] for r in stored)
    ((state, recist),) = rows(
        settings,
        "SELECT irecist_state, recist FROM lesion_assessments WHERE source_event_id = %s",
        (ev,),
    )
    assert (state, recist) == (int(IRecistState.INE), "NE")
    no_burden = "SELECT count(*) FROM tumour_measurements WHERE source_event_id = %s"
    assert rows(settings, no_burden, (ev,)) == [(0,)]
    names = rows(
        settings,
        "SELECT score_name FROM timepoint_scores WHERE source_event_id = %s ORDER BY 1",
        (ev,),
    )
    assert sorted(n[0] for n in names) == sorted([IRECIST_SCORE, NEW_LESIONS_SCORE])

    with connect(settings) as conn:
        series, sources = history.load_assessments(conn, patient)
        assert sources == (base.event_id,)  # the NE scan is no burden point
        assert len(series) == 1
        assessed = lesions.patient_assessments(conn, patient, cohorts=None)
        measured = lesions.patient_lesions(conn, patient, cohorts=None)
        data = {
            "scores": pd.DataFrame(scores.patient_scores_with_source(conn, patient, cohorts=None)),
            "burden": pd.DataFrame(scores.patient_burden(conn, patient, cohorts=None)),
            "lesions": pd.DataFrame(measured),
            "assessments": pd.DataFrame(assessed),
            "treatments": pd.DataFrame(events.patient_treatments(conn, patient, cohorts=None)),
            "alerts": pd.DataFrame(alerts.patient_alerts(conn, patient, cohorts=None)),
            "actions": pd.DataFrame(audit.alert_actions(conn, patient, cohorts=None)),
        }
    fig = charts.timeline_figure(data)
    (ne,) = [t for t in fig.data if t.name == "not evaluable (NE)"]
    assert list(ne.text) == ["NE · iNE"]
    group = lesion_observations(
        patient, assessed[-1], [r for r in measured if r["source_event_id"] == ev]
    )[0]
    comp = {c.code.coding[0].code: c for c in group.component}
    assert comp["sum-diameters"].valueQuantity is None
    assert comp["sum-diameters"].dataAbsentReason.text == "not evaluable"
