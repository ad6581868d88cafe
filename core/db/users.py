"""The app's accounts: ``app_users`` and ``app_user_cohorts``, and their audit rows.

Functions take an open connection and never commit (the caller owns the transaction).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

from core.db import audit


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


def active_role(conn: psycopg.Connection, username: str) -> str | None:
    """The role of an active user, or None (unknown or deactivated)."""
    row = conn.execute(
        "SELECT role FROM app_users WHERE username = %s AND active", (username,)
    ).fetchone()
    return None if row is None else str(row[0])


def user_exists(conn: psycopg.Connection, username: str) -> bool:
    """True when an account of that name exists (active or not)."""
    row = conn.execute("SELECT 1 FROM app_users WHERE username = %s", (username,)).fetchone()
    return row is not None


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
            "INSERT INTO app_user_cohorts (username, cohort) VALUES (%s, %s)", (username, cohort)
        )
    audit.write(
        conn,
        actor=actor,
        action="user_create" if created else "user_update",
        entity="user",
        entity_id=username,
        detail={"role": role, "cohorts": sorted(set(cohorts))},
    )
    return bool(created)


def set_active(conn: psycopg.Connection, username: str, active: bool, actor: str = "cli") -> bool:
    """Disable (``active=False``) or enable a user; audited (``user_disable`` /
    ``user_enable``). Returns False when no account has that name (nothing written).

    A disabled user keeps its row, cohorts and audit history; the app re-reads the active flag
    on every script run, so an open session ends at its next interaction.
    """
    row = conn.execute(
        "SELECT active FROM app_users WHERE username = %s FOR UPDATE", (username,)
    ).fetchone()
    if row is None:
        return False
    conn.execute(
        "UPDATE app_users SET active = %s, updated_at = now() WHERE username = %s",
        (active, username),
    )
    audit.write(
        conn,
        actor=actor,
        action="user_enable" if active else "user_disable",
        entity="user",
        entity_id=username,
        detail={"was_active": bool(row[0])},
    )
    return True


LOGIN_FAILED = "login_failed"
LOGIN_THROTTLED = "login_throttled"


def record_login(
    conn: psycopg.Connection,
    username: str,
    method: str,
    success: bool,
    reason: str = "",
    address: str | None = None,
) -> None:
    """One audit row per login attempt (``login`` or ``login_failed``), with the client's
    address when known (the throttle counts failures per user and per address from these)."""
    audit.write(
        conn,
        actor=username,
        action="login" if success else LOGIN_FAILED,
        entity="user",
        entity_id=username,
        detail={
            "method": method,
            **({"reason": reason} if reason else {}),
            **({"address": address} if address else {}),
        },
    )
    if success:
        conn.execute("UPDATE app_users SET last_login_at = now() WHERE username = %s", (username,))


def record_throttled(
    conn: psycopg.Connection, username: str, address: str | None, reason: str, retry_after_s: float
) -> None:
    """Audit a sign-in refused by the throttle (``login_throttled``; not counted as a
    failure, so waiting out the back-off is enough)."""
    audit.write(
        conn,
        actor=username,
        action=LOGIN_THROTTLED,
        entity="user",
        entity_id=username,
        detail={
            "method": "local",
            "reason": reason,
            "retry_after_s": round(retry_after_s, 1),
            **({"address": address} if address else {}),
        },
    )


def recent_failures(
    conn: psycopg.Connection,
    *,
    window_s: float,
    username: str | None = None,
    address: str | None = None,
) -> tuple[int, float | None]:
    """(failed sign-ins, seconds since the last one) within ``window_s`` seconds, of one user
    name (since its last successful sign-in) or of one client address.

    Pass exactly one of ``username`` and ``address``. Times are the database's clock.
    """
    if (username is None) == (address is None):
        raise ValueError("pass exactly one of username and address")
    if username is not None:
        where = (
            "entity_id = %(key)s AND at > coalesce((SELECT max(at) FROM audit_log "
            "WHERE entity = 'user' AND entity_id = %(key)s AND action = 'login'), '-infinity')"
        )
    else:
        where = "detail->>'address' = %(key)s"
    row = conn.execute(
        f"""
        SELECT count(*), extract(epoch FROM now() - max(at))::float8 FROM audit_log
        WHERE entity = 'user' AND action = %(failed)s
          AND at > now() - make_interval(secs => %(window)s) AND {where}
        """,
        {
            "key": username if username is not None else address,
            "failed": LOGIN_FAILED,
            "window": window_s,
        },
    ).fetchone()
    return int(row[0]), (None if row[1] is None else float(row[1]))


def record_logout(conn: psycopg.Connection, username: str, reason: str = "") -> None:
    """Audit a sign-out (``reason``: empty when the user chose it, else why the app ended
    the session: idle, account disabled)."""
    audit.write(
        conn,
        actor=username,
        action="logout",
        entity="user",
        entity_id=username,
        detail={"reason": reason} if reason else None,
    )
