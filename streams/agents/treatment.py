"""record_treatment: keep the treatment timeline (RT course, fractions, immunotherapy doses).

Consumes: ``treatment.events`` (TreatmentEvent)
Produces: nothing
Side effects: upserts ``treatment_events`` (and ``patients``) by event id.
"""

from __future__ import annotations

from typing import Any

import faust

from core.db import events
from schemas import TreatmentEvent
from schemas.topics import TREATMENT_EVENTS
from streams.agents._loop import consume
from streams.context import WorkerContext


def register(app: faust.App, topics: Any, ctx: WorkerContext) -> None:
    async def process(event: TreatmentEvent) -> None:
        await ctx.db.run(events.upsert_treatment, event)

    @app.agent(topics.treatment_events, name="record_treatment")
    async def record_treatment(stream: Any) -> None:
        await consume(ctx, stream, TREATMENT_EVENTS, process)
