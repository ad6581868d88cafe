"""What the two seeders share (:mod:`irtmon.seed` for story v1, :mod:`irtmon.seed_lesions` for
story v2): a patient's event stream stored, a seeded score built one way, and the seeded
pathology immune signature of each biopsy (drawn from its true TIL density)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import psycopg

from core.db import events
from schemas.events import BiopsyAcquired, Event, ImagingAcquired, TimepointScore, TreatmentEvent

PATHOLOGY_SCORE = "pathology_immune_signature"
SEED_PATHOLOGY = ("seed-pathology", "0.1")

Stream = tuple[list[TreatmentEvent], list[ImagingAcquired], list[BiopsyAcquired]]


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def seeded_score(
    source: Event, name: str, value: float, model: tuple[str, str], **kw: object
) -> TimepointScore:
    """A score of ``source`` (its event id, patient and time) by ``model`` (name, version)."""
    return TimepointScore.for_source(
        source_event_id=source.event_id,
        patient=source.patient,  # type: ignore[attr-defined]
        occurred_at=source.occurred_at,
        score_name=name,
        value=value,
        model_name=model[0],
        model_version=model[1],
        **kw,  # type: ignore[arg-type]
    )


def store_stream(conn: psycopg.Connection, stream: Stream) -> None:
    """A patient's events as the workers would have stored them: treatment, biopsies, scans."""
    treatments, imaging, biopsies = stream
    events.upsert_treatments(conn, treatments)
    for bev in biopsies:
        events.upsert_biopsy(conn, bev)
    for iev in imaging:
        events.upsert_imaging(conn, iev)


def pathology_scores(
    til_per_mm2: Iterable[float], biopsies: list[BiopsyAcquired], rng: np.random.Generator
) -> list[TimepointScore]:
    """Each biopsy's seeded pathology immune signature: a logistic of its true intratumoral TIL
    density (log10 per mm²) with noise, and a ±0.08 band."""
    out = []
    for density, bev in zip(til_per_mm2, biopsies, strict=True):
        til = math.log10(max(float(density), 1.0))
        v = sigmoid(1.6 * (til - 2.0) + rng.normal(0, 0.3))
        out.append(
            seeded_score(
                bev,
                PATHOLOGY_SCORE,
                v,
                SEED_PATHOLOGY,
                lower=max(0.0, v - 0.08),
                upper=min(1.0, v + 0.08),
                inputs=[s.slide_id for s in bev.slides],
            )
        )
    return out
