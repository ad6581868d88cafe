"""The decision layer of the change-point agent: stored series -> decision rule -> alerts.

:func:`evaluate` reads one patient's burden and scores from the database, runs
:class:`models.changepoint.DecisionRule`, and opens or updates that patient's alerts: one
active (open or acknowledged) alert per patient and kind, updated in place, never duplicated.
Alert ids are deterministic (uuid5 of patient, kind and the estimated change time at opening),
so a replay of the same scores finds the alert it already made and changes nothing. A closed
(resolved or dismissed) alert is not reopened by the same change. The iRECIST state of each
follow-up assessment is stored as an ``irecist_state`` score (:func:`store_irecist_states`),
for the app's timeline and cohort table.

Lifecycle functions (:func:`acknowledge`, :func:`resolve`, :func:`dismiss`) change an alert's
status. Every change writes one ``audit_log`` row (append-only) whose ``detail.alert`` is the
Alert event as published; :mod:`streams.delivery` delivers from those rows (the outbox).

Functions take an open connection and do not commit; the caller commits.

Burden source, by priority (the first the patient has is used for the whole series):

1. ``tumour_measurements``: longest diameters summed per acquisition (``source_event_id``);
2. the ``tumour_sum_diameters_mm`` score;
3. the ``longest_diameter_mm`` score;
4. volumes (``tumour_measurements.volume_ml`` summed, or the ``tumour_volume_ml`` score), as
   the diameter of the sphere of that volume.

``response_probability`` and ``ct_immune_score`` are taken as of each burden assessment (the
latest value observed at or before it, from any acquisition or biopsy); where a scan has
scores of several model versions (``irtmon rescore``), the promoted version's wins, else the
newest.
"""

from __future__ import annotations

import math
import uuid
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from models.changepoint import DecisionConfig, DecisionRule, PatientSeries
from models.changepoint.decision import RULE_NAME, RULE_VERSION, Decision, Flag
from models.changepoint.irecist import IrecistState
from schemas import Alert, AlertKind, AlertStatus, TimepointScore, percent, score_event_id
from schemas.enums import IRECIST_SCORE, IRecistState
from streams import sinks

ACTOR = "irtmon.changepoint"
"""Audit actor of alerts opened or updated by the decision rule."""

ALERT_NAMESPACE = uuid.UUID("0b8f2d6e-4c1a-5e7b-9a3d-6f2e1c4b8a70")

BURDEN_SCORES = ("tumour_sum_diameters_mm", "longest_diameter_mm", "tumour_volume_ml")
OTHER_SCORES = ("response_probability", "ct_immune_score")

RECOMMENDATION = {
    AlertKind.SUSPECTED_NON_RESPONSE: "consider adaptive treatment review",
    AlertKind.CONFIRMED_PROGRESSION: (
        "iRECIST-confirmed progression: review treatment at the next tumour board"
    ),
}


def alert_id(patient: str, kind: AlertKind | str, change_at: datetime) -> uuid.UUID:
    """Deterministic id: the same patient, kind and change time give the same alert."""
    return uuid.uuid5(ALERT_NAMESPACE, f"{patient}/{AlertKind(kind).value}/{change_at.isoformat()}")


# ----------------------------------------------------------------------------- reading


def _sphere_diameter_mm(volume_ml: float) -> float:
    return (6.0 * volume_ml * 1000.0 / math.pi) ** (1.0 / 3.0)


def load_series(conn: psycopg.Connection, patient: str) -> PatientSeries | None:
    """The patient's burden assessments with the other scores as of each, or ``None`` when
    no burden has been measured."""
    loaded = load_assessments(conn, patient)
    return loaded[0] if loaded else None


def load_assessments(
    conn: psycopg.Connection, patient: str
) -> tuple[PatientSeries, tuple[uuid.UUID, ...]] | None:
    """:func:`load_series` with the acquisition event id of each burden assessment."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            """
            SELECT source_event_id, min(observed_at) AS observed_at,
                   sum(longest_diameter_mm) AS sld, count(longest_diameter_mm) AS n_d,
                   sum(volume_ml) AS vol, count(volume_ml) AS n_v,
                   array_agg(lesion_id ORDER BY lesion_id) AS lesions,
                   max(model_name || '/' || model_version) AS model
            FROM tumour_measurements
            WHERE patient = %s
            GROUP BY source_event_id
            ORDER BY 2, 1
            """,
            (patient,),
        )
        meas = cur.fetchall()
        cur.execute(
            """
            SELECT DISTINCT ON (s.source_event_id, s.score_name)
                   s.source_event_id, s.observed_at, s.score_name, s.value,
                   s.model_name || '/' || s.model_version AS model
            FROM timepoint_scores s
            LEFT JOIN model_registry m
                   ON m.name = s.model_name AND m.version = s.model_version
            WHERE s.patient = %s AND s.score_name = ANY(%s)
            ORDER BY s.source_event_id, s.score_name, s.observed_at,
                     coalesce(m.promoted, false) DESC, s.created_at DESC, s.model_version DESC
            """,
            (patient, list(BURDEN_SCORES + OTHER_SCORES)),
        )
        scores = cur.fetchall()

    versions: dict[str, str] = {}
    by_name: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in scores:
        by_name[row["score_name"]].append(row)
    for rows in by_name.values():
        rows.sort(key=lambda r: r["observed_at"])

    # burden: (time, sum of diameters, volume, lesion ids, acquisition event id)
    points: list[tuple[datetime, float, float, tuple[str, ...], uuid.UUID]] = []
    if any(m["n_d"] for m in meas):
        points = [
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
        versions["tumour_measurements"] = max(m["model"] for m in meas)
    else:
        vol_scores = {r["source_event_id"]: r for r in by_name.get("tumour_volume_ml", [])}
        for name in ("tumour_sum_diameters_mm", "longest_diameter_mm"):
            if by_name.get(name):
                for r in by_name[name]:
                    v = vol_scores.get(r["source_event_id"])
                    points.append(
                        (
                            r["observed_at"],
                            float(r["value"]),
                            float(v["value"]) if v else math.nan,
                            (),
                            r["source_event_id"],
                        )
                    )
                versions[name] = by_name[name][-1]["model"]
                break
        else:
            if any(m["n_v"] for m in meas):
                points = [
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
                versions["tumour_measurements"] = max(m["model"] for m in meas)
            elif by_name.get("tumour_volume_ml"):
                points = [
                    (
                        r["observed_at"],
                        _sphere_diameter_mm(float(r["value"])),
                        float(r["value"]),
                        (),
                        r["source_event_id"],
                    )
                    for r in by_name["tumour_volume_ml"]
                ]
                versions["tumour_volume_ml"] = by_name["tumour_volume_ml"][-1]["model"]
    if not points:
        return None
    points.sort(key=lambda p: p[0])
    dedup: list[tuple[datetime, float, float, tuple[str, ...], uuid.UUID]] = []
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
    series = PatientSeries(
        times=tuple(times),
        sum_diameters_mm=np.array([p[1] for p in dedup]),
        volume_ml=vols if np.all(np.isfinite(vols)) else None,
        response_probability=as_of("response_probability"),
        immune_score=as_of("ct_immune_score"),
        new_lesions=np.asarray(new_lesions),
        model_versions=versions,
    )
    return series, tuple(p[4] for p in dedup)


# ----------------------------------------------------------------------------- wording


def _when(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d")


def describe(series: PatientSeries, decision: Decision, flag: Flag) -> str:
    """What changed, when and how sure, in plain words, for the treating team.

    The signals and model versions behind it are stored beside it (``signals``,
    ``model_versions``) and shown on their own lines by the app and the notifications.
    """
    s = series.sum_diameters_mm
    t, c = flag.index, flag.change_index
    nadir_i = int(np.argmin(s[:t])) if t > 0 else 0
    pct = 100.0 * (s[t] / s[nadir_i] - 1.0)
    parts = []
    if flag.kind == AlertKind.CONFIRMED_PROGRESSION.value:
        parts.append(
            f"iRECIST confirmed progression (iCPD) on {_when(series.times[t])}: the sum of "
            f"longest diameters is {s[t]:.0f} mm, {pct:+.0f}% from the nadir of "
            f"{s[nadir_i]:.0f} mm ({_when(series.times[nadir_i])}), confirming the "
            f"unconfirmed progression (iUPD) of {_when(series.times[c])}."
        )
    else:
        parts.append(
            f"Suspected non-response from {_when(series.times[c])}: the sum of longest "
            f"diameters rose from {s[nadir_i]:.0f} mm at its nadir ({_when(series.times[nadir_i])})"
            f" to {s[t]:.0f} mm ({pct:+.0f}%) on {_when(series.times[t])}."
        )
    v = series.volume_ml
    if v is not None:
        vn = float(np.min(v[:t])) if t > 0 else float(v[0])
        parts.append(f"Tumour volume {v[t]:.1f} ml ({100 * (v[t] / vn - 1):+.0f}% from its nadir).")
    rp = series.response_probability
    if rp is not None and np.isfinite(rp[t]):
        peak = float(np.nanmax(rp[: t + 1]))
        parts.append(
            f"The response model gives a {percent(rp[t])} chance of response "
            f"(highest so far {percent(peak)})."
        )
    last = len(series) - 1
    p_now = decision.probabilities[last]
    sure = percent(flag.probability)
    if np.isfinite(p_now) and last != t:
        sure += (
            f" when raised, {percent(p_now)} at the latest assessment ({_when(series.times[last])})"
        )
    parts.append(
        f"Taking the trajectory as a whole, the probability of non-response is {sure}; "
        f"iRECIST state {IRecistState(IrecistState(decision.states[last]).code).words}."
    )
    return " ".join(parts)[:2000]


# ----------------------------------------------------------------------------- storing


@dataclass(frozen=True)
class _Content:
    probability: float
    change_at: datetime
    summary: str
    recommendation: str
    signals: list[str]
    model_versions: dict[str, str]


def _row_to_alert(row: Mapping[str, Any]) -> Alert:
    return Alert(
        event_id=row["alert_id"],
        patient=row["patient"],
        occurred_at=row["updated_at"],
        kind=AlertKind(row["kind"]),
        status=AlertStatus(row["status"]),
        probability=row["probability"],
        change_at=row["change_at"],
        summary=row["summary"],
        recommendation=row["recommendation"],
        signals=list(row["signals"]),
        model_versions=dict(row["model_versions"]),
    )


def _audit(
    conn: psycopg.Connection,
    actor: str,
    action: str,
    alert: Alert,
    at: datetime,
    extra: Mapping[str, Any] | None = None,
) -> None:
    detail = {"alert": alert.model_dump(mode="json"), **(extra or {})}
    conn.execute(
        """
        INSERT INTO audit_log (at, actor, action, entity, entity_id, patient, detail)
        VALUES (%s, %s, %s, 'alert', %s, %s, %s)
        """,
        (at, actor, action, str(alert.event_id), alert.patient, Jsonb(detail)),
    )


def _select(
    conn: psycopg.Connection, where: str, params: tuple[Any, ...], lock: bool = False
) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(f"SELECT * FROM alerts WHERE {where}{' FOR UPDATE' if lock else ''}", params)
        return cur.fetchone()


def _upsert(
    conn: psycopg.Connection, patient: str, kind: AlertKind, content: _Content, now: datetime
) -> Alert | None:
    """Open, update or leave the patient's alert of ``kind``; the event when it changed."""
    active = _select(
        conn,
        "patient = %s AND kind = %s AND status IN ('open', 'acknowledged')",
        (patient, kind.value),
        lock=True,
    )
    if active is None:
        aid = alert_id(patient, kind, content.change_at)
        if _select(conn, "alert_id = %s", (aid,)) is not None:
            return None  # this change was alerted before and closed: do not reopen
        with conn.cursor(row_factory=dict_row) as cur:
            cur.execute(
                """
                INSERT INTO alerts (alert_id, patient, kind, status, probability, change_at,
                                    summary, recommendation, signals, model_versions,
                                    opened_at, updated_at)
                VALUES (%s, %s, %s, 'open', %s, %s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT DO NOTHING
                RETURNING *
                """,
                (
                    aid,
                    patient,
                    kind.value,
                    content.probability,
                    content.change_at,
                    content.summary,
                    content.recommendation,
                    content.signals,
                    Jsonb(content.model_versions),
                    now,
                    now,
                ),
            )
            row = cur.fetchone()
        if row is None:  # a concurrent evaluation opened it first
            return None
        alert = _row_to_alert(row)
        _audit(conn, ACTOR, "alert.opened", alert, now)
        return alert
    changes = {
        key: (active[key], value)
        for key, value in (
            ("probability", content.probability),
            ("summary", content.summary),
            ("recommendation", content.recommendation),
            ("signals", content.signals),
            ("model_versions", content.model_versions),
        )
        if active[key] != value
    }
    if not changes:
        return None
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            """
            UPDATE alerts SET probability = %s, summary = %s, recommendation = %s,
                              signals = %s, model_versions = %s, updated_at = %s
            WHERE alert_id = %s
            RETURNING *
            """,
            (
                content.probability,
                content.summary,
                content.recommendation,
                content.signals,
                Jsonb(content.model_versions),
                now,
                active["alert_id"],
            ),
        )
        row = cur.fetchone()
    alert = _row_to_alert(row)
    _audit(conn, ACTOR, "alert.updated", alert, now, {"changed": sorted(changes)})
    return alert


def store_irecist_states(
    conn: psycopg.Connection,
    patient: str,
    series: PatientSeries,
    sources: tuple[uuid.UUID, ...],
    decision: Decision,
) -> None:
    """Store the iRECIST state of every follow-up assessment as an ``irecist_state`` score
    (the code of :class:`~models.changepoint.IrecistState`), by the decision rule's version.

    Written straight to ``timepoint_scores``, not published: a score on ``scores.timepoint``
    would bring the patient back to this agent. Upserted, so a re-evaluation rewrites the same
    rows (and a scan that arrives late, between two others, updates the states after it). The
    baseline has no response category and gets none.
    """
    for i in range(1, len(series)):
        state = IrecistState(decision.states[i])
        sinks.upsert_score(
            conn,
            TimepointScore(
                event_id=score_event_id(sources[i], IRECIST_SCORE, RULE_NAME, RULE_VERSION),
                patient=patient,
                occurred_at=series.times[i],
                source_event_id=sources[i],
                score_name=IRECIST_SCORE,
                value=float(state.code),
                model_name=RULE_NAME,
                model_version=RULE_VERSION,
            ),
        )


def evaluate(
    conn: psycopg.Connection,
    patient: str,
    *,
    config: DecisionConfig | None = None,
    now: datetime | None = None,
) -> list[Alert]:
    """Re-evaluate ``patient``'s stored series; return the alerts opened or changed.

    Idempotent: evaluating the same stored data again returns ``[]`` and writes nothing.
    ``config`` defaults to :func:`site_config` (the settings' decision policy).
    """
    loaded = load_assessments(conn, patient)
    if loaded is None or len(loaded[0]) < 2:
        return []
    series, sources = loaded
    cfg = config or site_config()
    decision = DecisionRule(config=cfg).fit(series).predict()
    store_irecist_states(conn, patient, series, sources, decision)
    now = now or datetime.now(UTC)
    out: list[Alert] = []
    for flag in decision.flags:
        kind = AlertKind(flag.kind)
        last = len(series) - 1
        p_now = decision.probabilities[last]
        probability = flag.probability
        if kind is AlertKind.SUSPECTED_NON_RESPONSE and np.isfinite(p_now):
            probability = float(p_now)
        content = _Content(
            probability=round(min(max(probability, 0.0), 1.0), 4),
            change_at=series.times[flag.change_index],
            summary=describe(series, decision, flag),
            recommendation=RECOMMENDATION[kind],
            signals=list(flag.signals),
            model_versions=dict(decision.model_versions),
        )
        alert = _upsert(conn, patient, kind, content, now)
        if alert is not None:
            out.append(alert)
    return out


def site_config() -> DecisionConfig:
    """The decision policy from the settings, when they define one, else the defaults.

    Reads ``IRTMON_ALERT_POLICY`` (a JSON object of :class:`DecisionConfig` fields, e.g.
    ``{"threshold": 0.7, "min_timepoints": 3, "confirm": "repeat"}``) through
    ``Settings.alert_policy`` once that field exists.
    """
    try:
        from core.settings import get_settings

        policy = getattr(get_settings(), "alert_policy", None)
    except Exception:
        policy = None
    if not policy:
        return DecisionConfig()
    return DecisionConfig.from_mapping(policy)


# ----------------------------------------------------------------------------- lifecycle


def _transition(
    conn: psycopg.Connection,
    aid: uuid.UUID | str,
    by: str,
    action: str,
    allowed: tuple[AlertStatus, ...],
    sets: str,
    params: tuple[Any, ...],
    at: datetime | None,
    extra: Mapping[str, Any],
) -> Alert:
    if not by or not by.strip():
        raise ValueError("say who acts on the alert (by=...)")
    at = at or datetime.now(UTC)
    row = _select(conn, "alert_id = %s", (uuid.UUID(str(aid)),), lock=True)
    if row is None:
        raise LookupError(f"no alert {aid}")
    status = AlertStatus(row["status"])
    if status not in allowed:
        raise ValueError(
            f"alert {aid} is {status.value}; {action.split('.')[-1]} needs "
            f"{' or '.join(s.value for s in allowed)}"
        )
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"UPDATE alerts SET {sets}, updated_at = %s WHERE alert_id = %s RETURNING *",
            (*params, at, row["alert_id"]),
        )
        new = cur.fetchone()
    alert = _row_to_alert(new)
    _audit(conn, by, action, alert, at, {"from": status.value, **extra})
    return alert


def acknowledge(
    conn: psycopg.Connection,
    alert: uuid.UUID | str,
    by: str,
    *,
    at: datetime | None = None,
    note: str | None = None,
) -> Alert:
    """Someone has seen an open alert and is looking into it."""
    at = at or datetime.now(UTC)
    return _transition(
        conn,
        alert,
        by,
        "alert.acknowledged",
        (AlertStatus.OPEN,),
        "status = 'acknowledged', acknowledged_by = %s, acknowledged_at = %s",
        (by, at),
        at,
        {"note": note} if note else {},
    )


def resolve(
    conn: psycopg.Connection,
    alert: uuid.UUID | str,
    by: str,
    *,
    reason: str | None = None,
    at: datetime | None = None,
) -> Alert:
    """The alert was acted upon (for example, the treatment was reviewed)."""
    at = at or datetime.now(UTC)
    return _transition(
        conn,
        alert,
        by,
        "alert.resolved",
        (AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED),
        "status = 'resolved', closed_by = %s, closed_at = %s, close_reason = %s",
        (by, at, reason),
        at,
        {"reason": reason} if reason else {},
    )


def dismiss(
    conn: psycopg.Connection,
    alert: uuid.UUID | str,
    by: str,
    reason: str,
    *,
    at: datetime | None = None,
) -> Alert:
    """The alert was wrong or not actionable (for example, pseudo-progression); ``reason``
    is required."""
    if not reason or not reason.strip():
        raise ValueError("a dismissal needs a reason")
    at = at or datetime.now(UTC)
    return _transition(
        conn,
        alert,
        by,
        "alert.dismissed",
        (AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED),
        "status = 'dismissed', closed_by = %s, closed_at = %s, close_reason = %s",
        (by, at, reason),
        at,
        {"reason": reason},
    )
