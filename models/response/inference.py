"""Scoring one timepoint with the virtual biopsy and the response model.

:func:`score_timepoint` is what the worker and ``irtmon rescore`` call: given a patient's
history, the time of a scan and the loaded models, it returns the named scores of that scan.
Models are loaded through :func:`load_models`, which verifies each artefact's weights against
its recorded (and, when given, registered) sha256 and refuses anything else.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from models.response.history import History, response_inputs
from models.response.response import ResponseModel, load_response
from models.response.signature import CtSignatureModel, load_signature
from schemas import TimepointScore


@dataclass(frozen=True)
class ScoreValue:
    """One score of a timepoint."""

    name: str
    value: float
    lower: float | None
    upper: float | None
    unit: str | None
    model_name: str
    model_version: str

    def score_of(
        self, patient: str, source_event_id: uuid.UUID, at: datetime, inputs: Sequence[str]
    ) -> TimepointScore:
        """This value as the stored, publishable score of one scan."""
        return TimepointScore.for_source(
            source_event_id=source_event_id,
            patient=patient,
            occurred_at=at,
            score_name=self.name,
            value=self.value,
            lower=self.lower,
            upper=self.upper,
            unit=self.unit,
            model_name=self.model_name,
            model_version=self.model_version,
            inputs=inputs,
        )


@dataclass(frozen=True)
class LoadedModels:
    """The models a timepoint is scored with, and their versions."""

    signature: CtSignatureModel | None
    signature_version: str | None
    response: ResponseModel | None
    response_version: str | None
    response_signature: CtSignatureModel | None  # the virtual biopsy the response model uses


@lru_cache(maxsize=8)
def _signature(folder: str, sha: str | None) -> CtSignatureModel:
    return load_signature(Path(folder), sha)


@lru_cache(maxsize=8)
def _response(folder: str, sha: str | None) -> ResponseModel:
    return load_response(Path(folder), sha)


def load_models(
    signature: tuple[Path, str | None, str] | None,
    response: tuple[Path, str | None, str] | None,
    response_signature: tuple[Path, str | None] | None = None,
) -> LoadedModels:
    """Load (once per process) the given artefacts: ``(folder, registered sha256, version)``.

    ``response_signature`` is the virtual biopsy the response model was trained with (its
    card names it); the promoted virtual biopsy is used when it is not given.

    Raises
    ------
    ModelError
        A folder is missing, its card lacks a version, or its weights do not match the hash.
    """
    sig = _signature(str(signature[0]), signature[1]) if signature else None
    resp = _response(str(response[0]), response[1]) if response else None
    resp_sig = (
        _signature(str(response_signature[0]), response_signature[1]) if response_signature else sig
    )
    return LoadedModels(
        sig,
        signature[2] if signature else None,
        resp,
        response[2] if response else None,
        resp_sig,
    )


def score_timepoint(history: History, at: datetime, models: LoadedModels) -> list[ScoreValue]:
    """The virtual-biopsy and response scores of the scan at ``at`` (what is known then).

    Raises
    ------
    ValueError
        The history holds no scan at or before ``at``.
    """
    known = history.as_of(at)
    if not known.scans:
        raise ValueError(f"no scan at or before {at.isoformat()}")
    out: list[ScoreValue] = []
    scan = known.scans[-1]
    if models.signature is not None and models.signature_version is not None:
        probs, til, spread = models.signature.predict([scan])
        score = float(probs[0, 0] + 0.5 * probs[0, 1])
        version = models.signature_version
        out.append(
            ScoreValue(
                "ct_immune_score",
                round(score, 6),
                round(max(0.0, score - float(spread[0])), 6),
                round(min(1.0, score + float(spread[0])), 6),
                None,
                "ct-signature",
                version,
            )
        )
        for i, name in enumerate(("inflamed", "excluded", "desert")):
            out.append(
                ScoreValue(
                    f"ct_p_{name}",
                    round(float(probs[0, i]), 6),
                    None,
                    None,
                    None,
                    "ct-signature",
                    version,
                )
            )
        out.append(
            ScoreValue(
                "ct_til_density",
                round(float(til[0]), 4),
                None,
                None,
                "per mm2",
                "ct-signature",
                version,
            )
        )
    if models.response is not None and models.response_version is not None:
        sig_model = models.response_signature
        inputs = response_inputs(known, at, sig_model.signature if sig_model else None)
        pred = models.response.predict([inputs])
        p_nr, lo, hi = float(pred.p[0]), float(pred.lower[0]), float(pred.upper[0])
        out.append(
            ScoreValue(
                "response_probability",
                round(1.0 - p_nr, 6),
                round(1.0 - hi, 6),
                round(1.0 - lo, 6),
                None,
                "response",
                models.response_version,
            )
        )
    return out
