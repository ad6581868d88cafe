"""Read queries of the monitoring app. Pages call these; no SQL lives in a page file."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb


def patient_scores(
    conn: psycopg.Connection, patient: str, score_name: str | None = None
) -> list[dict[str, Any]]:
    """A patient's timepoint scores in time order (all model versions), as dicts."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            """
            SELECT observed_at, score_name, value, lower, upper, unit, model_name, model_version,
                   source_event_id, inputs, event_id
            FROM timepoint_scores
            WHERE patient = %s AND (%s::text IS NULL OR score_name = %s)
            ORDER BY observed_at, score_name, model_name, model_version
            """,
            (patient, score_name, score_name),
        )
        return cur.fetchall()


def cohort_daily(conn: psycopg.Connection, since: datetime) -> list[dict[str, Any]]:
    """Daily cohort summary per score (continuous aggregate on TimescaleDB, a view otherwise)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT day, score_name, n_scores, mean_value, min_value, max_value "
            "FROM cohort_daily WHERE day >= %s ORDER BY day, score_name",
            (since,),
        )
        return cur.fetchall()


# ----------------------------------------------------------------------------- access scope
#
# ``cohorts`` is the list of patients.cohort values a user may see, or None for every cohort
# (admins). Every read that returns patient data takes it, so a page cannot forget the scope.


def _scope(cohorts: list[str] | tuple[str, ...] | None) -> dict[str, Any]:
    return {"all": cohorts is None, "cohorts": list(cohorts or [])}


def cohort_overview(
    conn: psycopg.Connection, cohorts: list[str] | tuple[str, ...] | None
) -> list[dict[str, Any]]:
    """One row per visible patient: last scan, current response probability and band (the
    promoted model version when it has scored the patient, else the newest), its trend, the
    latest iRECIST state code, and active alerts."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            """
            WITH pts AS (
                SELECT pseudonym, cohort, arm, first_seen_at FROM patients
                WHERE %(all)s OR cohort = ANY(%(cohorts)s)
            ), rp AS (
                SELECT s.patient, s.observed_at, s.value, s.lower, s.upper, s.model_name,
                       s.model_version, s.created_at, coalesce(m.promoted, false) AS promoted
                FROM timepoint_scores s
                JOIN pts ON pts.pseudonym = s.patient
                LEFT JOIN model_registry m ON m.name = s.model_name AND m.version = s.model_version
                WHERE s.score_name = 'response_probability'
            ), latest AS (
                SELECT DISTINCT ON (patient) patient, observed_at, value, lower, upper,
                       model_name, model_version
                FROM rp ORDER BY patient, promoted DESC, observed_at DESC, created_at DESC
            ), trend AS (
                SELECT rp.patient, array_agg(rp.value ORDER BY rp.observed_at) AS trend
                FROM rp JOIN latest l ON l.patient = rp.patient
                     AND l.model_name = rp.model_name AND l.model_version = rp.model_version
                GROUP BY rp.patient
            ), irecist AS (
                SELECT DISTINCT ON (s.patient) s.patient, s.value
                FROM timepoint_scores s JOIN pts ON pts.pseudonym = s.patient
                WHERE s.score_name = 'irecist_state'
                ORDER BY s.patient, s.observed_at DESC, s.created_at DESC
            ), scans AS (
                SELECT a.patient, max(a.acquired_at) AS last_scan, count(*) AS n_scans
                FROM acquisitions a JOIN pts ON pts.pseudonym = a.patient
                WHERE a.kind = 'imaging' GROUP BY a.patient
            ), al AS (
                SELECT a.patient,
                       count(*) FILTER (WHERE a.status = 'open') AS open_alerts,
                       count(*) FILTER (WHERE a.status = 'acknowledged') AS acknowledged_alerts,
                       max(a.probability) AS alert_probability
                FROM alerts a JOIN pts ON pts.pseudonym = a.patient
                WHERE a.status IN ('open', 'acknowledged') GROUP BY a.patient
            )
            SELECT p.pseudonym AS patient, p.cohort, p.arm, p.first_seen_at,
                   scans.last_scan, coalesce(scans.n_scans, 0) AS n_scans,
                   latest.value AS response_probability, latest.lower, latest.upper,
                   latest.model_name, latest.model_version, latest.observed_at AS scored_at,
                   trend.trend, irecist.value AS irecist_code,
                   coalesce(al.open_alerts, 0) AS open_alerts,
                   coalesce(al.acknowledged_alerts, 0) AS acknowledged_alerts,
                   al.alert_probability
            FROM pts p
            LEFT JOIN scans ON scans.patient = p.pseudonym
            LEFT JOIN latest ON latest.patient = p.pseudonym
            LEFT JOIN trend ON trend.patient = p.pseudonym
            LEFT JOIN irecist ON irecist.patient = p.pseudonym
            LEFT JOIN al ON al.patient = p.pseudonym
            ORDER BY coalesce(al.open_alerts, 0) + coalesce(al.acknowledged_alerts, 0) > 0 DESC,
                     1 - coalesce(latest.value, 0.5) DESC, p.pseudonym
            """,
            _scope(cohorts),
        )
        return cur.fetchall()


def patient_info(
    conn: psycopg.Connection, patient: str, cohorts: list[str] | tuple[str, ...] | None
) -> dict[str, Any] | None:
    """The patient's row if ``cohorts`` lets the user see it, else None."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT pseudonym AS patient, cohort, arm, first_seen_at FROM patients "
            "WHERE pseudonym = %(patient)s AND (%(all)s OR cohort = ANY(%(cohorts)s))",
            {"patient": patient, **_scope(cohorts)},
        )
        return cur.fetchone()


def visible_patients(
    conn: psycopg.Connection, cohorts: list[str] | tuple[str, ...] | None
) -> list[str]:
    """Pseudonyms the user may see, sorted."""
    rows = conn.execute(
        "SELECT pseudonym FROM patients WHERE %(all)s OR cohort = ANY(%(cohorts)s) "
        "ORDER BY pseudonym",
        _scope(cohorts),
    ).fetchall()
    return [r[0] for r in rows]


def patient_scores_with_source(conn: psycopg.Connection, patient: str) -> list[dict[str, Any]]:
    """Every score of a patient (all model versions) with the kind and modality of the
    acquisition it was computed from."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            """
            SELECT s.observed_at, s.score_name, s.value, s.lower, s.upper, s.unit, s.model_name,
                   s.model_version, s.source_event_id, s.inputs,
                   a.kind AS source_kind, a.modality AS source_modality,
                   a.series_uids AS source_series, a.specimen_id
            FROM timepoint_scores s
            LEFT JOIN acquisitions a ON a.event_id = s.source_event_id
            WHERE s.patient = %s
            ORDER BY s.observed_at, s.score_name, s.model_name, s.model_version
            """,
            (patient,),
        )
        return cur.fetchall()


def patient_burden(conn: psycopg.Connection, patient: str) -> list[dict[str, Any]]:
    """Tumour burden per scan: RECIST sum of longest diameters and total volume of the lesions
    measured on that acquisition (by the newest model version that measured it)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            """
            WITH m AS (
                SELECT *, rank() OVER (PARTITION BY source_event_id
                                       ORDER BY model_version DESC, model_name) AS r
                FROM tumour_measurements WHERE patient = %s
            )
            SELECT m.source_event_id, min(m.observed_at) AS observed_at,
                   sum(m.longest_diameter_mm) AS sum_diameters_mm,
                   sum(m.volume_ml) AS total_volume_ml, count(*) AS n_lesions,
                   min(m.model_name) AS model_name, min(m.model_version) AS model_version,
                   array_agg(DISTINCT m.series_uid) FILTER (WHERE m.series_uid IS NOT NULL)
                       AS series_uids,
                   string_agg(DISTINCT m.mask_source, ', ') AS mask_sources,
                   min(a.modality) AS modality
            FROM m LEFT JOIN acquisitions a ON a.event_id = m.source_event_id
            WHERE m.r = 1
            GROUP BY m.source_event_id
            ORDER BY observed_at
            """,
            (patient,),
        )
        return cur.fetchall()


def patient_treatments(conn: psycopg.Connection, patient: str) -> list[dict[str, Any]]:
    """Radiotherapy and immunotherapy events in time order."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT occurred_at, kind, detail FROM treatment_events WHERE patient = %s "
            "ORDER BY occurred_at",
            (patient,),
        )
        return cur.fetchall()


def patient_acquisitions(conn: psycopg.Connection, patient: str) -> list[dict[str, Any]]:
    """Imaging studies and biopsies in time order, with where their files are."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            """
            SELECT event_id, kind, modality, acquired_at, purpose, study_uid, series_uids,
                   specimen_id, location, payload -> 'lesion' AS lesion, status
            FROM acquisitions WHERE patient = %s ORDER BY acquired_at
            """,
            (patient,),
        )
        return cur.fetchall()


_ALERT_COLUMNS = """
    a.alert_id, a.patient, p.cohort, p.arm, a.kind, a.status, a.probability, a.change_at,
    a.summary, a.recommendation, a.signals, a.model_versions, a.opened_at, a.updated_at,
    a.acknowledged_by, a.acknowledged_at, a.closed_by, a.closed_at, a.close_reason
"""


def patient_alerts(conn: psycopg.Connection, patient: str) -> list[dict[str, Any]]:
    """Every alert of a patient, newest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"SELECT {_ALERT_COLUMNS} FROM alerts a JOIN patients p ON p.pseudonym = a.patient "
            "WHERE a.patient = %s ORDER BY a.opened_at DESC",
            (patient,),
        )
        return cur.fetchall()


def alert_inbox(
    conn: psycopg.Connection,
    cohorts: list[str] | tuple[str, ...] | None,
    statuses: list[str] | tuple[str, ...] = ("open", "acknowledged"),
) -> list[dict[str, Any]]:
    """Alerts of the visible patients in the given statuses, most probable first."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"""
            SELECT {_ALERT_COLUMNS} FROM alerts a JOIN patients p ON p.pseudonym = a.patient
            WHERE a.status = ANY(%(statuses)s) AND (%(all)s OR p.cohort = ANY(%(cohorts)s))
            ORDER BY a.status = 'open' DESC, a.probability DESC, a.opened_at DESC
            """,
            {"statuses": list(statuses), **_scope(cohorts)},
        )
        return cur.fetchall()


def alert_history(conn: psycopg.Connection, patient: str) -> list[dict[str, Any]]:
    """Audit rows of the actions taken on a patient's alerts, in time order."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT at, actor, action, entity_id AS alert_id, detail FROM audit_log "
            "WHERE patient = %s AND entity = 'alert' ORDER BY at",
            (patient,),
        )
        return cur.fetchall()


def registered_models(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """model_registry rows, by name then newest first, with how many scores each produced."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            """
            SELECT m.name, m.version, m.sha256, m.path, m.training_data_hash, m.metrics, m.card,
                   m.created_at, m.promoted, m.promoted_at
            FROM model_registry m ORDER BY m.name, m.created_at DESC, m.version DESC
            """
        )
        return cur.fetchall()


# ----------------------------------------------------------------------------- writes


_TRANSITIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "acknowledge": (("open",), "acknowledged"),
    "resolve": (("open", "acknowledged"), "resolved"),
    "dismiss": (("open", "acknowledged"), "dismissed"),
}


class AlertActionRefusedError(ValueError):
    """An alert action the user may not take, or that does not apply; the message says why."""


def act_on_alert(
    conn: psycopg.Connection,
    alert_id: str,
    action: str,
    actor: str,
    note: str,
    cohorts: list[str] | tuple[str, ...] | None,
) -> str:
    """Acknowledge, resolve or dismiss an alert and write the audit row, in one transaction.

    Returns the new status. The actor's role is read from ``app_users`` here, whatever the page
    showed: only an active clinician or admin may act. Raises
    :class:`AlertActionRefusedError` when the role may not act, the alert is not visible to
    the user, the action does not apply to its current status, or a dismissal has no note; a
    refused attempt is audited too (entity ``alert_refusal``).
    """
    try:
        return _act_on_alert(conn, alert_id, action, actor, note, cohorts)
    except AlertActionRefusedError as err:
        with conn.transaction():
            conn.execute(
                "INSERT INTO audit_log (actor, action, entity, entity_id, detail) "
                "VALUES (%s, %s, 'alert_refusal', %s, %s)",
                (actor, str(action)[:64], str(alert_id)[:64], Jsonb({"why": str(err)})),
            )
        raise


def _act_on_alert(
    conn: psycopg.Connection,
    alert_id: str,
    action: str,
    actor: str,
    note: str,
    cohorts: list[str] | tuple[str, ...] | None,
) -> str:
    role = conn.execute(
        "SELECT role FROM app_users WHERE username = %s AND active", (actor,)
    ).fetchone()
    if role is None or role[0] not in ("clinician", "admin"):
        raise AlertActionRefusedError(
            f"{actor} may not act on alerts (role {role[0] if role else 'none'}); "
            "only clinicians and admins can"
        )
    if action not in _TRANSITIONS:
        raise AlertActionRefusedError(
            f"unknown action {action!r}; use one of {', '.join(_TRANSITIONS)}"
        )
    allowed_from, new_status = _TRANSITIONS[action]
    note = (note or "").strip()
    if action == "dismiss" and not note:
        raise AlertActionRefusedError("a dismissal needs a note saying why")
    with conn.transaction():
        row = conn.execute(
            "SELECT a.status, a.patient FROM alerts a JOIN patients p ON p.pseudonym = a.patient "
            "WHERE a.alert_id = %(id)s AND (%(all)s OR p.cohort = ANY(%(cohorts)s)) "
            "FOR UPDATE OF a",
            {"id": alert_id, **_scope(cohorts)},
        ).fetchone()
        if row is None:
            raise AlertActionRefusedError(
                f"alert {alert_id} does not exist or is outside your cohorts"
            )
        status, patient = row
        if status not in allowed_from:
            raise AlertActionRefusedError(f"cannot {action} an alert that is {status}")
        if action == "acknowledge":
            conn.execute(
                "UPDATE alerts SET status = 'acknowledged', acknowledged_by = %s, "
                "acknowledged_at = now(), updated_at = now() WHERE alert_id = %s",
                (actor, alert_id),
            )
        else:
            conn.execute(
                "UPDATE alerts SET status = %s, closed_by = %s, closed_at = now(), "
                "close_reason = %s, updated_at = now(), "
                "acknowledged_by = coalesce(acknowledged_by, %s), "
                "acknowledged_at = coalesce(acknowledged_at, now()) WHERE alert_id = %s",
                (new_status, actor, note or action, actor, alert_id),
            )
        conn.execute(
            "INSERT INTO audit_log (actor, action, entity, entity_id, patient, detail) "
            "VALUES (%s, %s, 'alert', %s, %s, %s)",
            (
                actor,
                action,
                str(alert_id),
                patient,
                Jsonb({"from": status, "to": new_status, "note": note}),
            ),
        )
    return new_status


# ----------------------------------------------------------------------------- users


def get_user(conn: psycopg.Connection, username: str) -> dict[str, Any] | None:
    """An active user with its cohorts, by user name."""
    return _user_where(conn, "u.username = %s", username)


def get_user_by_subject(conn: psycopg.Connection, subject: str) -> dict[str, Any] | None:
    """An active user with its cohorts, by the single sign-on subject (e-mail)."""
    return _user_where(conn, "u.oidc_subject = %s", subject)


def _user_where(conn: psycopg.Connection, where: str, value: str) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"""
            SELECT u.username, u.role, u.password_hash, u.oidc_subject,
                   coalesce(array_agg(c.cohort ORDER BY c.cohort)
                            FILTER (WHERE c.cohort IS NOT NULL), '{{}}') AS cohorts
            FROM app_users u LEFT JOIN app_user_cohorts c ON c.username = u.username
            WHERE {where} AND u.active
            GROUP BY u.username
            """,
            (value,),
        )
        return cur.fetchone()


def save_user(
    conn: psycopg.Connection,
    username: str,
    role: str,
    password_hash: str | None,
    cohorts: list[str],
    oidc_subject: str | None = None,
    actor: str = "cli",
) -> bool:
    """Create or update a user and replace its cohorts; audited. Returns True when created."""
    with conn.transaction():
        created = conn.execute(
            """
            INSERT INTO app_users (username, role, password_hash, oidc_subject)
            VALUES (%s, %s, %s, %s)
            ON CONFLICT (username) DO UPDATE SET
                role = EXCLUDED.role,
                password_hash = coalesce(EXCLUDED.password_hash, app_users.password_hash),
                oidc_subject = coalesce(EXCLUDED.oidc_subject, app_users.oidc_subject),
                active = true, updated_at = now()
            RETURNING (xmax = 0)
            """,
            (username, role, password_hash, oidc_subject),
        ).fetchone()[0]
        conn.execute("DELETE FROM app_user_cohorts WHERE username = %s", (username,))
        for cohort in sorted(set(cohorts)):
            conn.execute(
                "INSERT INTO app_user_cohorts (username, cohort) VALUES (%s, %s)",
                (username, cohort),
            )
        conn.execute(
            "INSERT INTO audit_log (actor, action, entity, entity_id, detail) "
            "VALUES (%s, %s, 'user', %s, %s)",
            (
                actor,
                "user_create" if created else "user_update",
                username,
                Jsonb({"role": role, "cohorts": sorted(set(cohorts))}),
            ),
        )
    return bool(created)


def record_login(
    conn: psycopg.Connection, username: str, method: str, success: bool, reason: str = ""
) -> None:
    """One audit row per login attempt (``login`` or ``login_failed``), committed now."""
    with conn.transaction():
        conn.execute(
            "INSERT INTO audit_log (actor, action, entity, entity_id, detail) "
            "VALUES (%s, %s, 'user', %s, %s)",
            (
                username,
                "login" if success else "login_failed",
                username,
                Jsonb({"method": method, **({"reason": reason} if reason else {})}),
            ),
        )
        if success:
            conn.execute(
                "UPDATE app_users SET last_login_at = now() WHERE username = %s", (username,)
            )


def record_logout(conn: psycopg.Connection, username: str) -> None:
    with conn.transaction():
        conn.execute(
            "INSERT INTO audit_log (actor, action, entity, entity_id) "
            "VALUES (%s, 'logout', 'user', %s)",
            (username, username),
        )
