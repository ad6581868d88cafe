"""score_acquisition: every CT or PCCT acquisition becomes stored, published scores.

Consumes: ``imaging.acquired`` (ImagingAcquired)
Produces: ``scores.timepoint`` (TimepointScore), one per score, after the database commit
Side effects: upserts ``acquisitions``, ``tumour_measurements`` and ``timepoint_scores``
Dead-letters: invalid events, paths outside the data roots or missing, unreadable or non-CT
series, model failures.

The science (reading the series, lesion, burden, features, virtual biopsy, response) runs in
:func:`streams.scoring.score_imaging`, in the worker's CPU process pool, off the event loop.
"""

from __future__ import annotations

import asyncio

from schemas import ImagingAcquired
from schemas.topics import IMAGING_ACQUIRED
from streams import scoring, sinks, topics
from streams.agents._loop import consume
from streams.app import app
from streams.context import cpu_pool, worker_context


async def process_imaging(event: ImagingAcquired) -> None:
    ctx = worker_context()
    request = scoring.imaging_request(event, ctx.settings.data_roots)  # checks paths first
    await ctx.db.run(sinks.upsert_imaging, event)
    already = await ctx.db.run(scoring.stored_scores, event.event_id)
    if already is not None:  # a redelivery: publish what is stored, do not score again
        for score in already:
            await ctx.send(
                topics.scores_timepoint.get_topic_name(), score.key, score.to_json_bytes()
            )
        return
    request = await ctx.db.run(scoring.with_history, request)
    loop = asyncio.get_running_loop()
    outcome = await loop.run_in_executor(cpu_pool(), scoring.score_imaging, request)
    await ctx.db.run(scoring.store_outcome, outcome)
    for score in outcome.scores:
        await ctx.send(topics.scores_timepoint.get_topic_name(), score.key, score.to_json_bytes())


@app.agent(topics.imaging_acquired, name="score_acquisition")
async def score_acquisition(stream):
    await consume(stream, IMAGING_ACQUIRED, process_imaging)
