"""detect_change_points: re-evaluate a patient's trajectory on new scores.

Consumes: ``scores.timepoint`` (TimepointScore), in batches (``IRTMON_WORKER_BATCH_MAX``)
Produces: nothing directly: an alert opened or changed is written with its outbox row
(``audit_log``), and the delivery loop (:mod:`streams.agents.delivery`), asked for a round at
once, publishes it on ``alerts`` and sends it to the webhook and e-mail
Side effects: upserts the score into ``timepoint_scores`` (idempotent: the scoring agents have
usually stored it already, but any producer of scores, such as a re-scoring job, may publish
here alone), then the patient's ``irecist_state`` scores (stored, not published, so they do
not come back here), ``alerts`` and ``audit_log`` rows

A batch is one transaction: every score of the batch is stored, then each patient of the
batch is evaluated once, on all its scores. The decision rule (:mod:`models.changepoint`) runs
in :func:`core.alerts.evaluate`. A malformed score is dead-lettered on its own; if the batch
fails, its scores are taken one at a time (store, evaluate), so a bad one is isolated.
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
from streams.agents._loop import consume_batches
from streams.context import WorkerContext


def store_and_evaluate(
    conn: psycopg.Connection, score: TimepointScore, config: DecisionConfig
) -> list[Alert]:
    """One transaction: make sure the score is stored, then re-evaluate the patient."""
    scores.upsert_score(conn, score)
    return alerts.evaluate(conn, score.patient, config=config)


def store_and_evaluate_batch(
    conn: psycopg.Connection, batch: list[TimepointScore], config: DecisionConfig
) -> list[Alert]:
    """One transaction: store every score of ``batch`` (in order), then re-evaluate each of
    its patients once, in the order they first appear."""
    scores.upsert_scores(conn, batch)
    patients = list(dict.fromkeys(s.patient for s in batch))
    return alerts.evaluate_patients(conn, patients, config=config)


def register(app: faust.App, topics: Any, ctx: WorkerContext) -> None:
    async def store(batch: list[TimepointScore]) -> None:
        if await ctx.db.run(store_and_evaluate_batch, batch, ctx.decision):
            ctx.deliver_soon()

    async def process(score: TimepointScore) -> None:
        if await ctx.db.run(store_and_evaluate, score, ctx.decision):
            ctx.deliver_soon()

    @app.agent(topics.scores_timepoint, name="detect_change_points")
    async def detect_change_points(stream: Any) -> None:
        await consume_batches(ctx, stream, SCORES_TIMEPOINT, store, process)
