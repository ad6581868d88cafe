"""Seed a story-v2 cohort (every lesion) from its truth, for the app and its tests.

For each patient of a cohort written by ``irtmon clinic generate --story v2``: its events (real
DICOM and slide paths), and per imaging acquisition one row per tracked lesion and the
timepoint's RECIST 1.1 / iRECIST assessment, as the worker stores them. The lesions are the
reader's (the lesions the study's SEG or RTSTRUCT draws), measured as the truth says with a 3 %
noise, and followed by the truth's identity (each truth lesion keeps one tracking UID, so the
matching is perfect here: the worker's own matching is checked by ``bench.lesion_accuracy`` and
the integration tests). Roles, new lesions and the assessment come from the science itself
(:func:`models.imaging.matching.track`, :class:`models.changepoint.irecist.Irecist`). Scores
beside them are FAKE but plausible (``seed-*`` models), and alerts are raised by the one alert
lifecycle (:func:`core.alerts.evaluate`) on what was stored.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from pydicom.uid import generate_uid

from core import alerts as lifecycle
from core.db import events, lesions, scores
from irtmon.seed_scores import pathology_scores, seeded_score, sigmoid, store_stream
from models.changepoint.irecist import Irecist, IrecistConfig
from models.imaging.matching import MatchStatus, Observation, TrackingState, track
from schemas.enums import (
    IRECIST_SCORE,
    LesionOrigin,
    LesionRole,
    Organ,
)
from schemas.events import BiopsyAcquired, ImagingAcquired, TreatmentEvent
from schemas.results import (
    IN_FIELD_SUM_SCORE,
    NEW_LESIONS_SCORE,
    OUT_OF_FIELD_SUM_SCORE,
    SUM_DIAMETERS_SCORE,
    LesionAssessment,
    LesionRow,
)

LESION_MODEL = ("seed-lesions", "0.1")
"""The seed's lesion rows and assessments (truth with noise, not the imaging pipeline)."""


def _uid(patient: str, track_id: int) -> str:
    return generate_uid(entropy_srcs=["irtmon-seed", patient, "track", str(track_id)])


def truth_lesion_outcomes(
    patient: str,
    truth: dict[str, Any],
    imaging: Sequence[ImagingAcquired],
    rng: np.random.Generator,
    noise: float = 0.03,
) -> list[tuple[list[LesionRow], LesionAssessment]]:
    """Per imaging acquisition (in time order): the lesion rows and the assessment the worker
    would store if it read the truth's lesions with ``noise`` (relative SD of the axes)."""
    config = IrecistConfig()
    state: TrackingState | None = None
    out = []
    for tp, ev in zip(truth["timepoints"], imaging, strict=True):
        drawn = [r for r in tp["lesions"] if r["seg_segment_number"] is not None]
        reference = ev.lesion.sop_instance_uid if ev.lesion is not None else None
        source = "rtstruct" if tp["timepoint"] == 0 else "seg"
        observations, by_key = [], {}
        for r in drawn:
            k = float(rng.normal(1.0, noise))
            organ = Organ(r["organ"])
            key = f"{reference}/{r['seg_segment_number']}"
            by_key[key] = r
            observations.append(
                Observation(
                    key=key,
                    label=str(r["seg_label"]),
                    centre_mm=(r["body_x_mm"], r["body_y_mm"], r["body_z_mm"]),
                    long_axis_mm=max(float(r["long_axis_mm"]) * k, 1.0),
                    short_axis_mm=max(float(r["short_axis_mm"]) * k, 1.0),
                    volume_ml=max(float(r["volume_ml"]) * k**3, 0.001),
                    organ=organ,
                    is_node=organ is Organ.LYMPH_NODE,
                    in_field=bool(r["in_field"]),
                    tracking_uid=_uid(patient, int(r["track_id"])),
                )
            )
        update = track(
            state,
            observations,
            time=ev.occurred_at,
            label=ev.study_uid,
            uid_root=f"{ev.study_uid}/seed",
            recist=config.rules(),
        )
        state = update.state
        a = Irecist(config=config).fit_timepoints(state.timepoints).assessments_[-1]
        tracked = state.by_uid()
        measures = {m.tracking_uid: m for m in update.timepoint.lesions}  # type: ignore[union-attr]
        obs = {o.key: o for o in observations}
        rows = []
        for asg in update.assignments:
            t = tracked[asg.tracking_uid]
            o = obs.get(asg.key)
            seen = o is not None
            rows.append(
                LesionRow.of(
                    measures=(o.long_axis_mm, o.short_axis_mm, o.volume_ml) if o else None,
                    origin=LesionOrigin.ANNOTATED,
                    mask_source=source,
                    segment_number=int(by_key[asg.key]["seg_segment_number"]) if o else None,
                    series_uid=ev.series_uids[0],
                    tracking_uid=asg.tracking_uid,
                    tracking_id=asg.tracking_id,
                    label=t.label,
                    organ=t.organ,
                    is_node=t.is_node,
                    in_field=t.in_field,
                    role=asg.role,
                    match=asg.status.value,
                    reference_uid=reference if seen else None,
                )
            )
        counted = [m for m in measures.values() if m.role is not LesionRole.NORMAL_NODE]
        diameter = {m.tracking_uid: m.diameter_mm or 0.0 for m in counted}
        in_field = sum(d for u, d in diameter.items() if measures[u].in_field)
        out_field = sum(d for u, d in diameter.items() if not measures[u].in_field)
        assessment = LesionAssessment(
            timepoint=a.index,
            irecist=a.state,
            recist=a.recist if a.index > 0 else None,
            target=a.target,
            nontarget=a.nontarget,
            reason=a.reason,
            sum_mm=round(a.sum_mm if math.isfinite(a.sum_mm) else 0.0, 3),
            nadir_mm=round(a.nadir_mm, 3) if math.isfinite(a.nadir_mm) else None,
            in_field_sum_mm=round(in_field, 3),
            out_of_field_sum_mm=round(out_field, 3),
            total_volume_ml=round(sum(m.volume or 0.0 for m in counted), 4),
            new_lesions=a.new_lesions,
            new_appeared=a.new_appeared,
            seen=sum(1 for m in counted if m.seen),
            not_evaluable=sum(1 for m in counted if m.seen is None),
            tracking_state=json.loads(json.dumps(state.to_dict(), default=float)),
            model_name=LESION_MODEL[0],
            model_version=LESION_MODEL[1],
        )
        assert all(r.match != MatchStatus.NOT_EVALUABLE.value for r in rows)
        out.append((rows, assessment))
    return out


def seed_patient_v2(
    conn: psycopg.Connection,
    cohort_dir: Path,
    patient: str,
    stream: tuple[list[TreatmentEvent], list[ImagingAcquired], list[BiopsyAcquired]],
    cohort: str,
    number: int,
    seed: int,
    rescore_every: int,
) -> tuple[list[str], float | None]:
    """Write one story-v2 patient; return the kinds of the alerts raised and the promoted
    response model's last probability."""
    truth = json.loads((cohort_dir / "ground_truth" / f"{patient}.json").read_text())
    _, imaging, biopsies = stream
    rng = np.random.default_rng([seed, number, 199])
    store_stream(conn, stream)
    rt = truth["rt"]
    events.set_patient_cohort(
        conn,
        patient,
        cohort,
        f"SBRT {rt['dose_gy']:g} Gy + {truth['ici']['agent']}",
    )
    written = pathology_scores(
        (b["til_intratumoral_per_mm2"] for b in truth["biopsies"]), biopsies, rng
    )
    lat = truth["latents"]
    drive = (lat["infiltration"] + lat["activation"]) / math.sqrt(2.0) + rng.normal(0, 0.5)
    outcomes = truth_lesion_outcomes(patient, truth, imaging, rng)
    latest = None
    baseline_sum = None
    for iev, (rows, a) in zip(imaging, outcomes, strict=True):
        lesions.store_lesions(
            conn, iev.event_id, patient, iev.occurred_at, rows, a, a.model_name, a.model_version
        )
        model = (a.model_name, a.model_version)
        for name, value, unit in (
            (SUM_DIAMETERS_SCORE, a.sum_mm, "mm"),
            (IN_FIELD_SUM_SCORE, a.in_field_sum_mm, "mm"),
            (OUT_OF_FIELD_SUM_SCORE, a.out_of_field_sum_mm, "mm"),
            (NEW_LESIONS_SCORE, float(a.new_lesions), None),
        ):
            written.append(seeded_score(iev, name, value, model, unit=unit, inputs=iev.series_uids))
        if a.timepoint > 0:
            written.append(
                seeded_score(
                    iev, IRECIST_SCORE, float(a.irecist.code), model, inputs=iev.series_uids
                )
            )
        ct = sigmoid(0.9 * drive + rng.normal(0, 0.6))
        written.append(
            seeded_score(
                iev,
                "ct_virtual_biopsy",
                ct,
                ("seed-ct-virtual-biopsy", "0.1"),
                lower=max(0.0, ct - 0.12),
                upper=min(1.0, ct + 0.12),
                inputs=iev.series_uids,
            )
        )
        baseline_sum = baseline_sum or max(a.sum_mm, 1.0)
        change = 100.0 * (a.sum_mm - baseline_sum) / baseline_sum
        for version, shift in (("0.1", 0.0), ("0.2", 0.25)):
            if version == "0.2" and (rescore_every <= 0 or number % rescore_every):
                continue
            logit = (
                1.1 * drive
                - 0.3
                + shift
                - 0.03 * min(max(0.0, change), 50.0)
                + 0.04 * min(max(0.0, -change), 50.0)
                - 0.8 * a.new_lesions
            )
            p = sigmoid(logit)
            half = 1.96 * 0.9 / math.sqrt(a.timepoint + 1)
            written.append(
                seeded_score(
                    iev,
                    "response_probability",
                    p,
                    ("seed-response", version),
                    lower=min(sigmoid(logit - half), p),
                    upper=max(sigmoid(logit + half), p),
                    inputs=iev.series_uids,
                )
            )
            if version == "0.1":
                latest = p
    for s in written:
        scores.upsert_score(conn, s)
    raised = lifecycle.evaluate(conn, patient, now=imaging[-1].occurred_at + timedelta(hours=1))
    return sorted({str(alert.kind) for alert in raised}), latest


__all__ = ["LESION_MODEL", "seed_patient_v2", "truth_lesion_outcomes"]
