"""Connections to the configured database (psycopg 3)."""

from __future__ import annotations

import psycopg

from core.settings import Settings


def connect(settings: Settings, autocommit: bool = False, **kwargs: object) -> psycopg.Connection:
    """Open a connection to ``settings.dsn`` with a clear error when the server is not there."""
    try:
        return psycopg.connect(
            settings.dsn,
            autocommit=autocommit,
            connect_timeout=10,
            application_name="irtmon",
            **kwargs,
        )
    except psycopg.OperationalError as err:
        hint = (
            "start the local stack with `irtmon stack up`"
            if settings.local_postgres
            else "check IRTMON_DATABASE_URL"
        )
        raise psycopg.OperationalError(f"cannot reach the database ({hint}): {err}") from err
