"""TimescaleDB's policy jobs (compression, the continuous aggregate's refresh), and a safety net
for a server whose background scheduler cannot run them.

On Debian's PostgreSQL 15.20 with TimescaleDB 2.28.3 every background job fails (``cannot drop
portal "" while it is being set up``) while the same job run from a session succeeds. So a worker
runs, from its own session, irtmon's policy jobs that the server has not run on time
(:func:`overdue_jobs`, :func:`run_job`); on a healthy server none is ever overdue and this does
nothing. Functions take an open connection and never commit; :func:`run_job` needs an
autocommit connection (the job manages its own transactions).
"""

from __future__ import annotations

from datetime import timedelta

import psycopg

POLICIES = ("policy_compression", "policy_refresh_continuous_aggregate")
"""The TimescaleDB procedures of the policies irtmon's migrations create."""


def has_timescaledb(conn: psycopg.Connection) -> bool:
    """True when the TimescaleDB extension is created in this database."""
    row = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    return row is not None


def overdue_jobs(conn: psycopg.Connection) -> list[tuple[int, str, timedelta]]:
    """(job id, procedure, schedule interval) of the scheduled policy jobs whose last background
    run failed, or that the server has not started for more than one interval past when they were
    due. (A job run from a session by :func:`run_job` leaves the server's statistics as they
    were: the caller remembers what it ran.)"""
    if not has_timescaledb(conn):
        return []
    rows = conn.execute(
        """
        SELECT j.job_id, j.proc_name, j.schedule_interval
        FROM timescaledb_information.jobs j
        LEFT JOIN timescaledb_information.job_stats s ON s.job_id = j.job_id
        WHERE j.scheduled AND j.proc_name = ANY(%s)
          AND coalesce(s.job_status, '') <> 'Running'
          AND (s.last_run_status = 'Failed'
               OR coalesce(s.next_start, '-infinity') < now() - j.schedule_interval)
        ORDER BY j.job_id
        """,
        (list(POLICIES),),
    ).fetchall()
    return [(int(job_id), str(proc), interval) for job_id, proc, interval in rows]


def run_job(conn: psycopg.Connection, job_id: int) -> None:
    """Run one job now, in this session (``conn`` must be in autocommit mode)."""
    if not conn.autocommit:
        raise ValueError("run_job needs an autocommit connection (the job commits itself)")
    conn.execute("CALL run_job(%s)", (job_id,))
