"""detect_change_points: re-evaluate a patient's trajectory on each new score.

Consumes: ``scores.timepoint`` (TimepointScore)
Produces: ``alerts`` (Alert) on a new or changed flag
Side effects: upserts the score into ``timepoint_scores`` (idempotent: the scoring agents have
usually stored it already, but any producer of scores, such as a re-scoring job, may publish
here alone), then the patient's ``irecist_state`` scores (stored, not published, so they do
not come back here), ``alerts`` and ``audit_log`` rows

The decision rule (:mod:`models.changepoint`) runs in :func:`streams.alerting.evaluate`. A
malformed score is dead-lettered.
"""

from __future__ import annotations

import psycopg

from schemas import Alert, TimepointScore
from schemas.topics import SCORES_TIMEPOINT
from streams import alerting, sinks, topics
from streams.agents._loop import consume
from streams.app import app
from streams.context import worker_context


def store_and_evaluate(conn: psycopg.Connection, score: TimepointScore) -> list[Alert]:
    """One transaction: make sure the score is stored, then re-evaluate the patient."""
    sinks.upsert_score(conn, score)
    return alerting.evaluate(conn, score.patient)


async def process_score(score: TimepointScore) -> None:
    ctx = worker_context()
    new_alerts = await ctx.db.run(store_and_evaluate, score)
    for alert in new_alerts:
        await ctx.send(topics.alerts.get_topic_name(), alert.key, alert.to_json_bytes())


@app.agent(topics.scores_timepoint, name="detect_change_points")
async def detect_change_points(stream):
    await consume(stream, SCORES_TIMEPOINT, process_score)
