"""Accuracy of the every-lesion imaging pipeline against a story-v2 cohort's truth.

Run ``python -m bench.lesion_accuracy --cohort DIR`` (``--help`` for options) on a cohort
written by ``irtmon clinic generate --story v2``. Each patient's studies are read in time order
as the worker reads them (:func:`models.imaging.analyse_study` with the annotations the worker
chooses, :func:`streams.scoring.study_annotations`: each study's own SEG, the planning study's
RTSTRUCT where it has no SEG, none when a follow-up shows no lesion; a follow-up registered to
the baseline, its lesions matched to the tracking state after the previous study) and
compared with ``ground_truth/<pseudonym>.json``:

* **long axis**: each measured lesion is the truth lesion under most of its mask (the study's
  ``labels.npz``, the true label map); error = measured / true long axis - 1 (median of the
  absolute values, %);
* **matching**: every decision at a follow-up is checked: a lesion continued on a tracked one
  (matched, or the same tracking UID) is right when both are the same truth lesion; a new
  track is right when its truth lesion was not drawn in any earlier study of the patient; a
  tracked normal node grown into a new lesion (under its own UID) is right when it is still
  the same truth lesion; a tracked lesion called not seen is right when the reader did
  not draw it;
* **new lesions** in iRECIST's sense (a new node under 10 mm short axis is normal, not a new
  lesion, as is an equivocal one of 10 to 15 mm; a normal node becomes one when it is
  unequivocal, :func:`models.changepoint.recist.node_unequivocally_new`;
  :func:`truth_new_lesions` applies the pipeline's rules to the true sizes): sensitivity over
  the truth's new lesions at the study where the truth makes them new (detected when the
  pipeline has called that lesion new by that study: a call one study early is counted once,
  as a false new lesion where it was made); false new lesions: lesions the pipeline calls
  new (a new target or new non-target) that are not a new lesion of the truth by then, that
  it had called new before, or that cover no truth lesion, as a share of the lesions called
  new and of every lesion seen at a follow-up;
* **RECIST 1.1 category** per follow-up against the category computed from the truth (true
  diameters and volumes of every lesion present, each lesion followed without error) by the
  same rules (:class:`models.changepoint.irecist.Irecist`). Two truths are reported: with the
  clinic's measurability (its bone lesions are lytic without a soft-tissue mass, hence never
  measurable under RECIST 1.1), and with the pipeline's own selection rules (long axis, node
  short axis); the first is the reference.

A follow-up the pipeline fails on counts as a RECIST 1.1 disagreement (and makes no matching
decision). Each target is reported with its 95 % interval (:func:`target_estimates`: patient
bootstrap, proportions widened to at least the Wilson score interval) and judged by the one rule
of every report (:func:`models.evaluation.judge`: met only when the interval clears the target).
With ``--declaration``, the cohort is a pre-declared test cohort: the protocol's checks run
first, the look is logged before anything is read, and the results are written once to
``docs/evaluation/results/`` (``docs/evaluation/README.md``). A declaration in parts (several
test cohorts, each too long to generate and read with the others in one sitting on this
machine) is read one ``--part`` at a time: each part's per-patient rows are kept in
``docs/evaluation/results/<id>.part-<name>.json.gz`` and nothing is computed from them until
the run that reads the last part pools every part's patients into the one analysis.

Features (radiomics, peritumoural ring, enhancement) are switched off: they do not change what
is measured or matched. This checks the imaging pipeline against the clinic's truth; it is not
a model evaluation and tunes nothing.
"""

from __future__ import annotations

import argparse
import getpass
import json
import math
import os
import statistics
import sys
import time
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from clinic import load_events
from irtmon.protocol import (
    open_evaluation,
    read_parts,
    record_look,
    write_part,
    write_results,
)
from models.changepoint.irecist import Irecist
from models.changepoint.recist import (
    LesionMeasure,
    RecistConfig,
    Timepoint,
    new_lesion_roles,
    select_baseline,
)
from models.evaluation import bootstrap, wilson
from models.evaluation.declaration import load_declaration
from models.evaluation.estimate import Estimate, IntervalMethod
from models.evaluation.targets import Direction, Target, judge
from models.exceptions import IrtmonError
from models.imaging.matching import MatchStatus, TrackingState
from models.imaging.study import analyse_study
from schemas import ImagingAcquired, Modality
from schemas.enums import LesionRole, Organ
from streams.scoring import study_annotations

REPO = Path(__file__).resolve().parents[1]

TARGETS = {
    "long_axis_median_abs_error_pct": ("<", 5.0),
    "matching_correct_pct": (">=", 98.0),
    "new_lesion_sensitivity_pct": (">=", 95.0),
    "false_new_lesion_pct": ("<=", 2.0),
    "recist_agreement_pct": (">=", 95.0),
}


# ----------------------------------------------------------------------------- truth


def _measure(row: dict[str, Any], role: LesionRole, rule: str) -> LesionMeasure:
    """A truth lesion row as RECIST reads it (its true sizes; not visible: gone)."""
    organ = Organ(row["organ"])
    return LesionMeasure(
        tracking_uid=str(row["track_id"]),
        role=role,
        organ=organ,
        is_node=organ is Organ.LYMPH_NODE,
        long_axis_mm=float(row["long_axis_mm"]),
        short_axis_mm=float(row["short_axis_mm"]),
        volume_ml=float(row["volume_ml"]),
        seen=bool(row["visible"]),
        in_field=bool(row["in_field"]),
    )


def _for_selection(m: LesionMeasure, row: dict[str, Any], rule: str) -> LesionMeasure:
    """The measure the role selection sees: with the ``clinic`` rule, a lesion the truth calls
    not measurable (a lytic bone lesion, a node under 15 mm short axis) reads as too small to be
    a target. A node keeps its short axis up to just under the measurable 15 mm, so one of 10 to
    15 mm stays a pathological non-target node (RECIST 1.1) instead of turning normal."""
    if rule == "clinic" and not row["measurable"]:
        cap = RecistConfig().node_measurable_mm - 0.01 if m.is_node else 9.99
        return replace(m, long_axis_mm=0.0, short_axis_mm=min(m.short_axis_mm or 0.0, cap))
    return m


def truth_roles(timepoints: list[dict[str, Any]], rule: str) -> list[dict[str, LesionRole]]:
    """Each lesion's RECIST 1.1 / iRECIST role after each timepoint, from the truth (its true
    sizes, every lesion followed without error), by the pipeline's rules: baseline selection at
    the first timepoint; a lesion first drawn later is categorised as new (a node under 10 mm
    short axis, or an equivocal one of 10 to 15 mm, is normal); a normal node whose true short
    axis makes it an unequivocal new lesion (:func:`models.changepoint.recist.
    node_unequivocally_new`, from its smallest true short axis so far) is a new lesion from then
    on, categorised with that timepoint's new lesions (as :func:`models.imaging.matching.track`
    does). ``rule``: ``clinic`` measurability or the pipeline's ``pipeline`` selection."""
    node_mm = RecistConfig().node_pathological_mm
    roles: dict[str, LesionRole] = {}
    organ_of: dict[str, Organ] = {}
    smallest: dict[str, float] = {}  # each lesion's smallest true short axis so far, where seen
    out: list[dict[str, LesionRole]] = []
    for i, tp in enumerate(timepoints):
        rows = {str(r["track_id"]): r for r in tp["lesions"]}
        for k, r in rows.items():
            organ_of.setdefault(k, Organ(r["organ"]))
        grown = [
            k
            for k, role in roles.items()
            if role is LesionRole.NORMAL_NODE
            and k in rows
            and rows[k]["visible"]
            and float(rows[k]["short_axis_mm"]) >= node_mm
        ]
        fresh = [k for k, r in rows.items() if k not in roles and r["visible"]]
        candidates = [*grown, *fresh] if i else fresh
        sel = [
            _for_selection(_measure(rows[k], LesionRole.NON_TARGET, rule), rows[k], rule)
            for k in candidates
        ]
        if i == 0:
            chosen = select_baseline(sel)
        else:
            earlier = [
                LesionMeasure(k, role, organ=organ_of[k], is_node=organ_of[k] is Organ.LYMPH_NODE)
                for k, role in roles.items()
                if role.is_new
            ]
            chosen = new_lesion_roles(sel, earlier, None, [smallest.get(k) for k in candidates])
        for k, role in zip(candidates, chosen, strict=True):
            roles[k] = role
        for k, r in rows.items():
            if r["visible"]:
                sa = float(r["short_axis_mm"])
                smallest[k] = min(sa, smallest.get(k, sa))
        out.append(dict(roles))
    return out


def truth_categories(timepoints: list[dict[str, Any]], rule: str) -> list[dict[str, Any]]:
    """RECIST 1.1 and iRECIST per timepoint from the truth: every lesion present, its true
    size, followed without error, with the roles of :func:`truth_roles`."""
    out_tps: list[Timepoint] = []
    for tp, roles in zip(timepoints, truth_roles(timepoints, rule), strict=True):
        rows = {str(r["track_id"]): r for r in tp["lesions"]}
        measures = []
        for k, role in roles.items():
            r = rows.get(k)
            if r is None:  # no longer in the truth table: gone
                organ = _organ_of(timepoints, k)
                node = organ is Organ.LYMPH_NODE
                measures.append(LesionMeasure(k, role, organ, node, seen=False))
            else:
                measures.append(_measure(r, role, rule))
        out_tps.append(Timepoint(float(tp["days_from_rt_start"]), tuple(measures)))
    machine = Irecist().fit_timepoints(out_tps)
    return [
        {
            "recist": a.recist.value if a.recist else None,
            "irecist": a.state.label,
            "sum_mm": a.sum_mm,
        }
        for a in machine.assessments_
    ]


def _organ_of(timepoints: list[dict[str, Any]], track: str) -> Organ:
    """The organ of a truth lesion (from the first timepoint that lists it)."""
    for tp in timepoints:
        for r in tp["lesions"]:
            if str(r["track_id"]) == track:
                return Organ(r["organ"])
    raise KeyError(track)


def truth_new_lesions(timepoints: list[dict[str, Any]]) -> dict[int, int]:
    """Truth lesion -> the follow-up at which it becomes a new lesion the reader has drawn
    (iRECIST, the clinic's measurability): the first follow-up that draws it, or, for a node
    first seen normal (under 10 mm short axis, or equivocal), the first that draws it as an
    unequivocal new lesion (:func:`truth_roles`)."""
    out: dict[int, int] = {}
    roles_by_tp = truth_roles(timepoints, "clinic")
    for i, (tp, roles) in enumerate(zip(timepoints, roles_by_tp, strict=True)):
        drawn = {int(r["track_id"]) for r in tp["lesions"] if r["seg_segment_number"] is not None}
        for k, role in roles.items():
            if i > 0 and role.is_new and int(k) in drawn:
                out.setdefault(int(k), i)
    return out


# ----------------------------------------------------------------------------- one patient


def _track_under(mask: np.ndarray | None, labels: np.ndarray) -> int | None:
    """The truth lesion (label value) under most of ``mask``; None when it covers none."""
    if mask is None:
        return None
    values = labels[mask]
    values = values[values > 0]
    if values.size == 0:
        return None
    return int(np.bincount(values).argmax())


def evaluate_patient(
    cohort: str, patient: str, events: list[dict[str, Any]], propagate: bool = False
) -> dict[str, Any]:
    """Read one patient's studies as the worker does and compare with the truth. With
    ``propagate``, every follow-up is read without its annotation (its image series only), so
    every lesion is carried from the baseline by registration and refined on the scan: the
    accuracy of propagation. Matching then keeps each lesion's tracking UID; a new lesion
    cannot be found (nothing outlines it), so new-lesion figures mean nothing in this mode."""
    root = Path(cohort)
    truth = json.loads((root / "ground_truth" / f"{patient}.json").read_text())
    tps = truth["timepoints"]
    if len(events) != len(tps):
        raise ValueError(f"{patient}: {len(events)} imaging events for {len(tps)} timepoints")
    lesion_rows: list[dict[str, Any]] = []
    decisions: list[dict[str, Any]] = []
    per_tp: list[dict[str, Any]] = []
    new_truth: list[dict[str, Any]] = []
    timings: list[float] = []
    cpu: list[float] = []
    failures: list[str] = []
    base = None
    state: TrackingState | None = None
    track_of: dict[str, int | None] = {}  # tracking UID -> truth lesion at first observation
    drawn_before: set[int] = set()
    new_at = truth_new_lesions(tps)  # truth lesion -> follow-up at which it becomes new
    called_new: dict[int, int] = {}  # truth lesion -> follow-up the pipeline first called it new
    for i, (tp, ev) in enumerate(zip(tps, events, strict=True)):
        folder = Path(ev["path"])
        labels = np.load(folder / "labels.npz")["labels"]
        rows = {int(r["track_id"]): r for r in tp["lesions"]}
        started, cpu0 = time.perf_counter(), time.process_time()
        try:
            location: Path | list[Path] = folder
            if propagate and i > 0:
                location = sorted(d for d in folder.iterdir() if d.is_dir())
            result = analyse_study(
                location,
                study_uid=ev["study_uid"],
                series_uid=ev["series_uid"],
                lesion_paths=None
                if propagate and i > 0
                else study_annotations(Path(ev["lesion"]) if ev["lesion"] else None, folder),
                baseline=base,
                state=state,
                time=ev["at"],
                radiomics=False,
                peritumoural=False,
                enhancement=False,
            )
        except IrtmonError as err:
            timings.append(time.perf_counter() - started)
            cpu.append(time.process_time() - cpu0)
            failures.append(f"{patient} tp{i}: {type(err).__name__}: {err}")
            per_tp.append({"patient": patient, "timepoint": i, "error": str(err)})
            continue
        timings.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu0)
        if i == 0:
            base = result.as_baseline()
        state = result.tracking
        tracked_tracks = {t for u, t in track_of.items() if t is not None}
        for r in result.lesions:
            track = _track_under(r.mask, labels) if r.burden is not None else None
            t_row = rows.get(track) if track is not None else None
            if r.burden is not None:
                lesion_rows.append(
                    {
                        "patient": patient,
                        "timepoint": i,
                        "tracking_id": r.tracking_id,
                        "truth_track": track,
                        "organ": r.organ.value,
                        "source": r.source.value if r.source else None,
                        "status": r.status.value,
                        "long_axis_mm": r.burden.longest_diameter_mm,
                        "short_axis_mm": r.burden.short_axis_mm,
                        "volume_ml": r.burden.volume_ml,
                        "truth_long_axis_mm": None if t_row is None else t_row["long_axis_mm"],
                        "truth_short_axis_mm": None if t_row is None else t_row["short_axis_mm"],
                        "rt_change_in_seg": None if t_row is None else t_row["rt_change_in_seg"],
                    }
                )
            if i == 0:
                track_of[r.tracking_uid] = track
                continue
            d: dict[str, Any] = {
                "patient": patient,
                "timepoint": i,
                "tracking_id": r.tracking_id,
                "status": r.status.value,
                "role": r.role.value,
                "truth_track": track,
            }
            if r.status in (MatchStatus.MATCHED, MatchStatus.BY_UID):
                expected = track_of.get(r.tracking_uid)
                d["correct"] = track == expected or (
                    r.status is MatchStatus.BY_UID and track is None
                )
                d["expected_track"] = expected
                if track_of.get(r.tracking_uid) is None:
                    track_of[r.tracking_uid] = track
            elif r.status is MatchStatus.NEW:
                # identity: a new track is right when the reader had not drawn its lesion
                # before; a tracked normal node grown pathological keeps its UID (same lesion)
                promoted = r.tracking_uid in track_of
                d["promoted"] = promoted
                d["correct"] = (
                    track is not None and track == track_of[r.tracking_uid]
                    if promoted
                    else track is not None and track not in drawn_before
                )
                d["already_tracked"] = track in tracked_tracks
                # a new lesion (iRECIST; a normal node is not one): right when the truth has
                # made its lesion new by now and the pipeline has not called it new before
                d["new_lesion"] = r.role.is_new
                if r.role.is_new:
                    d["false_new"] = not (
                        d["correct"]
                        and track is not None
                        and new_at.get(track, len(tps)) <= i
                        and track not in called_new
                    )
                    if track is not None:
                        called_new.setdefault(track, i)
                track_of[r.tracking_uid] = track
            elif r.status is MatchStatus.NOT_SEEN:
                expected = track_of.get(r.tracking_uid)
                drawn = (
                    expected is not None
                    and rows.get(expected, {}).get("seg_segment_number") is not None
                )
                d["correct"] = not drawn
                d["expected_track"] = expected
            else:  # not evaluable: no decision
                d["correct"] = None
            decisions.append(d)
        for r in tp["lesions"]:
            if r["seg_segment_number"] is not None:
                drawn_before.add(int(r["track_id"]))
        a = result.assessment
        per_tp.append(
            {
                "patient": patient,
                "timepoint": i,
                "recist": a.recist.value if a and a.recist else None,
                "irecist": a.state.label if a else None,
                "sum_mm": a.sum_mm if a else None,
                "failures": [f.message for f in result.failures],
            }
        )
    # the truth's new lesions: found when the pipeline has called them new by then (a call one
    # study early is a false new lesion there, not a second error here; a failed study, a miss)
    for track, first in sorted(new_at.items()):
        detected = called_new.get(track, len(tps)) <= first
        new_truth.append(
            {"patient": patient, "timepoint": first, "track": track, "detected": detected}
        )
    for rule in ("clinic", "pipeline"):
        cats = truth_categories(tps, rule)
        for row, cat in zip(per_tp, cats, strict=True):
            row[f"truth_recist_{rule}"] = cat["recist"]
            row[f"truth_irecist_{rule}"] = cat["irecist"]
            row[f"truth_sum_mm_{rule}"] = cat["sum_mm"]
    return {
        "patient": patient,
        "response_class": truth["response_class"],
        "lesions": lesion_rows,
        "decisions": decisions,
        "timepoints": per_tp,
        "new_truth": new_truth,
        "timings_s": timings,
        "cpu_s": cpu,
        "failures": failures,
    }


# ----------------------------------------------------------------------------- cohort


def _patient_events(cohort: Path) -> dict[str, list[dict[str, Any]]]:
    """Per patient, its imaging events in time order, as the worker would read them."""
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for ev in load_events(cohort):
        if not isinstance(ev, ImagingAcquired):
            continue
        assert ev.location.kind == "folder"
        out[ev.patient].append(
            {
                "path": ev.location.path,
                "study_uid": ev.study_uid,
                "series_uid": None
                if ev.modality == Modality.PCCT or len(ev.series_uids) > 1
                else ev.series_uids[0],
                "lesion": ev.lesion.path if ev.lesion is not None else None,
                "at": ev.occurred_at,
            }
        )
    for evs in out.values():
        evs.sort(key=lambda e: e["at"])
    return out


def _pct(num: float, den: float) -> float:
    return 100.0 * num / den if den else math.nan


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The cohort's numbers from the per-patient comparisons."""
    lesions = [r for p in results for r in p["lesions"]]
    errors = [
        abs(r["long_axis_mm"] / r["truth_long_axis_mm"] - 1.0) * 100.0
        for r in lesions
        if r["truth_long_axis_mm"]
    ]
    errors_no_rt = [
        abs(r["long_axis_mm"] / r["truth_long_axis_mm"] - 1.0) * 100.0
        for r in lesions
        if r["truth_long_axis_mm"] and not r["rt_change_in_seg"]
    ]
    signed = [
        (r["long_axis_mm"] / r["truth_long_axis_mm"] - 1.0) * 100.0
        for r in lesions
        if r["truth_long_axis_mm"]
    ]
    by_source: dict[str, list[float]] = defaultdict(list)
    for r in lesions:
        if r["truth_long_axis_mm"]:
            by_source[r["source"]].append(
                abs(r["long_axis_mm"] / r["truth_long_axis_mm"] - 1.0) * 100.0
            )
    decisions = [d for p in results for d in p["decisions"] if d["correct"] is not None]
    by_status = Counter((d["status"], bool(d["correct"])) for d in decisions)
    new_truth = [n for p in results for n in p["new_truth"]]
    called_new = [d for d in decisions if d.get("new_lesion")]
    false_new = [d for d in called_new if d["false_new"]]
    seen_fu = [d for d in decisions if d["status"] in ("matched", "by_uid", "new")]
    # a follow-up the pipeline could not assess (an error) counts as a disagreement
    tps = [t for p in results for t in p["timepoints"] if t["timepoint"] > 0]
    agree = {
        rule: sum(1 for t in tps if t.get("recist", "error") == t[f"truth_recist_{rule}"])
        for rule in ("clinic", "pipeline")
    }
    agree_ir = {
        rule: sum(1 for t in tps if t.get("irecist", "error") == t[f"truth_irecist_{rule}"])
        for rule in ("clinic", "pipeline")
    }
    confusion = Counter((t["truth_recist_clinic"], t.get("recist", "error")) for t in tps)
    timings = [s for p in results for s in p["timings_s"]]
    cpu = [s for p in results for s in p.get("cpu_s", [])]
    summary = {
        "patients": len(results),
        "studies": len(timings),
        "failed_studies": sum(len(p["failures"]) for p in results),
        "lesions_measured": len(lesions),
        "lesions_compared": len(errors),
        "long_axis_median_abs_error_pct": statistics.median(errors) if errors else math.nan,
        "long_axis_p90_abs_error_pct": float(np.percentile(errors, 90)) if errors else math.nan,
        "long_axis_median_signed_error_pct": statistics.median(signed) if signed else math.nan,
        "long_axis_median_abs_error_pct_without_rt_change": statistics.median(errors_no_rt)
        if errors_no_rt
        else math.nan,
        "long_axis_median_abs_error_pct_by_source": {
            k: statistics.median(v) for k, v in by_source.items()
        },
        "matching_decisions": len(decisions),
        "matching_correct_pct": _pct(sum(1 for d in decisions if d["correct"]), len(decisions)),
        "matching_by_status": {
            f"{s}/{'right' if c else 'wrong'}": n for (s, c), n in by_status.items()
        },
        "new_lesions_truth": len(new_truth),
        "new_lesion_sensitivity_pct": _pct(
            sum(1 for n in new_truth if n["detected"]), len(new_truth)
        ),
        "lesions_called_new": len(called_new),
        "false_new_lesions": len(false_new),
        "false_new_lesion_pct": _pct(len(false_new), len(called_new)),
        "false_new_per_follow_up_lesion_pct": _pct(len(false_new), len(seen_fu)),
        "follow_up_timepoints": len(tps),
        "recist_agreement_pct": _pct(agree["clinic"], len(tps)),
        "recist_agreement_pct_pipeline_rules": _pct(agree["pipeline"], len(tps)),
        "irecist_agreement_pct": _pct(agree_ir["clinic"], len(tps)),
        "irecist_agreement_pct_pipeline_rules": _pct(agree_ir["pipeline"], len(tps)),
        "recist_confusion_truth_vs_pipeline": {
            f"{a} -> {b}": n for (a, b), n in sorted(confusion.items(), key=str)
        },
        "analysis_s_per_study_median": statistics.median(timings) if timings else math.nan,
        "analysis_s_total_in_workers": sum(timings),
        "analysis_cpu_s_per_study_median": statistics.median(cpu) if cpu else math.nan,
        "analysis_cpu_s_total": sum(cpu),
    }
    return summary


# ----------------------------------------------------------------------------- intervals


def target_rows(results: list[dict[str, Any]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per target metric, its rows (value per row) and each row's patient, as
    :func:`summarise` counts them: absolute long-axis errors (%), matching decisions (1 right),
    the truth's new lesions (1 found), the lesions called new (1 false), the follow-ups (1 when
    the RECIST 1.1 category equals the clinic truth's; a follow-up that failed is 0)."""
    rows: dict[str, tuple[list[float], list[str]]] = {k: ([], []) for k in TARGETS}

    def add(metric: str, value: float, patient: str) -> None:
        rows[metric][0].append(float(value))
        rows[metric][1].append(patient)

    for p in results:
        psn = p["patient"]
        for r in p["lesions"]:
            if r["truth_long_axis_mm"]:
                error = abs(r["long_axis_mm"] / r["truth_long_axis_mm"] - 1.0) * 100.0
                add("long_axis_median_abs_error_pct", error, psn)
        for d in p["decisions"]:
            if d["correct"] is None:
                continue
            add("matching_correct_pct", bool(d["correct"]), psn)
            if d.get("new_lesion"):
                add("false_new_lesion_pct", bool(d["false_new"]), psn)
        for n in p["new_truth"]:
            add("new_lesion_sensitivity_pct", bool(n["detected"]), psn)
        for t in p["timepoints"]:
            if t["timepoint"] > 0:
                add(
                    "recist_agreement_pct",
                    t.get("recist", "error") == t["truth_recist_clinic"],
                    psn,
                )
    return {k: (np.asarray(v, dtype=float), np.asarray(g)) for k, (v, g) in rows.items()}


def _median(x: np.ndarray) -> float:
    return float(np.median(x)) if x.size else math.nan


def _percent(x: np.ndarray) -> float:
    return 100.0 * float(np.mean(x)) if x.size else math.nan


def target_estimates(
    results: list[dict[str, Any]],
    *,
    resamples: int = 2000,
    seed: int = 20261201,
    method: IntervalMethod | str = IntervalMethod.BOOTSTRAP_BCA,
    level: float = 0.95,
) -> dict[str, Estimate]:
    """Each target metric with its interval. The patients that contribute rows to the metric
    are resampled with all their rows (:func:`models.evaluation.bootstrap`): rows of one patient
    are not independent. For the four proportions the interval is widened, where it is
    narrower, to the Wilson score interval of the rows (:func:`models.evaluation.wilson`): a
    bootstrap of a proportion at 0 or 100 % has no width, which is no evidence either way."""
    out: dict[str, Estimate] = {}
    for name, (values, groups) in target_rows(results).items():
        is_median = name == "long_axis_median_abs_error_pct"
        if values.size == 0:
            out[name] = Estimate(math.nan, math.nan, math.nan, level, IntervalMethod(method), 0)
            continue
        est = bootstrap(
            _median if is_median else _percent,
            values,
            groups=groups,
            n_resamples=resamples,
            level=level,
            method=method,
            seed=seed,
        )
        if not is_median:
            w = wilson(int(values.sum()), int(values.size), level=level)
            lower, upper = min(est.lower, 100.0 * w.lower), max(est.upper, 100.0 * w.upper)
            details = {
                **est.details,
                "rows": int(values.size),
                "bootstrap_interval": [est.lower, est.upper],
                "wilson_interval": [100.0 * w.lower, 100.0 * w.upper],
                "interval": "the wider of the patient bootstrap and the Wilson score interval",
            }
            est = replace(est, lower=lower, upper=upper, details=details)
        out[name] = est
    return out


def _target(name: str) -> Target:
    op, bound = TARGETS[name]
    return Target(name, Direction.AT_LEAST if op == ">=" else Direction.AT_MOST, bound)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cohort", type=Path, required=True, help="A story-v2 cohort folder.")
    parser.add_argument("--workers", type=int, default=1, help="Patients read in parallel.")
    parser.add_argument("--limit", type=int, default=None, help="First N patients only.")
    parser.add_argument(
        "--out", type=Path, default=None, help="Folder for summary.json and details.json."
    )
    parser.add_argument(
        "--propagate",
        action="store_true",
        help="Read every follow-up without its annotation: every lesion carried from the "
        "baseline by registration (the accuracy of propagation; new lesions cannot be found).",
    )
    parser.add_argument(
        "--declaration",
        type=Path,
        default=None,
        help="Evaluate this committed pre-declaration once (docs/evaluation/declarations/): "
        "the cohort is its one test cohort; the look is logged before any of it is read, and "
        "the results go to docs/evaluation/results/ (see docs/evaluation/README.md).",
    )
    parser.add_argument(
        "--part",
        default=None,
        help="With --declaration of a declaration in parts: the test cohort (part) this run "
        "reads; its rows are kept in docs/evaluation/results/, and the run that reads the last "
        "part computes the declared analysis over every part's patients.",
    )
    args = parser.parse_args(argv)
    command = "python -m bench.lesion_accuracy " + " ".join(sys.argv[1:] if argv is None else argv)
    cohort = args.cohort.resolve()
    plan = {"resamples": 2000, "seed": 20261201, "method": IntervalMethod.BOOTSTRAP_BCA}
    level = 0.95
    clearance = None
    if args.part is not None and args.declaration is None:
        raise SystemExit("--part reads a part of a declaration: give --declaration too")
    if args.declaration is not None:
        if args.limit or args.propagate:
            raise SystemExit(
                "--limit and --propagate cannot be used with --declaration: the declared "
                "analysis reads the declared cohort whole, as declared"
            )
        declaration = load_declaration(args.declaration)
        tests = declaration.test_cohorts
        if args.part is None and len(tests) != 1:
            raise SystemExit(
                f"{args.declaration}: declare exactly one test cohort, or declare it in parts "
                f"and read one --part at a time; got {len(tests)} test cohorts"
            )
        name = args.part if args.part is not None else tests[0].name
        clearance = open_evaluation(REPO, args.declaration, {name: cohort}, part=args.part)
        computed = (
            "the declared analysis: every test patient's studies read as the worker does and "
            "compared with the truth; the five targets with patient-bootstrap intervals"
        )
        if args.part is not None:
            computed = (
                f"part {args.part} of the declared analysis: its patients' studies read as the "
                "worker does and compared with the truth, the rows kept; the five targets with "
                "patient-bootstrap intervals over every part once the last part is read"
            )
        record_look(clearance, who=getpass.getuser(), command=command, computed=computed)
        boot = declaration.bootstrap
        plan = {"resamples": boot.resamples, "seed": boot.seed, "method": boot.method}
        level = declaration.level
    meta = json.loads((cohort / "cohort.json").read_text())
    if meta.get("story_version") != "v2":
        raise SystemExit(f"{cohort} is not a story-v2 cohort (cohort.json: {meta})")
    events = _patient_events(cohort)
    patients = sorted(events)[: args.limit] if args.limit else sorted(events)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    started, cpu0 = time.perf_counter(), time.process_time()
    results: list[dict[str, Any]] = []
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        futures = {
            pool.submit(evaluate_patient, str(cohort), p, events[p], args.propagate): p
            for p in patients
        }
        for k, fut in enumerate(as_completed(futures), start=1):
            results.append(fut.result())
            print(f"\r{k}/{len(patients)} patients", end="", flush=True)
    print()
    wall = time.perf_counter() - started
    results.sort(key=lambda r: r["patient"])
    parts: dict[str, Any] | None = None
    if clearance is not None and args.part is not None:
        kept = write_part(clearance, args.part, results)
        parts = read_parts(REPO, clearance.declaration)
        if parts is None:
            print(
                f"part {args.part}: {len(results)} patients read and kept in {kept}; nothing is "
                "computed from them until every part is read"
            )
            return 0
        results = sorted((r for rows in parts.values() for r in rows), key=lambda r: r["patient"])
        if len({r["patient"] for r in results}) != len(results):
            raise SystemExit("the parts share a patient: they are not independent test cohorts")
    summary = summarise(results)
    estimates = target_estimates(results, level=level, **plan)  # type: ignore[arg-type]
    summary["targets"] = {
        name: {
            "target": _target(name).describe(),
            "value": est.value,
            "interval": [est.lower, est.upper],
            "interval_method": f"{est.method.value}, {plan['resamples']} resamples, "
            f"seed {plan['seed']}",
            "patients": est.n,
            "verdict": judge(_target(name), est).value,
        }
        for name, est in estimates.items()
    }
    if parts is not None:
        summary["parts"] = {name: len(rows) for name, rows in parts.items()}
    summary.update(
        cohort=str(cohort),
        seed=meta.get("seed"),
        analysis_wall_s=round(wall, 1),
        workers=args.workers,
        parent_cpu_s=round(time.process_time() - cpu0, 1),
        command=command,
        propagate=args.propagate,
    )
    out = args.out or cohort / (
        "lesion-accuracy-propagated" if args.propagate else "lesion-accuracy"
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    (out / "details.json").write_text(json.dumps(results, indent=1, default=str))
    print(json.dumps(summary, indent=2, default=str))
    print(f"wrote {out / 'summary.json'} and details.json")
    if clearance is not None:
        md, js = write_results(
            clearance,
            {m: estimates[m] for m in clearance.declaration.metrics},
            command=command,
            extra={"summary": {k: v for k, v in summary.items() if k != "targets"}},
        )
        print(f"wrote {md} and {js}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
