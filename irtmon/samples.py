"""A few valid sample events for two demo patients, until the virtual clinic takes over.

Pseudonyms are made with a fixed demo key, used only for these samples.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from schemas import (
    BiopsyAcquired,
    FolderLocation,
    ImagingAcquired,
    ImagingPurpose,
    ImmunotherapyDose,
    LabValues,
    Modality,
    RtCourseStart,
    RtFraction,
    SlideLocation,
    TimepointScore,
    TreatmentEvent,
    pseudonymise,
)
from schemas.events import Record

DEMO_KEY = "irtmon-demo-key-not-for-real-patients"
_NS = uuid.UUID("0b8a2c9e-7d7f-4a51-8f0e-5d7e2b6f4a10")


def _id(*parts: object) -> uuid.UUID:
    return uuid.uuid5(_NS, "/".join(str(p) for p in parts))


def sample_events(start: datetime | None = None) -> list[Record]:
    """Deterministic, schema-valid events: treatment, CT, PCCT, biopsy and scores."""
    t0 = start or datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    events: list[Record] = []
    for n, clear_id in enumerate(["DEMO-0001", "DEMO-0002"]):
        p = pseudonymise(clear_id, DEMO_KEY)
        study = f"1.2.826.0.1.3680043.10.1407.{n + 1}"
        ct = ImagingAcquired(
            event_id=_id(p, "ct0"),
            patient=p,
            occurred_at=t0,
            modality=Modality.CT,
            study_uid=study,
            series_uids=[f"{study}.1"],
            location=FolderLocation(path=f"samples/{p}/ct0"),
            purpose=ImagingPurpose.PLANNING,
        )
        events.append(ct)
        events.append(
            TreatmentEvent(
                event_id=_id(p, "rt"),
                patient=p,
                occurred_at=t0 + timedelta(days=7),
                treatment=RtCourseStart(
                    course_id="C1", prescribed_dose_gy=60, fractions_planned=30
                ),
            )
        )
        events.append(
            TreatmentEvent(
                event_id=_id(p, "fx1"),
                patient=p,
                occurred_at=t0 + timedelta(days=7, hours=1),
                treatment=RtFraction(course_id="C1", fraction_number=1, dose_gy=2.0),
            )
        )
        events.append(
            TreatmentEvent(
                event_id=_id(p, "ici1"),
                patient=p,
                occurred_at=t0 + timedelta(days=8),
                treatment=ImmunotherapyDose(agent="durvalumab", cycle=1, dose_mg=1500),
            )
        )
        events.append(
            BiopsyAcquired(
                event_id=_id(p, "bx0"),
                patient=p,
                occurred_at=t0 - timedelta(days=10),
                specimen_id=f"S-{n + 1}",
                lab=LabValues(pd_l1_tps=40.0 if n == 0 else 5.0),
                slides=[SlideLocation(slide_id=f"S-{n + 1}-A", path=f"samples/{p}/bx0/A.tiff")],
            )
        )
        fu = ImagingAcquired(
            event_id=_id(p, "ct1"),
            patient=p,
            occurred_at=t0 + timedelta(weeks=8),
            modality=Modality.PCCT,
            study_uid=f"{study}.9",
            series_uids=[f"{study}.9.1"],
            location=FolderLocation(path=f"samples/{p}/ct1"),
            purpose=ImagingPurpose.FOLLOW_UP,
        )
        events.append(fu)
        for acq, volume in ((ct, 30.0), (fu, 24.0 if n == 0 else 41.0)):
            events.append(
                TimepointScore.for_source(
                    source_event_id=acq.event_id,
                    patient=p,
                    occurred_at=acq.occurred_at,
                    score_name="tumour_volume_ml",
                    value=volume,
                    unit="ml",
                    model_name="sample",
                    model_version="0",
                    inputs=acq.series_uids,
                )
            )
    return events
