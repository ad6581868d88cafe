"""Seed a database from the virtual clinic so the app has something true to show.

Burden per timepoint comes from the story's lesion trajectories (``clinic.story``); the scores
are FAKE but plausible, derived from the story's latent immune activity and the observed burden,
and carry the model names ``seed-*`` so nobody mistakes them for a trained model's output.

Two sources:

* :func:`seed_story` draws ``n`` patients from the story only (no image files; the paths in the
  events point nowhere): fast, for benchmarks and large demos.
* :func:`seed_cohort` loads a generated cohort folder (``irtmon clinic generate``): its events
  with real DICOM and slide paths, so the Images page can show them. A story-v2 cohort (every
  lesion) is seeded with one row per tracked lesion and the RECIST 1.1 / iRECIST assessment of
  each scan, from its truth (:mod:`irtmon.seed_lesions`), and its alerts are raised by
  :func:`core.alerts.evaluate` on what was stored.

Both write through the core layer's idempotent upserts (the workers' own), so re-seeding is
safe, then open alerts through the one alert lifecycle and register the seed "models".
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from clinic.events import biopsy_event, event_id, imaging_event, load_events, treatment_events
from clinic.story import Patient, lesion_truth, sample_patient
from core import alerts as lifecycle
from core.db import alerts, events, registry, scores, users
from core.db.connect import committed
from core.passwords import hash_password
from irtmon.seed_lesions import seed_patient_v2
from irtmon.seed_scores import (
    pathology_scores,
    seeded_score,
    sigmoid,
    store_stream,
)
from models.registry import ModelArtifact
from monitoring_app.vocab import IRECIST_STATE, RESPONSE_PROBABILITY, IRecistState
from schemas import AlertKind
from schemas.enums import Modality
from schemas.events import BiopsyAcquired, Event, ImagingAcquired, TreatmentEvent
from schemas.pseudonym import pseudonymise
from schemas.results import Measurement

SEED_MODELS: dict[str, tuple[str, ...]] = {
    "seed-response": ("0.1", "0.2"),
    "seed-ct-virtual-biopsy": ("0.1",),
    "seed-pathology": ("0.1",),
    "seed-burden": ("0.1",),
    "seed-irecist": ("0.1",),
    "seed-lesions": ("0.1",),
}
CT_SCORE = "ct_virtual_biopsy"


@dataclass
class SeedSummary:
    """What was written, for tests and benchmarks to check against."""

    patients: list[str] = field(default_factory=list)
    cohorts: dict[str, str] = field(default_factory=dict)
    alerts: dict[str, list[str]] = field(default_factory=dict)  # patient -> alert kinds
    latest_probability: dict[str, float] = field(default_factory=dict)  # promoted version
    n_scores: int = 0


def arm_of(patient: Patient) -> str:
    """Treatment arm from the story's schedule."""
    kind = "SBRT" if patient.rt.fractions <= 5 else "CFRT"
    return f"{kind} {patient.rt.dose_gy:g} Gy + {patient.ici.agent}"


def _story_events(
    patient: Patient, psn: str, seed: int
) -> tuple[list[TreatmentEvent], list[ImagingAcquired], list[BiopsyAcquired]]:
    root = Path("/nonexistent/virtual-clinic") / psn
    imaging = [
        imaging_event(
            seed,
            psn,
            tp.index,
            Modality.PCCT if tp.pcct else Modality.CT,
            f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, f'{psn}/{tp.index}').int}",
            [f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, f'{psn}/{tp.index}/s').int}"],
            root / f"tp{tp.index}-{tp.label}",
            tp.at + timedelta(minutes=20),
            f"{'PCCT' if tp.pcct else 'CT'} thorax {tp.label}",
        )
        for tp in patient.timepoints
    ]
    biopsies = [
        biopsy_event(
            seed,
            psn,
            b.index,
            b.at,
            root / f"biopsy{b.index}" / "slide.tiff",
            b.pd_l1_tps,
            b.til_intratumoral_per_mm2,
        )
        for b in patient.biopsies
    ]
    return treatment_events(patient, psn, seed), imaging, biopsies


def _seed_patient(
    conn: psycopg.Connection,
    patient: Patient,
    psn: str,
    seed: int,
    number: int,
    cohort: str,
    stream: tuple[list[TreatmentEvent], list[ImagingAcquired], list[BiopsyAcquired]],
    summary: SeedSummary,
    rescore_every: int,
) -> None:
    _, imaging, biopsies = stream
    rng = np.random.default_rng([seed, number, 99])
    store_stream(conn, stream)
    events.set_patient_cohort(conn, psn, cohort, arm_of(patient))
    # pathology immune signature at each biopsy
    written = pathology_scores(
        (b.til_intratumoral_per_mm2 for b in patient.biopsies), biopsies, rng
    )
    activity_seen = patient.immune_activity + rng.normal(0, 0.5)
    sums: list[float] = []
    active: dict[str, bool] = {}
    for tp, iev in zip(patient.timepoints, imaging, strict=True):
        series = iev.series_uids[0] if iev.series_uids else None
        total = 0.0
        for les in patient.lesions:
            vol, diam = lesion_truth(les, tp.days)
            noise = float(rng.normal(1.0, 0.03))
            diam_m = max(diam * noise, 1.0)
            total += diam_m
            scores.upsert_measurement(
                conn,
                iev.event_id,
                psn,
                iev.occurred_at,
                Measurement(
                    lesion_id=f"L{les.index + 1}",
                    volume_ml=max(vol * noise**3, 0.0),
                    longest_diameter_mm=diam_m,
                    mask_source="seg" if tp.index == 0 else "propagated",
                    registration_quality=None if tp.index == 0 else float(rng.uniform(0.8, 0.97)),
                    series_uid=series,
                    model_name="seed-burden",
                    model_version="0.1",
                ),
            )
        sums.append(total)
        baseline, nadir = sums[0], min(sums[:-1] or sums)
        from_base = 100.0 * (total - baseline) / baseline
        from_nadir = 100.0 * (total - nadir) / nadir
        # CT virtual biopsy: the story's CT signals are driven by the same immune activity
        ct = sigmoid(0.9 * patient.immune_activity + rng.normal(0, 0.6))
        written.append(
            seeded_score(
                iev,
                CT_SCORE,
                ct,
                ("seed-ct-virtual-biopsy", "0.1"),
                lower=max(0.0, ct - 0.12),
                upper=min(1.0, ct + 0.12),
                inputs=iev.series_uids,
            )
        )
        # iRECIST (simplified): PR -30 % from baseline, PD +20 % from nadir, iCPD if confirmed
        state = IRecistState.ISD
        if tp.index == 0:
            state = None
        elif from_nadir >= 20.0:
            state = IRecistState.ICPD if active.get("iupd") else IRecistState.IUPD
            active["iupd"] = True
        elif from_base <= -30.0:
            state = IRecistState.IPR
            active["iupd"] = False
        else:
            active["iupd"] = False if from_nadir < 10 else active.get("iupd", False)
        if state is not None:
            written.append(
                seeded_score(
                    iev,
                    IRECIST_STATE,
                    float(state),
                    ("seed-irecist", "0.1"),
                    inputs=iev.series_uids,
                )
            )
        # response probability: prior from activity, updated by the burden course
        for version, shift in (("0.1", 0.0), ("0.2", 0.25)):
            if version == "0.2" and (rescore_every <= 0 or number % rescore_every):
                continue
            logit = (
                1.1 * activity_seen
                - 0.3
                + shift
                - 0.05 * min(max(0.0, from_nadir), 50.0)
                - 0.02 * min(max(0.0, from_base), 50.0)
                + 0.04 * min(max(0.0, -from_base), 50.0)
            )
            p = sigmoid(logit)
            half = 1.96 * 0.9 / math.sqrt(tp.index + 1)
            lo, hi = sigmoid(logit - half), sigmoid(logit + half)
            written.append(
                seeded_score(
                    iev,
                    RESPONSE_PROBABILITY,
                    p,
                    ("seed-response", version),
                    lower=min(lo, p),
                    upper=max(hi, p),
                    inputs=iev.series_uids,
                )
            )
            if version == "0.1":
                summary.latest_probability[psn] = p
        # alerts, one active per kind, like the decision layer will raise them
        if state in (IRecistState.IUPD, IRecistState.ICPD):
            kind = (
                "suspected_non_response"
                if state is IRecistState.IUPD
                else ("confirmed_progression")
            )
            if kind not in summary.alerts.get(psn, []):
                prev_at = imaging[max(tp.index - 1, 0)].occurred_at
                lifecycle.open_alert(
                    conn,
                    psn,
                    AlertKind(kind),
                    {
                        "probability": round(min(0.99, 0.55 + from_nadir / 200.0), 3),
                        "change_at": prev_at + (iev.occurred_at - prev_at) / 2,
                        "summary": (
                            f"Sum of diameters {total:.0f} mm at {tp.label}: {from_nadir:+.0f} % "
                            f"from nadir ({nadir:.0f} mm), {from_base:+.0f} % from baseline; "
                            f"response probability {summary.latest_probability[psn]:.2f}."
                        ),
                        "recommendation": (
                            "confirm with the next scan; consider adaptive treatment review"
                            if kind == "suspected_non_response"
                            else "progression confirmed: discuss treatment change at the tumour "
                            "board"
                        ),
                        "signals": ["tumour_burden", RESPONSE_PROBABILITY, IRECIST_STATE],
                        "model_versions": {"seed-response": "0.1", "seed-burden": "0.1"},
                    },
                    now=iev.occurred_at + timedelta(hours=1),
                    actor="irtmon.seed",
                )
                summary.alerts.setdefault(psn, []).append(kind)
    for s in written:
        scores.upsert_score(conn, s)
    summary.n_scores += len(written)
    summary.patients.append(psn)
    summary.cohorts[psn] = cohort


def register_seed_models(conn: psycopg.Connection) -> None:
    """Registry rows for the seed 'models' (fake hashes and paths, honest cards); the first
    version of each is promoted."""
    for name, versions in SEED_MODELS.items():
        for i, version in enumerate(versions):
            card = (
                f"# {name} {version}\n\n**Not a model.** Scores written by "
                "`irtmon.seed` from the virtual clinic's latent variables so that the "
                "app can be shown and tested. Do not use for any clinical purpose.\n\n"
                "- Intended use: demonstration and tests\n- Training data: none (synthetic story)"
                "\n\nEvidence: none. Not a model, so never evaluated under a declaration."
            )
            registry.register(
                conn,
                ModelArtifact(
                    name=name,
                    version=version,
                    weights="none",
                    sha256=hashlib.sha256(f"{name}/{version}".encode()).hexdigest(),
                    created_at="",
                    metrics={
                        "auc": round(0.70 + 0.05 * i, 3),
                        "brier": round(0.21 - 0.02 * i, 3),
                        "n_validation": 120,
                    },
                    card=card,
                    folder=Path(f"/nonexistent/models/{name}/{version}"),
                ),
            )
        if registry.model_ref(conn, name) is None:
            registry.promote(conn, name, versions[0], actor="irtmon.seed")


def _cohort_name(cohorts: Sequence[str], number: int) -> str:
    return cohorts[(number - 1) % len(cohorts)]


def seed_story(
    conn: psycopg.Connection,
    n_patients: int,
    seed: int = 11,
    n_timepoints: int = 5,
    cohorts: Sequence[str] = ("default",),
    key: str = "irtmon-app-seed-key-not-secret",
    rescore_every: int = 3,
) -> SeedSummary:
    """Draw ``n_patients`` from the story and write them (no image files). Commits (run again
    whole when the server rolls it back: :func:`core.db.connect.committed`)."""

    def drawn() -> Iterator[tuple[int, Patient, str, Any]]:
        for number in range(1, n_patients + 1):
            patient = sample_patient(np.random.default_rng([seed, number, 0]), number, n_timepoints)
            psn = pseudonymise(patient.clear_id, key)
            yield number, patient, psn, _story_events(patient, psn, seed)

    return committed(
        conn, lambda: _seed_story_patients(conn, drawn(), seed, cohorts, rescore_every)
    )


def _seed_story_patients(
    conn: psycopg.Connection,
    drawn: Iterable[tuple[int, Patient, str, Any]],
    seed: int,
    cohorts: Sequence[str],
    rescore_every: int,
) -> SeedSummary:
    """Write story-v1 patients ((number, patient, pseudonym, its events) each) in one pipeline,
    with the seed models registered. Does not commit."""
    summary = SeedSummary()
    with conn.pipeline():
        register_seed_models(conn)
        for number, patient, psn, stream in drawn:
            _seed_patient(
                conn,
                patient,
                psn,
                seed,
                number,
                _cohort_name(cohorts, number),
                stream,
                summary,
                rescore_every,
            )
    return summary


def seed_cohort(
    conn: psycopg.Connection,
    cohort_dir: Path | str,
    cohorts: Sequence[str] = ("default",),
    rescore_every: int = 3,
) -> SeedSummary:
    """Load a generated cohort folder (events with real file paths) and seed scores. Commits (run
    again whole when the server rolls it back: :func:`core.db.connect.committed`)."""
    cohort_dir = Path(cohort_dir).resolve()
    meta = json.loads((cohort_dir / "cohort.json").read_text())
    seed, n_tp = int(meta["seed"]), int(meta["n_timepoints"])
    with (cohort_dir / "ground_truth" / "identities.csv").open() as fh:
        identities = list(csv.DictReader(fh))
    by_id = {ev.event_id: ev for ev in load_events(cohort_dir)}
    if meta.get("story_version") == "v2":
        return committed(
            conn,
            lambda: _seed_cohort_v2(
                conn, cohort_dir, seed, identities, list(by_id.values()), cohorts, rescore_every
            ),
        )
    return committed(
        conn,
        lambda: _seed_cohort_v1(
            conn, cohort_dir, seed, n_tp, identities, by_id, cohorts, rescore_every
        ),
    )


def _seed_cohort_v1(
    conn: psycopg.Connection,
    cohort_dir: Path,
    seed: int,
    n_tp: int,
    identities: list[dict[str, str]],
    by_id: dict[str, Event],
    cohorts: Sequence[str],
    rescore_every: int,
) -> SeedSummary:
    """Seed a story-v1 cohort (one lesion per patient) from its story. Does not commit."""

    def drawn() -> Iterator[tuple[int, Patient, str, Any]]:
        for number, ident in enumerate(identities, start=1):
            patient = sample_patient(np.random.default_rng([seed, number, 0]), number, n_tp)
            if patient.clear_id != ident["clear_id"]:
                raise ValueError(f"{cohort_dir}: patient {number} does not match its story")
            psn = ident["pseudonym"]
            treatments = [
                e for e in by_id.values() if isinstance(e, TreatmentEvent) and e.patient == psn
            ]
            imaging = [by_id[event_id(seed, psn, "imaging", tp.index)] for tp in patient.timepoints]
            biopsies = [by_id[event_id(seed, psn, "biopsy", b.index)] for b in patient.biopsies]
            yield number, patient, psn, (treatments, imaging, biopsies)

    return _seed_story_patients(conn, drawn(), seed, cohorts, rescore_every)


def _seed_cohort_v2(
    conn: psycopg.Connection,
    cohort_dir: Path,
    seed: int,
    identities: list[dict[str, str]],
    stream: list[Event],
    cohorts: Sequence[str],
    rescore_every: int,
) -> SeedSummary:
    """Seed a story-v2 cohort: every lesion from the truth (:mod:`irtmon.seed_lesions`). Does not
    commit."""
    summary = SeedSummary()
    with conn.pipeline():
        register_seed_models(conn)
        for number, ident in enumerate(identities, start=1):
            psn = ident["pseudonym"]
            mine = sorted((e for e in stream if e.patient == psn), key=lambda e: e.occurred_at)  # type: ignore[attr-defined]
            cohort = _cohort_name(cohorts, number)
            kinds, latest = seed_patient_v2(
                conn,
                cohort_dir,
                psn,
                (
                    [e for e in mine if isinstance(e, TreatmentEvent)],
                    [e for e in mine if isinstance(e, ImagingAcquired)],
                    [e for e in mine if isinstance(e, BiopsyAcquired)],
                ),
                cohort,
                number,
                seed,
                rescore_every,
            )
            summary.patients.append(psn)
            summary.cohorts[psn] = cohort
            if kinds:
                summary.alerts[psn] = kinds
            if latest is not None:
                summary.latest_probability[psn] = latest
    return summary


def seed_alert_ids(conn: psycopg.Connection, patients: Iterable[str]) -> list[str]:
    """Alert ids of the given patients (tests use it to pick one)."""
    return alerts.patient_alert_ids(conn, list(patients))


def seed_users(
    conn: psycopg.Connection, accounts: Iterable[tuple[str, str, str, Sequence[str]]]
) -> None:
    """Create or update (name, role, password, cohorts) users, in one transaction."""
    with conn.transaction():
        for name, role, password, cohorts in accounts:
            users.save_user(
                conn, name, role, hash_password(password), list(cohorts), actor="irtmon.seed"
            )
