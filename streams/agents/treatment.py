"""record_treatment: keep the treatment timeline (RT course, fractions, immunotherapy doses).

Consumes: ``treatment.events`` (TreatmentEvent)
Produces: nothing
Side effects: upserts ``treatment_events`` (and ``patients``) by event id.
"""

from __future__ import annotations

from schemas import TreatmentEvent
from schemas.topics import TREATMENT_EVENTS
from streams import sinks, topics
from streams.agents._loop import consume
from streams.app import app
from streams.context import worker_context


async def process_treatment(event: TreatmentEvent) -> None:
    await worker_context().db.run(sinks.upsert_treatment, event)


@app.agent(topics.treatment_events, name="record_treatment")
async def record_treatment(stream):
    await consume(stream, TREATMENT_EVENTS, process_treatment)
