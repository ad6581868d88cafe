"""score_biopsy: every biopsy's slides become a stored, published pathology signature.

Consumes: ``biopsy.acquired`` (BiopsyAcquired)
Produces: ``scores.timepoint`` (TimepointScore) after the database commit
Side effects: upserts ``acquisitions`` and ``timepoint_scores``
Dead-letters: invalid events, slide paths outside the data roots or missing, unreadable
slides, model failures.
"""

from __future__ import annotations

import asyncio

from schemas import BiopsyAcquired
from schemas.topics import BIOPSY_ACQUIRED
from streams import scoring, sinks, topics
from streams.agents._loop import consume
from streams.app import app
from streams.context import cpu_pool, worker_context


async def process_biopsy(event: BiopsyAcquired) -> None:
    ctx = worker_context()
    request = scoring.biopsy_request(event, ctx.settings.data_roots)  # checks paths first
    request.derived_dir = ctx.settings.derived_dir.resolve()
    await ctx.db.run(sinks.upsert_biopsy, event)
    already = await ctx.db.run(scoring.stored_scores, event.event_id)
    if already is not None:  # a redelivery: publish what is stored, do not score again
        for score in already:
            await ctx.send(
                topics.scores_timepoint.get_topic_name(), score.key, score.to_json_bytes()
            )
        return
    request = await ctx.db.run(scoring.with_pathology_model, request)
    loop = asyncio.get_running_loop()
    outcome = await loop.run_in_executor(cpu_pool(), scoring.score_biopsy, request)
    await ctx.db.run(scoring.store_outcome, outcome)
    for score in outcome.scores:
        await ctx.send(topics.scores_timepoint.get_topic_name(), score.key, score.to_json_bytes())


@app.agent(topics.biopsy_acquired, name="score_biopsy")
async def score_biopsy(stream):
    await consume(stream, BIOPSY_ACQUIRED, process_biopsy)
