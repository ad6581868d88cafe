"""Connections to the configured database (psycopg 3)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import psycopg

from core.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

ROLLED_BACK = "40"
"""SQLSTATE class 40, transaction rollback: the server undid the transaction (a deadlock, a
serialization failure), and running it again is the remedy."""


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


def committed(
    conn: psycopg.Connection,
    work: Callable[[], T],
    *,
    attempts: int = 5,
    backoff_s: float = 0.5,
) -> T:
    """Run ``work`` (which writes through ``conn``), commit, and return what it returned.

    A transaction the server rolls back for its own reasons (SQLSTATE class 40: a deadlock, a
    serialization failure; psycopg gives them no common base class) is rolled
    back and run again, up to ``attempts`` times with a growing pause. On TimescaleDB this is
    expected, not a fault: the compression policy takes an exclusive lock on a chunk at the end
    of compressing it, and a long transaction writing into that chunk's time range can deadlock
    with it (timescale/timescaledb#3846, #4605). ``work`` must be safe to run again from the
    start (irtmon's writes are idempotent upserts) and must not commit itself.
    """
    for attempt in range(1, attempts + 1):
        try:
            result = work()
            conn.commit()
            return result
        except psycopg.Error as err:
            if not (err.sqlstate or "").startswith(ROLLED_BACK):
                raise
            conn.rollback()
            if attempt == attempts:
                raise
            log.warning(
                "the database rolled the transaction back (%s: %s); running it again (%d of %d)",
                type(err).__name__,
                str(err).splitlines()[0],
                attempt + 1,
                attempts,
            )
            time.sleep(backoff_s * attempt)
    raise AssertionError("unreachable")  # pragma: no cover
