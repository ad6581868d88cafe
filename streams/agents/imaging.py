"""score_acquisition: every CT or PCCT acquisition becomes stored, published scores.

Consumes: ``imaging.acquired`` (ImagingAcquired)
Produces: ``scores.timepoint`` (TimepointScore), one per score, after the database commit: the
primary lesion's volume and longest diameter, the sums derived from every tracked lesion (target
sum of diameters, in-field, out-of-field), the new-lesion count, the iRECIST state of a
follow-up, and the virtual biopsy and response probability when models are promoted
Side effects: upserts ``acquisitions``, ``lesion_measurements`` (one row per tracked lesion),
``lesion_assessments`` (RECIST 1.1 / iRECIST and the tracking state), ``tumour_measurements``
(the primary lesion), ``timepoint_scores`` and ``acquisition_features`` (whose provenance names
every lesion that could not be read); writes the lesion SEG and TID 1500 SR under the derived
folder; a DICOMweb acquisition is fetched (WADO-RS) into the derived folder and, with
``IRTMON_PACS_WRITE_BACK``, its SEG and SR are stored back (STOW-RS), their UIDs kept in
``acquisition_features.provenance``
Dead-letters: invalid events, paths outside the data roots or missing, a DICOMweb location that
is not a configured PACS (never fetched from nor written to), unreadable or non-CT series, a
study where no lesion can be measured (each segment or ROI named with its problem), a follow-up
without annotation and no baseline, model failures.

The science (reading the series, every lesion, tracking, RECIST/iRECIST, features, virtual
biopsy, response) runs in :func:`streams.scoring.score_imaging`, in the worker's CPU process
pool, off the event loop.
"""

from __future__ import annotations

from typing import Any

import faust

from core.db import events
from schemas import ImagingAcquired
from schemas.topics import IMAGING_ACQUIRED
from streams import scoring
from streams.agents._loop import PatientLocks, consume
from streams.agents._scoring import score_and_publish
from streams.context import WorkerContext


async def process_imaging(ctx: WorkerContext, event: ImagingAcquired) -> None:
    settings = ctx.settings
    request = scoring.imaging_request(  # paths and the DICOMweb server first
        event,
        settings.data_roots,
        derived_dir=settings.derived_dir.resolve(),
        write_back=settings.pacs_write_back,
        dicomweb_allowed=settings.dicomweb_allowed,
        dicomweb_headers=settings.pacs_headers(),
        deformable=settings.deformable_registration,
        radiomics=settings.radiomics,
    )
    await score_and_publish(
        ctx, event, request, events.upsert_imaging, scoring.with_history, scoring.score_imaging
    )


def register(app: faust.App, topics: Any, ctx: WorkerContext) -> None:
    locks = PatientLocks()

    async def process(event: ImagingAcquired) -> None:
        await process_imaging(ctx, event)

    @app.agent(
        topics.imaging_acquired,
        name="score_acquisition",
        concurrency=ctx.settings.worker_concurrency,
    )
    async def score_acquisition(stream: Any) -> None:
        await consume(ctx, stream, IMAGING_ACQUIRED, process, locks)
