"""A patient's history read back from the database, in the shapes the science takes.

- :func:`load_history`: scored scans, scored biopsies and treatment as a
  :class:`models.response.history.History`, for the virtual biopsy and the response model.
  The worker (a new scan) and ``irtmon rescore`` (the stored history with another model
  version) both build it here and score with :func:`models.response.inference.score_timepoint`.
- :func:`load_assessments`: the burden assessments with the other scores as of each, as a
  :class:`models.changepoint.PatientSeries`, for the decision rule.

Burden source of :func:`load_assessments`, by priority (the first the patient has is used for
the whole series):

1. the tracked lesions (``lesion_measurements`` and, per acquisition, ``lesion_assessments``):
   the RECIST 1.1 sum of diameters of the target lesions (short axis for nodes), the new
   lesions seen (iRECIST's new-lesion rules thus fire on the pipeline's own output), the
   in-field and out-of-field sums, the total volume, and the iRECIST state assessed over every
   lesion, which is then the patient's one stored iRECIST state (the decision rule reads it
   rather than assessing the sum again); a not-evaluable assessment (iNE) gives no point, its
   sum counting only the lesions seen (:func:`schemas.enums.carries_burden`);
2. ``tumour_measurements``: longest diameters summed per acquisition (``source_event_id``),
   for acquisitions scored before lesions were tracked;
3. the ``tumour_sum_diameters_mm`` score (a producer that publishes sums without lesions);
4. the ``longest_diameter_mm`` score;
5. volumes (``tumour_measurements.volume_ml`` summed, or the ``tumour_volume_ml`` score), as
   the diameter of the sphere of that volume.

``response_probability`` and ``ct_immune_score`` are taken as of each burden assessment (the
latest value observed at or before it, from any acquisition or biopsy); where a scan has scores
of several model versions (``irtmon rescore``), the promoted version's wins, else the newest.
"""

from __future__ import annotations

import math
import uuid
from collections import defaultdict
from datetime import datetime
from typing import Any

import numpy as np
import psycopg

from core.db import events, lesions, scores
from models.changepoint import PatientSeries
from models.response.history import Biopsy, History, Scan, Signature, Treatment
from schemas.enums import IRecistState, carries_burden

PATHOLOGY_SCORES = ("pathology_p_inflamed", "pathology_p_excluded", "pathology_p_desert")
BURDEN_SCORES = ("tumour_sum_diameters_mm", "longest_diameter_mm", "tumour_volume_ml")
OTHER_SCORES = ("response_probability", "ct_immune_score")


def load_history(conn: psycopg.Connection, patient: str, until: datetime | None = None) -> History:
    """Scored scans (burden of the target lesion, stored features), scored biopsies (the latest
    pathology model's signature) and treatment of ``patient``, up to ``until`` when given."""
    scans = [
        Scan(
            at=at,
            volume_ml=float(volume),
            diameter_mm=float(diameter),
            features=features or {},
            pcct=modality == "PCCT",
            key=str(event_id),
        )
        for event_id, at, modality, volume, diameter, features in scores.target_measurements(
            conn, patient, until
        )
    ]
    biopsies = [
        Biopsy(
            at,
            Signature(
                values["pathology_p_inflamed"],
                values["pathology_p_excluded"],
                values["pathology_p_desert"],
                values["pathology_til_density"],
            ),
        )
        for at, values in scores.pathology_values(conn, patient, until)
        if all(k in values for k in (*PATHOLOGY_SCORES, "pathology_til_density"))
    ]
    rt_start, doses = events.treatment_times(conn, patient)
    return History(tuple(scans), tuple(biopsies), Treatment(rt_start, tuple(doses)))


def _sphere_diameter_mm(volume_ml: float) -> float:
    return (6.0 * volume_ml * 1000.0 / math.pi) ** (1.0 / 3.0)


Point = tuple[datetime, float, float, tuple[str, ...], uuid.UUID]
"""One burden assessment: (time, sum of diameters, volume, lesion ids, acquisition id)."""


def _burden_points(
    meas: list[dict[str, Any]], by_name: dict[str, list[dict[str, Any]]], versions: dict[str, str]
) -> list[Point]:
    """The burden assessments from the first source the patient has (module docstring)."""
    if any(m["n_d"] for m in meas):
        versions["tumour_measurements"] = max(m["model"] for m in meas)
        return [
            (
                m["observed_at"],
                float(m["sld"]),
                float(m["vol"]) if m["n_v"] else math.nan,
                tuple(m["lesions"]),
                m["source_event_id"],
            )
            for m in meas
            if m["n_d"]
        ]
    vol_scores = {r["source_event_id"]: r for r in by_name.get("tumour_volume_ml", [])}
    for name in ("tumour_sum_diameters_mm", "longest_diameter_mm"):
        if by_name.get(name):
            versions[name] = by_name[name][-1]["model"]
            points = []
            for r in by_name[name]:
                v = vol_scores.get(r["source_event_id"])
                volume = float(v["value"]) if v else math.nan
                points.append(
                    (r["observed_at"], float(r["value"]), volume, (), r["source_event_id"])
                )
            return points
    if any(m["n_v"] for m in meas):
        versions["tumour_measurements"] = max(m["model"] for m in meas)
        return [
            (
                m["observed_at"],
                _sphere_diameter_mm(float(m["vol"])),
                float(m["vol"]),
                tuple(m["lesions"]),
                m["source_event_id"],
            )
            for m in meas
            if m["n_v"]
        ]
    if by_name.get("tumour_volume_ml"):
        versions["tumour_volume_ml"] = by_name["tumour_volume_ml"][-1]["model"]
        return [
            (
                r["observed_at"],
                _sphere_diameter_mm(float(r["value"])),
                float(r["value"]),
                (),
                r["source_event_id"],
            )
            for r in by_name["tumour_volume_ml"]
        ]
    return []


def _lesion_series(
    conn: psycopg.Connection, patient: str, versions: dict[str, str]
) -> tuple[list[Point], dict[str, Any]] | None:
    """Burden points and per-assessment lesion values from the tracked lesions, or None."""
    rows = lesions.patient_assessments(conn, patient, cohorts=None)  # the worker sees all
    if not rows:
        return None
    versions["lesions"] = f"{rows[-1]['model_name']}/{rows[-1]['model_version']}"
    return lesion_points(rows)


def lesion_points(rows: list[dict[str, Any]]) -> tuple[list[Point], dict[str, Any]]:
    """The decision series' points from stored assessments (``lesion_assessments`` rows,
    oldest first): one per time, the first assessed where two share it, none for a
    not-evaluable assessment (:func:`schemas.enums.carries_burden`)."""
    points: list[Point] = []
    extra: dict[str, Any] = {"new": [], "states": [], "in_field": [], "out_of_field": []}
    for r in rows:
        if points and r["observed_at"] <= points[-1][0]:
            continue  # two acquisitions at one time: the first assessed counts
        if not carries_burden(r["irecist_state"]):
            continue  # not evaluable: its sum counts only the lesions seen
        points.append(
            (
                r["observed_at"],
                float(r["sum_diameters_mm"]),
                float(r["total_volume_ml"]),
                (),
                r["source_event_id"],
            )
        )
        extra["new"].append(int(r["new_lesions"]))
        extra["states"].append(IRecistState(int(r["irecist_state"])))
        extra["in_field"].append(float(r["in_field_sum_mm"]))
        extra["out_of_field"].append(float(r["out_of_field_sum_mm"]))
    return points, extra


def load_assessments(
    conn: psycopg.Connection, patient: str
) -> tuple[PatientSeries, tuple[uuid.UUID, ...]] | None:
    """The patient's burden assessments with the other scores as of each, and the acquisition
    event id of each assessment; ``None`` when no burden has been measured."""
    by_name: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in scores.latest_scores_by_source(conn, patient, BURDEN_SCORES + OTHER_SCORES):
        by_name[row["score_name"]].append(row)
    for rows in by_name.values():
        rows.sort(key=lambda r: r["observed_at"])
    versions: dict[str, str] = {}
    tracked = _lesion_series(conn, patient, versions)
    if tracked is not None:
        return _series(tracked[0], by_name, versions, tracked[1])
    meas = scores.measurements_by_source(conn, patient)
    points = _burden_points(meas, by_name, versions)
    return _series(points, by_name, versions, None)


def _series(
    points: list[Point],
    by_name: dict[str, list[dict[str, Any]]],
    versions: dict[str, str],
    tracked: dict[str, Any] | None,
) -> tuple[PatientSeries, tuple[uuid.UUID, ...]] | None:
    if not points:
        return None
    points.sort(key=lambda p: p[0])
    dedup: list[Point] = []
    for p in points:
        if not dedup or p[0] > dedup[-1][0]:
            dedup.append(p)
    times = [p[0] for p in dedup]
    baseline_lesions = set(dedup[0][3])
    new_lesions = [len(set(p[3]) - baseline_lesions) if baseline_lesions else 0 for p in dedup]

    def as_of(name: str) -> np.ndarray | None:
        rows = by_name.get(name)
        if not rows:
            return None
        versions[name] = rows[-1]["model"]
        out = []
        for t in times:
            prior = [r["value"] for r in rows if r["observed_at"] <= t]
            out.append(float(prior[-1]) if prior else math.nan)
        return np.asarray(out)

    vols = np.array([p[2] for p in dedup])
    if tracked is not None:  # already one point per time, in order
        new_lesions = tracked["new"]
    series = PatientSeries(
        times=tuple(times),
        sum_diameters_mm=np.array([p[1] for p in dedup]),
        volume_ml=vols if np.all(np.isfinite(vols)) else None,
        response_probability=as_of("response_probability"),
        immune_score=as_of("ct_immune_score"),
        new_lesions=np.asarray(new_lesions),
        model_versions=versions,
        irecist_states=None if tracked is None else tuple(tracked["states"]),
        in_field_sum_mm=None if tracked is None else np.asarray(tracked["in_field"]),
        out_of_field_sum_mm=None if tracked is None else np.asarray(tracked["out_of_field"]),
    )
    return series, tuple(p[4] for p in dedup)


def load_series(conn: psycopg.Connection, patient: str) -> PatientSeries | None:
    """The patient's burden assessments (:func:`load_assessments` without the sources)."""
    loaded = load_assessments(conn, patient)
    return loaded[0] if loaded else None
