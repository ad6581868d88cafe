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


def record_login(
    conn: psycopg.Connection, username: str, method: str, success: bool, reason: str = ""
) -> None:
    """One audit row per login attempt (``login`` or ``login_failed``)."""
    audit.write(
        conn,
        actor=username,
        action="login" if success else "login_failed",
        entity="user",
        entity_id=username,
        detail={"method": method, **({"reason": reason} if reason else {})},
    )
    if success:
        conn.execute("UPDATE app_users SET last_login_at = now() WHERE username = %s", (username,))


def record_logout(conn: psycopg.Connection, username: str) -> None:
    audit.write(conn, actor=username, action="logout", entity="user", entity_id=username)
