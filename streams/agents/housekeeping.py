"""Housekeeping timers, every ``IRTMON_HOUSEKEEPING_INTERVAL_S``.

prune_fetched_studies
    Consumes nothing, produces nothing. Removes ``<IRTMON_DERIVED_DIR>/dicomweb/<study>/<event>``
    folders unused for ``IRTMON_DICOMWEB_RETENTION_DAYS`` (:mod:`streams.fetched`; a folder
    being read is skipped, and a later follow-up fetches its baseline again from the PACS).
run_overdue_policies
    Consumes nothing, produces nothing. Runs, from the worker's own session, TimescaleDB policy
    jobs (compression, the continuous aggregate's refresh) that the server's background
    scheduler has not run on time (:mod:`core.db.timescale`); on a healthy server there are none.
erase_dead_letter_payloads
    Consumes nothing, produces nothing. Erases the original bytes of dead letters older than
    ``IRTMON_DEADLETTER_PAYLOAD_RETENTION_DAYS`` from ``dead_letters`` (the reason and the
    metadata stay; :func:`core.dead_letters.erase_expired`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import faust
import psycopg

from core import dead_letters
from core.db import connect, timescale
from core.settings import Settings
from streams import fetched
from streams.context import WorkerContext

log = logging.getLogger("irtmon.housekeeping")


def prune_once(settings: Settings) -> int:
    """One pruning round; returns how many fetched studies were deleted."""
    retention_s = settings.dicomweb_retention_days * 86400.0
    return len(fetched.prune(settings.derived_dir.resolve(), retention_s))


def run_overdue_policies(settings: Settings, ran_at: dict[int, float]) -> list[int]:
    """Run irtmon's overdue TimescaleDB policy jobs, each at most once per its schedule interval
    (``ran_at``: job id -> when this worker last ran it, monotonic seconds); their ids."""
    ran = []
    with connect(settings, autocommit=True) as conn:
        for job_id, proc, interval in timescale.overdue_jobs(conn):
            last = ran_at.get(job_id)
            if last is not None and time.monotonic() - last < interval.total_seconds():
                continue
            try:
                timescale.run_job(conn, job_id)
            except psycopg.Error as err:  # one failing job must not keep the others from running
                log.warning(
                    "TimescaleDB job failed when run by the worker",
                    extra={"job_id": job_id, "proc": proc, "reason": str(err)[:300]},
                )
                continue
            ran_at[job_id] = time.monotonic()
            log.info("ran an overdue TimescaleDB job", extra={"job_id": job_id, "proc": proc})
            ran.append(job_id)
    return ran


def erase_payloads_once(settings: Settings) -> int:
    """One round of dead-letter payload retention; how many payloads were erased."""
    with connect(settings) as conn:
        erased = dead_letters.erase_expired(conn, settings)
        conn.commit()
    if erased:
        log.info("dead-letter payloads erased after their retention", extra={"count": erased})
    return erased


def register(app: faust.App, topics: Any, ctx: WorkerContext) -> None:
    @app.timer(interval=ctx.settings.housekeeping_interval_s)
    async def prune_fetched_studies() -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(None, prune_once, ctx.settings)
        except Exception:  # housekeeping must never stop the worker
            log.exception("pruning fetched studies failed; trying again next round")

    ran_at: dict[int, float] = {}

    @app.timer(interval=ctx.settings.housekeeping_interval_s)
    async def run_policies() -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(
                None, run_overdue_policies, ctx.settings, ran_at
            )
        except Exception:  # housekeeping must never stop the worker
            log.exception("running overdue TimescaleDB jobs failed; trying again next round")

    @app.timer(interval=ctx.settings.housekeeping_interval_s)
    async def erase_dead_letter_payloads() -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(
                None, erase_payloads_once, ctx.settings
            )
        except Exception:  # housekeeping must never stop the worker
            log.exception("erasing expired dead-letter payloads failed; trying again next round")
