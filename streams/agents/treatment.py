"""record_treatment: keep the treatment timeline (RT course, fractions, immunotherapy doses).

Consumes: ``treatment.events`` (TreatmentEvent), in batches (``IRTMON_WORKER_BATCH_MAX``)
Produces: nothing
Side effects: upserts ``treatment_events`` (and ``patients``) by event id, one transaction
per batch
Dead-letters: invalid events, each on its own; the rest of its batch is stored.
"""

from __future__ import annotations

from typing import Any

import faust

from core.db import events
from schemas import TreatmentEvent
from schemas.topics import TREATMENT_EVENTS
from streams.agents._loop import consume_batches
from streams.context import WorkerContext


def register(app: faust.App, topics: Any, ctx: WorkerContext) -> None:
    async def store(batch: list[TreatmentEvent]) -> None:
        await ctx.db.run(events.upsert_treatments, batch)

    async def process(event: TreatmentEvent) -> None:
        await ctx.db.run(events.upsert_treatment, event)

    @app.agent(topics.treatment_events, name="record_treatment")
    async def record_treatment(stream: Any) -> None:
        await consume_batches(ctx, stream, TREATMENT_EVENTS, store, process)
