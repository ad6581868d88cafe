"""detect_change_points: re-evaluate a patient's trajectory on each new score.

Consumes: ``scores.timepoint`` (TimepointScore)
Produces: nothing directly: an alert opened or changed is written with its outbox row
(``audit_log``), and the delivery loop (:mod:`streams.agents.delivery`), asked for a round at
once, publishes it on ``alerts`` and sends it to the webhook and e-mail
Side effects: upserts the score into ``timepoint_scores`` (idempotent: the scoring agents have
usually stored it already, but any producer of scores, such as a re-scoring job, may publish
here alone), then the patient's ``irecist_state`` scores (stored, not published, so they do
not come back here), ``alerts`` and ``audit_log`` rows

The decision rule (:mod:`models.changepoint`) runs in :func:`core.alerts.evaluate`. A
malformed score is dead-lettered.
"""

from __future__ import annotations

from typing import Any

import faust
import psycopg

from core import alerts
from core.db import scores
from models.changepoint import DecisionConfig
from schemas import Alert, TimepointScore
from schemas.topics import SCORES_TIMEPOINT
from streams.agents._loop import consume
from streams.context import WorkerContext


def store_and_evaluate(
    conn: psycopg.Connection, score: TimepointScore, config: DecisionConfig
) -> list[Alert]:
    """One transaction: make sure the score is stored, then re-evaluate the patient."""
    scores.upsert_score(conn, score)
    return alerts.evaluate(conn, score.patient, config=config)


def register(app: faust.App, topics: Any, ctx: WorkerContext) -> None:
    async def process(score: TimepointScore) -> None:
        if await ctx.db.run(store_and_evaluate, score, ctx.decision):
            ctx.deliver_soon()

    @app.agent(topics.scores_timepoint, name="detect_change_points")
    async def detect_change_points(stream: Any) -> None:
        await consume(ctx, stream, SCORES_TIMEPOINT, process)
