"""score_biopsy: every biopsy's slides become a stored, published pathology signature.

Consumes: ``biopsy.acquired`` (BiopsyAcquired)
Produces: ``scores.timepoint`` (TimepointScore) after the database commit
Side effects: upserts ``acquisitions`` and ``timepoint_scores``
Dead-letters: invalid events, slide paths outside the data roots or missing, unreadable
slides, model failures.
"""

from __future__ import annotations

from core.settings import get_settings
from schemas import BiopsyAcquired
from schemas.topics import BIOPSY_ACQUIRED
from streams import scoring, sinks, topics
from streams.agents._loop import PatientLocks, consume
from streams.agents._scoring import score_and_publish
from streams.app import app
from streams.context import worker_context


async def process_biopsy(event: BiopsyAcquired) -> None:
    settings = worker_context().settings
    request = scoring.biopsy_request(event, settings.data_roots)  # paths first
    request.derived_dir = settings.derived_dir.resolve()
    await score_and_publish(
        event, request, sinks.upsert_biopsy, scoring.with_pathology_model, scoring.score_biopsy
    )


_LOCKS = PatientLocks()


@app.agent(
    topics.biopsy_acquired, name="score_biopsy", concurrency=get_settings().worker_concurrency
)
async def score_biopsy(stream):
    await consume(stream, BIOPSY_ACQUIRED, process_biopsy, _LOCKS)
