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

from core.settings import Settings, get_settings
from streams import fetched
from streams.app import app

log = logging.getLogger("irtmon.housekeeping")


def prune_once(settings: Settings) -> int:
    """One pruning round; returns how many fetched studies were deleted."""
    retention_s = settings.dicomweb_retention_days * 86400.0
    return len(fetched.prune(settings.derived_dir.resolve(), retention_s))


@app.timer(interval=get_settings().housekeeping_interval_s)
async def prune_fetched_studies() -> None:
    try:
        await asyncio.get_running_loop().run_in_executor(None, prune_once, get_settings())
    except Exception:  # housekeeping must never stop the worker
        log.exception("pruning fetched studies failed; trying again next round")
