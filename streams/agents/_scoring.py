"""The steps the scoring agents share: store the event, score it off the event loop (unless it
was scored before: a redelivery), store the outcome in one transaction, publish the scores."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import psycopg

from schemas.events import Event
from schemas.results import Outcome
from schemas.topics import SCORES_TIMEPOINT
from streams import scoring
from streams.context import WorkerContext

R = TypeVar("R")


async def score_and_publish(
    ctx: WorkerContext,
    event: Event,
    request: R,
    store_event: Callable[[psycopg.Connection, Any], None],
    add_context: Callable[[psycopg.Connection, R], R],
    score: Callable[[R], Outcome],
) -> None:
    """Run one acquisition or biopsy through the shared scoring steps."""
    assert ctx.pool is not None
    await ctx.db.run(store_event, event)
    scores = await ctx.db.run(scoring.stored_scores, event.event_id)
    if scores is None:  # first delivery: score it (a redelivery publishes what is stored)
        request = await ctx.db.run(add_context, request)
        outcome = await ctx.pool.run(score, request)
        await ctx.db.run(scoring.store_outcome, outcome)
        scores = outcome.scores
    for s in scores:
        await ctx.send(SCORES_TIMEPOINT.name, s.key, s.to_json_bytes())
