"""The one alert lifecycle: the decision rule opens and updates alerts, people acknowledge,
resolve and dismiss them. The worker and the app both go through here.

- :func:`evaluate` reads one patient's stored burden and scores, runs
  :class:`models.changepoint.DecisionRule`, and opens or updates that patient's alerts: one
  active (open or
  acknowledged) alert per patient and kind, updated in place, never duplicated. The iRECIST
  state of each follow-up is stored once: for a patient whose lesions are tracked it is the
  worker's assessment over every lesion (stored with the lesions, read back by the rule); for
  a patient known only by a burden series, the rule's assessment of that series is stored here
  as an ``irecist_state`` score. Alert ids are
  deterministic (uuid5 of patient, kind and the estimated change time at opening), so a replay
  of the same scores finds the alert it already made and changes nothing; a closed alert is not
  reopened by the same change.
- :func:`acknowledge`, :func:`resolve`, :func:`dismiss` change an alert's status;
  :func:`act` is the same for a signed-in user of the app (role and cohorts checked here, a
  refusal audited).

Every change writes one ``audit_log`` row (append-only) whose action is an
:class:`schemas.AlertAction` (``alert.opened`` ... ``alert.dismissed``) and whose
``detail.alert`` is the Alert as published. That row is the outbox: :mod:`core.delivery`
delivers it to the webhook, the e-mail and the ``alerts`` topic. Functions take an open
connection and do not commit (except :func:`act`, which owns its transaction).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg

from core.db import alerts as rows
from core.db import audit, history, lesions, scores, users
from core.db.events import Cohorts
from models.changepoint import DecisionConfig, DecisionRule, PatientSeries
from models.changepoint.decision import RULE_NAME, RULE_VERSION, Decision, Flag
from schemas import (
    Alert,
    AlertAction,
    AlertKind,
    AlertStatus,
    RefusedError,
    TimepointScore,
    percent,
)
from schemas.enums import IRECIST_SCORE, AlertVerb, LesionRole, Role

ACTOR = "irtmon.changepoint"
"""Audit actor of alerts opened or updated by the decision rule."""

ALERT_NAMESPACE = uuid.UUID("0b8f2d6e-4c1a-5e7b-9a3d-6f2e1c4b8a70")

RECOMMENDATION = {
    AlertKind.SUSPECTED_NON_RESPONSE: "consider adaptive treatment review",
    AlertKind.CONFIRMED_PROGRESSION: (
        "iRECIST-confirmed progression: review treatment at the next tumour board"
    ),
}


class AlertActionRefusedError(RefusedError, ValueError):
    """An alert action the user may not take, or that does not apply; the message says why."""


def alert_id(patient: str, kind: AlertKind | str, change_at: datetime) -> uuid.UUID:
    """Deterministic id: the same patient, kind and change time give the same alert."""
    return uuid.uuid5(ALERT_NAMESPACE, f"{patient}/{AlertKind(kind).value}/{change_at.isoformat()}")


# ----------------------------------------------------------------------------- wording


def _when(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d")


NewLesion = tuple[datetime, str, str]
"""A new lesion: (first seen at, tracking id, organ)."""


def _organ(organ: str) -> str:
    return organ.replace("_", " ")


def _change(values: np.ndarray, t: int) -> tuple[float, float, int]:
    """Value at ``t``, its nadir before ``t`` (the baseline at ``t`` = 0) and the nadir's index."""
    nadir_i = int(np.argmin(values[:t])) if t > 0 else 0
    return float(values[t]), float(values[nadir_i]), nadir_i


def _pct(value: float, nadir: float) -> str:
    """The change from a nadir in words."""
    if nadir > 0:
        return f"{100.0 * (value / nadir - 1.0):+.0f}% from their nadir of {nadir:.0f} mm"
    return "none measured at their nadir" if value > 0 else "none so far"


def _progressed(values: np.ndarray | None, t: int) -> bool | None:
    """RECIST 1.1's progression of a sum (20 % and 5 mm over its nadir before ``t``); None
    when the sum is not known at ``t``."""
    if values is None or t == 0 or not np.isfinite(values[t]):
        return None
    value, nadir, _ = _change(values, t)
    return value - nadir >= 5.0 and value >= 1.2 * nadir


def in_field_only(series: PatientSeries, t: int) -> bool:
    """Whether the lesions in the radiotherapy field have grown by RECIST 1.1's 20 % and 5 mm
    at ``t`` while those outside it have not (or there are none).

    Radiation changes around an irradiated lung lesion (pneumonitis, fibrosis) are often taken
    into its outline and read as growth: in the virtual clinic's training cohort, the two gross
    false progressions of 200 follow-ups were such outlines (docs/lesions.md). RECIST 1.1
    (Eisenhauer 2009, 3.1.2) counts lesions in a previously irradiated area as usually not
    measurable for this reason; the alert says so rather than leaving it to be noticed.
    """
    inside = _progressed(series.in_field_sum_mm, t)
    outside = _progressed(series.out_of_field_sum_mm, t)
    return bool(inside) and not outside


def describe(
    series: PatientSeries,
    decision: Decision,
    flag: Flag,
    new_lesions: Sequence[NewLesion] = (),
) -> str:
    """What changed, when and how sure, in plain words, for the treating team.

    Where the patient's lesions are tracked (``series.irecist_states``), the burden is the sum
    of the target lesions' diameters; the new lesions (``new_lesions``, with their organs and
    when first seen) and the in-field and out-of-field sums are named. The signals and model
    versions behind it are stored beside it (``signals``, ``model_versions``) and shown on
    their own lines by the app and the notifications.
    """
    s = series.sum_diameters_mm
    t, c = flag.index, flag.change_index
    value, nadir, nadir_i = _change(s, t)
    pct = 100.0 * (value / nadir - 1.0) if nadir > 0 else 0.0
    tracked = series.irecist_states is not None
    burden = "sum of target-lesion diameters" if tracked else "sum of longest diameters"
    parts = []
    if flag.kind == AlertKind.CONFIRMED_PROGRESSION.value:
        parts.append(
            f"iRECIST confirmed progression (iCPD) on {_when(series.times[t])}: the {burden} "
            f"is {value:.0f} mm, {pct:+.0f}% from the nadir of "
            f"{nadir:.0f} mm ({_when(series.times[nadir_i])}), confirming the "
            f"unconfirmed progression (iUPD) of {_when(series.times[c])}."
        )
    else:
        parts.append(
            f"Suspected non-response from {_when(series.times[c])}: the {burden} "
            f"rose from {nadir:.0f} mm at its nadir ({_when(series.times[nadir_i])})"
            f" to {value:.0f} mm ({pct:+.0f}%) on {_when(series.times[t])}."
        )
    last = len(series) - 1
    if tracked:
        seen = [n for n in new_lesions if n[0] <= series.times[last]]
        if seen:
            names = ", ".join(
                f"{tid} {_organ(organ)} (first seen {_when(at)})" for at, tid, organ in seen
            )
            parts.append(
                f"{len(seen)} new lesion{'s' if len(seen) > 1 else ''} since the baseline of "
                f"{_when(series.times[0])}: {names}."
            )
        fields = []
        for name, values in (
            ("out-of-field lesions", series.out_of_field_sum_mm),
            ("in-field lesions", series.in_field_sum_mm),
        ):
            if values is not None and np.isfinite(values[t]):
                v, n, _ = _change(values, t)
                fields.append(f"{name} {v:.0f} mm ({_pct(v, n)})")
        if fields:
            parts.append(f"Sums of diameters on {_when(series.times[t])}: {'; '.join(fields)}.")
        if in_field_only(series, t) and not any(n[0] <= series.times[t] for n in new_lesions):
            parts.append(
                "The growth is in the radiotherapy field alone, with no new lesion: radiation "
                "pneumonitis or fibrosis around an irradiated lesion can be outlined as tumour "
                "and mimic progression (RECIST 1.1 counts a lesion in an irradiated area as "
                "usually not measurable), so check its outline on the images before acting."
            )
    v = series.volume_ml
    if v is not None:
        vn = float(np.min(v[:t])) if t > 0 else float(v[0])
        what = "Total lesion volume" if tracked else "Tumour volume"
        if vn > 0:
            parts.append(f"{what} {v[t]:.1f} ml ({100 * (v[t] / vn - 1):+.0f}% from its nadir).")
    rp = series.response_probability
    if rp is not None and np.isfinite(rp[t]):
        peak = float(np.nanmax(rp[: t + 1]))
        parts.append(
            f"The response model gives a {percent(rp[t])} chance of response "
            f"(highest so far {percent(peak)})."
        )
    p_now = decision.probabilities[last]
    sure = percent(flag.probability)
    if np.isfinite(p_now) and last != t:
        sure += (
            f" when raised, {percent(p_now)} at the latest assessment ({_when(series.times[last])})"
        )
    parts.append(
        f"Taking the trajectory as a whole, the probability of non-response is {sure}; "
        f"iRECIST state {decision.states[last].words}."
    )
    return " ".join(parts)[:2000]


def new_lesions_of(conn: psycopg.Connection, patient: str) -> list[NewLesion]:
    """The patient's tracked new lesions, each with when it was first seen, oldest first."""
    first: dict[str, NewLesion] = {}
    for r in lesions.patient_lesions(conn, patient, cohorts=None):  # the worker sees all
        if LesionRole(r["role"]).is_new and r["status"] == "seen":
            first.setdefault(r["tracking_uid"], (r["observed_at"], r["tracking_id"], r["organ"]))
    return sorted(first.values(), key=lambda n: (n[0], len(n[1]), n[1]))


# ----------------------------------------------------------------------------- audit


def _audit(
    conn: psycopg.Connection,
    actor: str,
    action: AlertAction,
    alert: Alert,
    at: datetime,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """The outbox row of one alert change (delivered by :mod:`core.delivery`)."""
    audit.write(
        conn,
        actor=actor,
        action=action.value,
        entity="alert",
        entity_id=str(alert.event_id),
        patient=alert.patient,
        detail={"alert": alert.model_dump(mode="json"), **(extra or {})},
        at=at,
    )


# ----------------------------------------------------------------------------- decision


def open_alert(
    conn: psycopg.Connection,
    patient: str,
    kind: AlertKind,
    content: Mapping[str, Any],
    *,
    now: datetime | None = None,
    actor: str = ACTOR,
) -> Alert | None:
    """Open the patient's alert of ``kind`` with ``content`` (probability, change_at, summary,
    recommendation, signals, model_versions), or update the active one; the Alert when it
    changed, None when nothing did. Audited as ``alert.opened`` / ``alert.updated``."""
    return _open_or_update(conn, patient, kind, dict(content), now or datetime.now(UTC), actor)


def _open_or_update(
    conn: psycopg.Connection,
    patient: str,
    kind: AlertKind,
    content: dict[str, Any],
    now: datetime,
    actor: str = ACTOR,
) -> Alert | None:
    """Open, update or leave the patient's alert of ``kind``; the event when it changed."""
    current = rows.active(conn, patient, kind)
    if current is None:
        aid = alert_id(patient, kind, content["change_at"])
        if rows.exists(conn, aid):
            return None  # this change was alerted before and closed: do not reopen
        row = rows.insert_open(conn, aid, patient, kind, content, now)
        if row is None:  # a concurrent evaluation opened it first
            return None
        alert = rows.to_alert(row)
        _audit(conn, actor, AlertAction.OPENED, alert, now)
        return alert
    changed = sorted(
        key
        for key in ("probability", "summary", "recommendation", "signals", "model_versions")
        if current[key] != content[key]
    )
    if not changed:
        return None
    alert = rows.to_alert(rows.update_content(conn, current["alert_id"], content, now))
    _audit(conn, actor, AlertAction.UPDATED, alert, now, {"changed": changed})
    return alert


def store_irecist_states(
    conn: psycopg.Connection,
    patient: str,
    series: PatientSeries,
    sources: tuple[uuid.UUID, ...],
    decision: Decision,
) -> None:
    """Store the iRECIST state of every follow-up assessment as an ``irecist_state`` score
    (the code of :class:`schemas.enums.IRecistState`), by the decision rule's version.

    Written straight to ``timepoint_scores``, not published: a score on ``scores.timepoint``
    would bring the patient back to the change-point agent. Upserted, so a re-evaluation
    rewrites the same rows (and a scan that arrives late, between two others, updates the
    states after it). The baseline has no response category and gets none. A series whose
    states were assessed over every lesion (``series.irecist_states``) is left alone: the
    worker stored those states with the lesions, the one source of them.
    """
    if series.irecist_states is not None:
        return
    scores.upsert_scores(  # in one statement
        conn,
        [
            TimepointScore.for_source(
                source_event_id=sources[i],
                patient=patient,
                occurred_at=series.times[i],
                score_name=IRECIST_SCORE,
                value=float(decision.states[i].code),
                model_name=RULE_NAME,
                model_version=RULE_VERSION,
            )
            for i in range(1, len(series))
        ],
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
    ``config`` is the site's decision policy (:func:`decision_config`); default the rule's.
    """
    loaded = history.load_assessments(conn, patient)
    if loaded is None or len(loaded[0]) < 2:
        return []
    series, sources = loaded
    decision = DecisionRule(config=config or DecisionConfig()).fit(series).predict()
    store_irecist_states(conn, patient, series, sources, decision)
    new = new_lesions_of(conn, patient) if series.irecist_states is not None else []
    now = now or datetime.now(UTC)
    out: list[Alert] = []
    last = len(series) - 1
    for flag in decision.flags:
        kind = AlertKind(flag.kind)
        probability = flag.probability
        p_now = decision.probabilities[last]
        if kind is AlertKind.SUSPECTED_NON_RESPONSE and np.isfinite(p_now):
            probability = float(p_now)
        content = {
            "probability": round(min(max(probability, 0.0), 1.0), 4),
            "change_at": series.times[flag.change_index],
            "summary": describe(series, decision, flag, new),
            "recommendation": RECOMMENDATION[kind],
            "signals": list(flag.signals),
            "model_versions": dict(decision.model_versions),
        }
        alert = _open_or_update(conn, patient, kind, content, now)
        if alert is not None:
            out.append(alert)
    return out


def evaluate_patients(
    conn: psycopg.Connection,
    patients: Sequence[str],
    *,
    config: DecisionConfig | None = None,
    now: datetime | None = None,
) -> list[Alert]:
    """:func:`evaluate` each of ``patients`` once, in order; return the alerts opened or
    changed.

    One query first finds those whose burden has ever been assessed
    (:data:`core.db.history.BURDEN_SCORES` or a tumour measurement); the others have no
    series to evaluate (:func:`evaluate` would return ``[]`` and write nothing) and are skipped.
    """
    assessed = scores.patients_with_burden(conn, patients, history.BURDEN_SCORES)
    out: list[Alert] = []
    for patient in patients:
        if patient in assessed:
            out.extend(evaluate(conn, patient, config=config, now=now))
    return out


def decision_config(policy: Mapping[str, Any] | None) -> DecisionConfig:
    """The site's decision policy (``IRTMON_ALERT_POLICY``, a JSON object of
    :class:`DecisionConfig` fields) or the rule's defaults."""
    return DecisionConfig.from_mapping(policy) if policy else DecisionConfig()


# ----------------------------------------------------------------------------- people

_TRANSITIONS: dict[AlertVerb, tuple[tuple[AlertStatus, ...], AlertStatus]] = {
    AlertVerb.ACKNOWLEDGE: ((AlertStatus.OPEN,), AlertStatus.ACKNOWLEDGED),
    AlertVerb.RESOLVE: ((AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED), AlertStatus.RESOLVED),
    AlertVerb.DISMISS: ((AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED), AlertStatus.DISMISSED),
}


def change(
    conn: psycopg.Connection,
    alert: uuid.UUID | str,
    action: AlertVerb | str,
    by: str,
    *,
    note: str | None = None,
    at: datetime | None = None,
    cohorts: Cohorts = None,
) -> Alert:
    """Acknowledge, resolve or dismiss an alert (a dismissal needs ``note``, its reason).

    Raises :class:`LookupError` for an alert that does not exist (or is outside ``cohorts``),
    :class:`AlertActionRefusedError` (a ``ValueError``) for an action that does not apply.
    """
    try:
        verb = AlertVerb(action)
    except ValueError as err:
        raise AlertActionRefusedError(
            f"unknown action {action!r}; use one of {', '.join(AlertVerb)}"
        ) from err
    if not by or not by.strip():
        raise ValueError("say who acts on the alert (by=...)")
    note = (note or "").strip() or None
    if verb is AlertVerb.DISMISS and not note:
        raise AlertActionRefusedError("a dismissal needs a note giving the reason")
    allowed, new_status = _TRANSITIONS[verb]
    at = at or datetime.now(UTC)
    row = rows.by_id(conn, alert, lock=True, cohorts=cohorts)
    if row is None:
        raise LookupError(f"alert {alert} does not exist or is outside your cohorts")
    status = AlertStatus(row["status"])
    if status not in allowed:
        raise AlertActionRefusedError(
            f"cannot {verb} an alert that is {status.value}; {verb} needs "
            f"{' or '.join(s.value for s in allowed)}"
        )
    reason = note if verb is not AlertVerb.ACKNOWLEDGE else None
    changed = rows.to_alert(rows.set_status(conn, row["alert_id"], new_status, by, at, reason))
    extra = {"from": status.value, "to": new_status.value}
    if note:
        extra["note"] = note
        if reason:
            extra["reason"] = reason
    _audit(conn, by, verb.action, changed, at, extra)
    return changed


def acknowledge(
    conn: psycopg.Connection,
    alert: uuid.UUID | str,
    by: str,
    *,
    at: datetime | None = None,
    note: str | None = None,
) -> Alert:
    """Someone has seen an open alert and is looking into it."""
    return change(conn, alert, AlertVerb.ACKNOWLEDGE, by, note=note, at=at)


def resolve(
    conn: psycopg.Connection,
    alert: uuid.UUID | str,
    by: str,
    *,
    reason: str | None = None,
    at: datetime | None = None,
) -> Alert:
    """The alert was acted upon (for example, the treatment was reviewed)."""
    return change(conn, alert, AlertVerb.RESOLVE, by, note=reason, at=at)


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
    return change(conn, alert, AlertVerb.DISMISS, by, note=reason, at=at)


def act(
    conn: psycopg.Connection,
    alert: str,
    action: AlertVerb | str,
    actor: str,
    note: str,
    cohorts: Cohorts,
) -> Alert:
    """A signed-in app user acts on an alert, in one transaction of its own.

    The actor's role is read from ``app_users`` here, whatever the page showed: only an active
    clinician or admin may act, and only on an alert of a patient in ``cohorts`` (None: every
    cohort). A refusal raises :class:`AlertActionRefusedError` saying why and is audited too
    (entity ``alert_refusal``); nothing else changes.
    """
    try:
        with conn.transaction():
            role = users.active_role(conn, actor)
            if role is None or not Role(role).can_act_on_alerts:
                raise AlertActionRefusedError(
                    f"{actor} may not act on alerts (role {role or 'none'}); "
                    "only clinicians and admins can"
                )
            try:
                return change(conn, alert, action, actor, note=note, cohorts=cohorts)
            except LookupError as err:
                raise AlertActionRefusedError(str(err)) from err
    except AlertActionRefusedError as err:
        with conn.transaction():
            audit.write(
                conn,
                actor=actor,
                action=str(action)[:64],
                entity="alert_refusal",
                entity_id=str(alert)[:64],
                detail={"why": str(err)},
            )
        raise


__all__ = [
    "ACTOR",
    "AlertActionRefusedError",
    "acknowledge",
    "act",
    "alert_id",
    "change",
    "decision_config",
    "describe",
    "dismiss",
    "evaluate",
    "in_field_only",
    "new_lesions_of",
    "open_alert",
    "resolve",
    "store_irecist_states",
]
