"""score_biopsy: every biopsy's slides become a stored, published pathology signature.

Consumes: ``biopsy.acquired`` (BiopsyAcquired)
Produces: ``scores.timepoint`` (TimepointScore) after the database commit
Side effects: upserts ``acquisitions`` and ``timepoint_scores``
Dead-letters: invalid events, slide paths outside the data roots or missing, unreadable
slides, model failures.
"""

from __future__ import annotations

from typing import Any

import faust

from core.db import events
from schemas import BiopsyAcquired
from schemas.topics import BIOPSY_ACQUIRED
from streams import scoring
from streams.agents._loop import PatientLocks, consume
from streams.agents._scoring import score_and_publish
from streams.context import WorkerContext


async def process_biopsy(ctx: WorkerContext, event: BiopsyAcquired) -> None:
    request = scoring.biopsy_request(event, ctx.settings.data_roots)  # paths first
    request.derived_dir = ctx.settings.derived_dir.resolve()
    request.limits = ctx.settings.limits()
    await score_and_publish(
        ctx,
        event,
        request,
        events.upsert_biopsy,
        scoring.with_pathology_model,
        scoring.score_biopsy,
    )


def register(app: faust.App, topics: Any, ctx: WorkerContext) -> None:
    locks = PatientLocks()

    async def process(event: BiopsyAcquired) -> None:
        await process_biopsy(ctx, event)

    @app.agent(
        topics.biopsy_acquired, name="score_biopsy", concurrency=ctx.settings.worker_concurrency
    )
    async def score_biopsy(stream: Any) -> None:
        await consume(ctx, stream, BIOPSY_ACQUIRED, process, locks)
