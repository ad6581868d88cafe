"""Write one story-v2 patient: CT/PCCT studies, a reader's SEG per study, the planning RTSTRUCT,
biopsy slides, events, manifest rows, and the truth per lesion and timepoint.

Called by :func:`clinic.cohort.generate_cohort` with ``story="v2"``; the cohort folder's layout
is the one described there, plus ``ground_truth/lesions.csv`` / ``lesions.parquet`` (one row per
lesion per timepoint) and a ``SEG.dcm`` in every study folder that shows a lesion.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path

import numpy as np

from clinic.acquisitions import (
    SeriesFolders,
    file_rows,
    nearest_til,
    open_series,
    rng,
    series_rows,
    study_event,
    study_info,
    timepoint_row,
    timepoint_truth,
    write_biopsy,
    write_slice,
)
from clinic.contours import slice_contours
from clinic.dicomio import StudyInfo, uid
from clinic.events import treatment_events
from clinic.phantom import Geometry, to_scanner
from clinic.story import Timepoint
from clinic.story_v2 import params
from clinic.story_v2.anatomy import Organ
from clinic.story_v2.annotations import (
    Finding,
    Roi,
    misdraw,
    reading_order,
    write_lesion_rtstruct,
    write_lesion_seg,
)
from clinic.story_v2.course import (
    ct_reading,
    lesion_state,
    measurable,
    progression_day,
    recist_diameter,
    rt_change_severity,
)
from clinic.story_v2.patient import LesionV2, PatientV2, sample_patient
from clinic.story_v2.render import LesionDraw, LesionLook, render_slice
from clinic.story_v2.variants import BASE, VARIANTS, StoryVariant
from schemas.events import Event, LesionReference
from schemas.pseudonym import pseudonymise

READER_STREAM = 5
"""Random stream of a variant reader's extra noise (``rng(seed, number, 5, timepoint)``), apart
from every stream of the base story."""

GTV_NAME = "GTV"
"""ROI name of the (first) irradiated lesion; a second one is ``GTV_2``."""


def _organ_text(organ: Organ) -> str:
    return organ.value.replace("_", " ")


def _draws(
    patient: PatientV2, tp: Timepoint, seed: int, number: int
) -> tuple[list[LesionDraw], dict[int, object]]:
    """The lesions drawn at ``tp`` (scanner frame) and each present lesion's state."""
    draws, states = [], {}
    for les in patient.lesions:
        state = lesion_state(les, tp.days)
        if not state.present:
            continue
        states[les.track] = state
        reading = ct_reading(les, tp.days, tp.index, patient.ici_start_days)
        enhancement = params.LIVER_LESION_ENHANCEMENT if les.organ is Organ.LIVER else 1.0
        look = LesionLook(rng(seed, number, 1, les.track), reading, les.necrosis, enhancement)
        severity = rt_change_severity(les, tp.days)
        rt_semi = (0.0, 0.0, 0.0)
        rt_look = None
        if severity > 0.0:
            base = lesion_state(les, 0.0).semi_axes_mm
            rt_semi = tuple(v + les.rt_change_margin_mm for v in base)
            rt_look = LesionLook(rng(seed, number, 4, les.track), 0.0, 0.0)
        draws.append(
            LesionDraw(
                track=les.track,
                centre_mm=to_scanner(les.centre_mm, tp.pose),
                semi_axes_mm=state.semi_axes_mm,
                angle_deg=les.angle_deg + tp.pose.yaw_deg,
                look=look,
                rt_severity=severity,
                rt_semi_axes_mm=rt_semi,
                rt_peak_hu=les.rt_change_peak_hu,
                rt_look=rt_look,
            )
        )
    return draws, states


def _findings(
    patient: PatientV2, draws: list[LesionDraw], tracks_with_voxels: set[int], planning: bool
) -> list[Finding]:
    """What the reader labels in this study, numbered in reading order."""
    centres = {d.track: d.centre_mm for d in draws if d.track in tracks_with_voxels}
    by_track = {les.track: les for les in patient.lesions}
    out, gtv = [], 0
    for n, track in enumerate(reading_order(centres), start=1):
        les = by_track[track]
        label = f"Lesion {n}"
        if planning and les.in_field:
            gtv += 1
            label = GTV_NAME if gtv == 1 else f"{GTV_NAME}_{gtv}"
        out.append(Finding(number=n, label=label, organ=les.organ, track=track))
    return out


def _write_study(
    folder: Path,
    patient: PatientV2,
    number: int,
    seed: int,
    tp: Timepoint,
    study: StudyInfo,
    geometry: Geometry,
    draws: list[LesionDraw],
) -> tuple[SeriesFolders, np.ndarray, dict, dict, list]:
    """Render and write every series; return series, labels, contours, dense RT masks, headers."""
    series = open_series(folder, seed, tp, study)
    labels: list[np.ndarray] = []
    contours: dict[int, dict[int, list[np.ndarray]]] = {}
    rt_dense: dict[int, dict[int, np.ndarray]] = {}
    headers: list = []
    for k in range(geometry.n_slices):
        rendered = render_slice(patient, tp.pose, geometry, k, draws)
        comps = rendered.components
        labels.append(comps.labels)
        for track, dense in rendered.rt_dense.items():
            rt_dense.setdefault(track, {})[k] = dense
        if tp.index == 0:
            for track, (win, frac) in rendered.fractions.items():
                full = np.zeros(comps.labels.shape, dtype=np.float32)
                full[win] = frac
                found = slice_contours(full, geometry, k)
                if found:
                    contours.setdefault(track, {})[k] = found
        headers.append(write_slice(series, comps, study, geometry, tp, k, seed=seed, number=number))
    label_map = np.stack(labels)
    dense = {}
    for track, by_slice in rt_dense.items():
        dense[track] = np.zeros(label_map.shape, dtype=bool)
        for k, mask in by_slice.items():
            dense[track][k] = mask
    return series, label_map, contours, dense, headers


def _biopsies(
    out_dir: Path, patient: PatientV2, psn: str, number: int, seed: int, slide_px: int
) -> tuple[list[dict], list[Event], list[dict]]:
    truth, events, rows = [], [], []
    for b in patient.biopsies:
        slide, event, row = write_biopsy(
            out_dir,
            psn,
            b,
            patient.timepoints,
            b.phenotype,
            seed=seed,
            number=number,
            slide_px=slide_px,
            site=f"{_organ_text(b.organ)}, core needle biopsy",
        )
        truth.append(
            {
                "index": b.index,
                "days": b.days,
                "lesion_track": b.lesion_track,
                "organ": str(b.organ),
                "infiltration_read": b.infiltration_read,
                "phenotype": str(b.phenotype),
                **asdict(slide),
                "pd_l1_tps": b.pd_l1_tps,
            }
        )
        events.append(event)
        rows.append({**row, "phenotype": str(b.phenotype)})
    return truth, events, rows


def _lesion_truth(lesion: LesionV2) -> dict[str, object]:
    data = asdict(lesion)
    data["organ"] = str(lesion.organ)
    data["behaviour"] = str(lesion.behaviour)
    data["appear_days"] = None if lesion.appear_days == -np.inf else lesion.appear_days
    data["immune_change"] = lesion.immune_change
    return data


def generate_patient(
    out_dir: Path,
    number: int,
    seed: int,
    geometry: Geometry,
    slide_px: int,
    key: str | bytes,
    n_timepoints: int,
    variant: StoryVariant = VARIANTS[BASE],
) -> tuple[list[dict[str, object]], list[Event], dict[str, object], list[dict[str, object]]]:
    """Generate story-v2 patient ``number`` (under ``variant``); return manifest rows, events,
    identity, lesion rows."""
    patient = sample_patient(rng(seed, number, 0), number, n_timepoints, variant)
    psn = pseudonymise(patient.clear_id, key)
    root = out_dir / "patients" / psn
    last_day = patient.timepoints[-1].days
    progression = None
    if not patient.course.responder and patient.course.value != "durable_stable_disease":
        progression = progression_day(patient.lesions, last_day)
    progression_at = (
        None
        if progression is None
        else (patient.rt.start + timedelta(days=progression)).isoformat()
    )
    gtv = patient.in_field[0]
    base = {
        "patient": psn,
        "story_version": params.STORY_VERSION,
        "phenotype": str(patient.biopsies[0].phenotype),
        "response_class": str(patient.course),
        "responder": patient.responder,
        "pseudo_progression": patient.course.value == "pseudo_progression",
        "change_point_days": progression,
        "change_point_at": progression_at,
        "pd_l1_tps": patient.pd_l1_tps,
    }
    target = f"{GTV_NAME} {_organ_text(gtv.organ)}"
    events: list[Event] = list(treatment_events(patient, psn, seed, target=target))
    biopsy_truth, biopsy_events, biopsy_rows = _biopsies(
        out_dir, patient, psn, number, seed, slide_px
    )
    events.extend(biopsy_events)
    rows: list[dict[str, object]] = [{**base, **row} for row in biopsy_rows]

    truth_tps: list[dict[str, object]] = []
    lesion_rows: list[dict[str, object]] = []
    for tp in patient.timepoints:
        folder = root / f"tp{tp.index}-{tp.label}"
        study = study_info(seed, psn, tp, sex=patient.sex, birth_year=patient.birth_year)
        draws, states = _draws(patient, tp, seed, number)
        series, label_map, contours, rt_dense, headers = _write_study(
            folder, patient, number, seed, tp, study, geometry, draws
        )
        np.savez_compressed(folder / "labels.npz", labels=label_map)
        with_voxels = {t for t in states if (label_map == t).any()}
        findings = _findings(patient, draws, with_voxels, planning=tp.index == 0)
        by_track = {f.track: f for f in findings}
        included_rt: set[int] = set()
        seg_path, seg_uid = folder / "SEG.dcm", uid(seed, psn, "seg", tp.index, 1)
        if findings:
            seg_map = np.zeros(label_map.shape, dtype=np.uint8)
            for f in findings:
                seg_map[label_map == f.track] = f.number
            for f in findings:
                les = next(les for les in patient.lesions if les.track == f.track)
                if les.reader_includes_rt_change and f.track in rt_dense:
                    extra = rt_dense[f.track] & (seg_map == 0)
                    if extra.any():
                        seg_map[extra] = f.number
                        included_rt.add(f.track)
            if variant.reader_margin_sd_mm > 0:
                seg_map = misdraw(
                    seg_map,
                    [f.number for f in findings],
                    variant.reader_margin_sd_mm,
                    geometry.pixel_mm,
                    rng(seed, number, READER_STREAM, tp.index),
                )
            write_lesion_seg(
                seg_path,
                headers,
                seg_map,
                findings,
                uid(seed, psn, "seg", tp.index),
                seg_uid,
                study,
            )
        lesion_ref = None
        rts_path = folder / "RTSTRUCT.dcm"
        if tp.index == 0:
            rois = [
                Roi(f, contours[f.track], in_field=f.label.startswith(GTV_NAME))
                for f in findings
                if f.track in contours
            ]
            rts_uid = uid(seed, psn, "rtss", 1)
            write_lesion_rtstruct(rts_path, study, headers, rois, uid(seed, psn, "rtss"), rts_uid)
            lesion_ref = LesionReference(
                kind="rtstruct",
                sop_instance_uid=rts_uid,
                path=str(rts_path.resolve()),
                roi_name=GTV_NAME,
            )
        elif findings:
            lesion_ref = LesionReference(
                kind="seg", sop_instance_uid=seg_uid, path=str(seg_path.resolve())
            )
        events.append(study_event(seed, psn, tp, study, series, folder, lesion_ref))

        tp_lesions = []
        for les in patient.lesions:
            if tp.days < les.appear_days:
                continue
            state = lesion_state(les, tp.days)
            centre = to_scanner(les.centre_mm, tp.pose)
            finding = by_track.get(les.track)
            row = {
                "patient": psn,
                "story_version": params.STORY_VERSION,
                "timepoint": tp.index,
                "timepoint_label": tp.label,
                "days_from_rt_start": tp.days,
                "study_uid": study.study_uid,
                "track_id": les.track,
                "organ": str(les.organ),
                "slot": les.slot,
                "in_field": les.in_field,
                "new": les.new,
                "behaviour": str(les.behaviour),
                "visible": state.present,
                "long_axis_mm": state.long_axis_mm,
                "short_axis_mm": state.short_axis_mm,
                "recist_diameter_mm": recist_diameter(les, state),
                "measurable": measurable(les, state),
                "volume_ml": state.volume_ml,
                "mask_volume_ml": float((label_map == les.track).sum() * geometry.voxel_ml),
                "centre_x_mm": centre[0],
                "centre_y_mm": centre[1],
                "centre_z_mm": centre[2],
                "body_x_mm": les.centre_mm[0],
                "body_y_mm": les.centre_mm[1],
                "body_z_mm": les.centre_mm[2],
                "seg_segment_number": None if finding is None else finding.number,
                "seg_label": None if finding is None else finding.label,
                "rt_change_severity": rt_change_severity(les, tp.days),
                "rt_change_in_seg": les.track in included_rt,
                "infiltration": les.immune_state(tp.days, patient.ici_start_days),
                "ct_reading": ct_reading(les, tp.days, tp.index, patient.ici_start_days),
            }
            lesion_rows.append(row)
            tp_lesions.append(row)

        visible = [r for r in tp_lesions if r["visible"]]
        gtv_row = next((r for r in tp_lesions if r["track_id"] == gtv.track), None)
        tp_row = {
            **timepoint_row(base, tp, study),
            "lesion_volume_ml": gtv_row["volume_ml"] if gtv_row else 0.0,
            "longest_axial_diameter_mm": gtv_row["long_axis_mm"] if gtv_row else 0.0,
            "total_lesion_volume_ml": sum(r["volume_ml"] for r in visible),
            "sum_of_diameters_mm": sum(r["recist_diameter_mm"] for r in visible),
            "in_field_sum_mm": sum(r["recist_diameter_mm"] for r in visible if r["in_field"]),
            "out_of_field_sum_mm": sum(
                r["recist_diameter_mm"] for r in visible if not r["in_field"]
            ),
            "new_lesion_count": sum(1 for r in visible if r["new"]),
            "lesions_visible": len(visible),
            "til_density_per_mm2": nearest_til(biopsy_truth, tp.days),
        }
        rows.extend(series_rows(tp_row, tp, series, out_dir))
        written = [("seg", seg_path)] if findings else []
        if tp.index == 0:
            written.append(("rtstruct", rts_path))
        rows.extend(file_rows(tp_row, written, out_dir))
        truth_tps.append(
            {
                **timepoint_truth(tp, study, folder, out_dir),
                "seg": None if not findings else str(seg_path.relative_to(out_dir)),
                "lesions": tp_lesions,
            }
        )

    truth = {
        "story_version": params.STORY_VERSION,
        "patient": psn,
        "latents": asdict(patient.latents),
        "phenotype": str(patient.phenotype),
        "diagnostic_phenotype": str(patient.biopsies[0].phenotype),
        "pd_l1_tps": patient.pd_l1_tps,
        "response_class": str(patient.course),
        "responder": patient.responder,
        "dissociated_response": patient.dissociated,
        "change_point_days": progression,
        "change_point_at": progression_at,
        "rt": {
            "dose_gy": patient.rt.dose_gy,
            "fractions": patient.rt.fractions,
            "start": patient.rt.start.isoformat(),
            "target": target,
        },
        "ici": {
            "agent": patient.ici.agent,
            "dose_mg": patient.ici.dose_mg,
            "interval_days": patient.ici.interval_days,
            "start": patient.ici.start.isoformat(),
            "start_days": patient.ici_start_days,
        },
        "lesions": [_lesion_truth(les) for les in patient.lesions],
        "biopsies": biopsy_truth,
        "timepoints": truth_tps,
    }
    gt = out_dir / "ground_truth"
    gt.mkdir(parents=True, exist_ok=True)
    (gt / f"{psn}.json").write_text(json.dumps(truth, indent=1, default=str))
    return rows, events, {"clear_id": patient.clear_id, "pseudonym": psn}, lesion_rows
