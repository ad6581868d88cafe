"""A patient's history from the database, and the promoted response models, for scoring.

The worker (a new scan) and ``irtmon rescore`` (the stored history with another model version)
both build :class:`models.response.history.History` here and score with
:func:`models.response.inference.score_timepoint`, so both compute the same thing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg

from models.exceptions import ModelError
from models.response.history import Biopsy, History, Scan, Signature, Treatment
from models.response.inference import ScoreValue
from schemas import TimepointScore, score_event_id

SIGNATURE_MODEL = "ct-signature"
RESPONSE_MODEL = "response"
PATHOLOGY_SCORES = ("pathology_p_inflamed", "pathology_p_excluded", "pathology_p_desert")


@dataclass(frozen=True)
class ModelRef:
    """A registered model version: artefact folder, registered hash, version."""

    name: str
    version: str
    folder: Path
    sha256: str

    def as_tuple(self) -> tuple[Path, str, str]:
        return (self.folder, self.sha256, self.version)


@dataclass(frozen=True)
class ResponseModels:
    """What a timepoint is scored with (any may be None: that score is then not produced)."""

    signature: ModelRef | None
    response: ModelRef | None
    response_signature: ModelRef | None


def model_ref(conn: psycopg.Connection, name: str, version: str | None = None) -> ModelRef | None:
    """The given version of ``name``, or its promoted one (None when there is none)."""
    if version is None:
        row = conn.execute(
            "SELECT version, path, sha256 FROM model_registry WHERE name = %s AND promoted",
            (name,),
        ).fetchone()
    else:
        row = conn.execute(
            "SELECT version, path, sha256 FROM model_registry WHERE name = %s AND version = %s",
            (name, version),
        ).fetchone()
        if row is None:
            raise ModelError(f"model {name} {version} is not registered")
    return None if row is None else ModelRef(name, row[0], Path(row[1]), row[2])


def response_models(
    conn: psycopg.Connection,
    signature_version: str | None = None,
    response_version: str | None = None,
) -> ResponseModels:
    """The promoted (or given) virtual biopsy and response model, and the virtual biopsy the
    response model was trained with (named on its card; it must be registered)."""
    from models.registry import load_artifact

    sig = model_ref(conn, SIGNATURE_MODEL, signature_version)
    resp = model_ref(conn, RESPONSE_MODEL, response_version)
    resp_sig = None
    if resp is not None:
        pinned = load_artifact(resp.folder, resp.sha256).extra.get("ct_signature") or {}
        if pinned.get("version"):
            resp_sig = model_ref(conn, SIGNATURE_MODEL, pinned["version"])
            if resp_sig is not None and resp_sig.sha256 != pinned.get("sha256"):
                raise ModelError(
                    f"response {resp.version} was trained with ct-signature "
                    f"{pinned['version']} of another hash than the registered one"
                )
    return ResponseModels(sig, resp, resp_sig or sig)


def load_history(conn: psycopg.Connection, patient: str, until: datetime | None = None) -> History:
    """Scored scans (burden of the target lesion, stored features), scored biopsies (the latest
    pathology model's signature) and treatment of ``patient``, up to ``until`` when given."""
    until_clause = "" if until is None else " AND a.acquired_at <= %(until)s"
    params = {"patient": patient, "until": until}
    scans = []
    for event_id, at, modality, volume, diameter, features in conn.execute(
        f"""
        SELECT a.event_id, a.acquired_at, a.modality, m.volume_ml, m.longest_diameter_mm,
               (SELECT f.features FROM acquisition_features f
                WHERE f.source_event_id = a.event_id ORDER BY f.created_at DESC LIMIT 1)
        FROM acquisitions a
        JOIN LATERAL (
            SELECT volume_ml, longest_diameter_mm FROM tumour_measurements t
            WHERE t.source_event_id = a.event_id AND t.lesion_id = 'target'
            ORDER BY t.created_at DESC LIMIT 1
        ) m ON true
        WHERE a.patient = %(patient)s AND a.kind = 'imaging'{until_clause}
        ORDER BY a.acquired_at, a.event_id
        """,
        params,
    ).fetchall():
        scans.append(
            Scan(
                at=at,
                volume_ml=float(volume),
                diameter_mm=float(diameter),
                features=features or {},
                pcct=modality == "PCCT",
                key=str(event_id),
            )
        )
    biopsies = []
    for at, values in _pathology(conn, patient, until):
        if all(k in values for k in (*PATHOLOGY_SCORES, "pathology_til_density")):
            biopsies.append(
                Biopsy(
                    at,
                    Signature(
                        values["pathology_p_inflamed"],
                        values["pathology_p_excluded"],
                        values["pathology_p_desert"],
                        values["pathology_til_density"],
                    ),
                )
            )
    rt_start = conn.execute(
        "SELECT min(occurred_at) FROM treatment_events WHERE patient = %s "
        "AND kind IN ('rt_course_start', 'rt_fraction')",
        (patient,),
    ).fetchone()[0]
    doses = [
        r[0]
        for r in conn.execute(
            "SELECT occurred_at FROM treatment_events WHERE patient = %s "
            "AND kind = 'immunotherapy_dose' ORDER BY occurred_at",
            (patient,),
        ).fetchall()
    ]
    return History(tuple(scans), tuple(biopsies), Treatment(rt_start, tuple(doses)))


def _pathology(
    conn: psycopg.Connection, patient: str, until: datetime | None
) -> list[tuple[datetime, dict[str, float]]]:
    rows = conn.execute(
        """
        SELECT DISTINCT ON (source_event_id, score_name)
               source_event_id, observed_at, score_name, value
        FROM timepoint_scores
        WHERE patient = %s AND score_name LIKE 'pathology%%'
              AND (%s::timestamptz IS NULL OR observed_at <= %s)
        ORDER BY source_event_id, score_name, created_at DESC
        """,
        (patient, until, until),
    ).fetchall()
    by_event: dict[uuid.UUID, tuple[datetime, dict[str, float]]] = {}
    for event_id, at, name, value in rows:
        by_event.setdefault(event_id, (at, {}))[1][name] = float(value)
    return sorted(by_event.values(), key=lambda v: v[0])


def to_timepoint_score(
    value: ScoreValue, patient: str, source_event_id: uuid.UUID, at: datetime, inputs: list[str]
) -> TimepointScore:
    """A stored, publishable score of a scan (its id is derived from scan, name, model)."""
    return TimepointScore(
        event_id=score_event_id(source_event_id, value.name, value.model_name, value.model_version),
        patient=patient,
        occurred_at=at,
        source_event_id=source_event_id,
        score_name=value.name,
        value=value.value,
        lower=value.lower,
        upper=value.upper,
        unit=value.unit,
        model_name=value.model_name,
        model_version=value.model_version,
        inputs=inputs[:256],
    )
