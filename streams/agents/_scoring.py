"""The steps the scoring agents share: store the event, score it off the event loop (unless it
was scored before: a redelivery), store the outcome in one transaction, publish the scores."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import psycopg

from schemas.events import Event
from streams import scoring, topics
from streams.context import cpu_pool, worker_context

R = TypeVar("R")


async def score_and_publish(
    event: Event,
    request: R,
    store_event: Callable[[psycopg.Connection, Any], None],
    add_context: Callable[[psycopg.Connection, R], R],
    score: Callable[[R], scoring.Outcome],
) -> None:
    """Run one acquisition or biopsy through the shared scoring steps."""
    ctx = worker_context()
    await ctx.db.run(store_event, event)
    scores = await ctx.db.run(scoring.stored_scores, event.event_id)
    if scores is None:  # first delivery: score it (a redelivery publishes what is stored)
        request = await ctx.db.run(add_context, request)
        outcome = await cpu_pool().run(score, request)
        await ctx.db.run(scoring.store_outcome, outcome)
        scores = outcome.scores
    for s in scores:
        await ctx.send(topics.scores_timepoint.get_topic_name(), s.key, s.to_json_bytes())
