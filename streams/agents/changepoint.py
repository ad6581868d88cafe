"""detect_change_points: re-evaluate a patient's trajectory on each new score.

Consumes: ``scores.timepoint`` (TimepointScore)
Produces: ``alerts`` (Alert) on a new or changed flag
Side effects: ``alerts`` and ``audit_log`` rows

The detectors and the decision rule belong to the change-point issue; until they land,
:func:`streams.alerting.evaluate` is the seam this agent calls, and it raises no alert.
Scores are validated here all the same, so a malformed score is dead-lettered.
"""

from __future__ import annotations

from schemas import TimepointScore
from schemas.topics import SCORES_TIMEPOINT
from streams import alerting, topics
from streams.agents._loop import consume
from streams.app import app
from streams.context import worker_context


async def process_score(score: TimepointScore) -> None:
    ctx = worker_context()
    new_alerts = await ctx.db.run(alerting.evaluate, score.patient)
    for alert in new_alerts:
        await ctx.send(topics.alerts.get_topic_name(), alert.key, alert.to_json_bytes())


@app.agent(topics.scores_timepoint, name="detect_change_points")
async def detect_change_points(stream):
    await consume(stream, SCORES_TIMEPOINT, process_score)
