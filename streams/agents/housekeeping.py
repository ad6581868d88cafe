"""prune_fetched_studies: delete local copies of DICOMweb studies that are no longer used.

Consumes: nothing (a timer every ``IRTMON_HOUSEKEEPING_INTERVAL_S``)
Produces: nothing
Side effects: removes ``<IRTMON_DERIVED_DIR>/dicomweb/<study>/<event>`` folders unused for
``IRTMON_DICOMWEB_RETENTION_DAYS`` (:mod:`streams.fetched`; a folder being read is skipped, and
a later follow-up fetches its baseline again from the PACS)
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust

from core.settings import Settings
from streams import fetched
from streams.context import WorkerContext

log = logging.getLogger("irtmon.housekeeping")


def prune_once(settings: Settings) -> int:
    """One pruning round; returns how many fetched studies were deleted."""
    retention_s = settings.dicomweb_retention_days * 86400.0
    return len(fetched.prune(settings.derived_dir.resolve(), retention_s))


def register(app: faust.App, topics: Any, ctx: WorkerContext) -> None:
    @app.timer(interval=ctx.settings.housekeeping_interval_s)
    async def prune_fetched_studies() -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(None, prune_once, ctx.settings)
        except Exception:  # housekeeping must never stop the worker
            log.exception("pruning fetched studies failed; trying again next round")
