"""``irtmon rescore``: recompute the stored history with one model version.

Each scored scan of each patient is scored again from the history as it was known at that
scan (the same :func:`models.response.inference.score_timepoint` the worker runs), and the
scores are upserted with the new version. A score's id is derived from the scan, the score
name and the model version, so the earlier versions' rows stay beside the new ones, and
running it twice changes nothing.
"""

from __future__ import annotations

import uuid

import psycopg

from core.db import events, history, registry, scores
from models.exceptions import ModelError
from models.response.inference import load_models, score_timepoint
from schemas import ModelName


def rescore_patients(
    conn: psycopg.Connection, model: str, version: str | None = None, patient: str | None = None
) -> dict[str, int | str]:
    """Re-score every (or one) patient's scans with ``model`` ``version`` (default promoted).

    Returns the counts: patients, timepoints, scores, and the version used.
    """
    if model == ModelName.CT_SIGNATURE:
        ref = registry.model_ref(conn, ModelName.CT_SIGNATURE, version)
        if ref is None:
            raise ModelError("no promoted ct-signature model; pass --version")
        loaded = load_models(ref.as_tuple(), None)
    elif model == ModelName.RESPONSE:
        refs = registry.response_models(conn, response_version=version)
        if refs.response is None:
            raise ModelError("no promoted response model; pass --version")
        ref = refs.response
        loaded = load_models(
            None,
            refs.response.as_tuple(),
            refs.response_signature.as_tuple()[:2] if refs.response_signature else None,
        )
    else:
        raise ValueError(f"unknown model {model!r}")
    patients = [patient] if patient else events.imaged_patients(conn)
    counts: dict[str, int | str] = {
        "patients": 0,
        "timepoints": 0,
        "scores": 0,
        "version": ref.version,
    }
    for p in patients:
        known = history.load_history(conn, p)
        if not known.scans:
            continue
        counts["patients"] = int(counts["patients"]) + 1
        for scan in known.scans:
            values = score_timepoint(known, scan.at, loaded)
            source = uuid.UUID(scan.key)
            keys = [s.key for s in known.as_of(scan.at).scans]
            for v in values:
                scores.upsert_score(conn, v.score_of(p, source, scan.at, keys))
                counts["scores"] = int(counts["scores"]) + 1
            counts["timepoints"] = int(counts["timepoints"]) + 1
        conn.commit()
    return counts
