"""FHIR resources of irtmon's scores, for an EHR: :func:`score_resource` and :func:`bundle`.

One stored score (a :class:`schemas.TimepointScore`, as the ``timepoint_scores`` table holds it)
becomes one FHIR resource, whatever the score's name:

- a probability (a score named ``*_probability``, value in [0, 1]) becomes a ``RiskAssessment``
  whose prediction carries the probability (``probabilityDecimal``) and whose note gives the
  model's interval when there is one (FHIR allows a decimal or a range, not both);
- any other score (``ct_immune_score``, ``tumour_volume_ml``...) becomes an ``Observation``
  with a ``valueQuantity`` and, for an uncertainty interval, two components (lower and upper
  bound); an ``irecist_state`` (the iRECIST category of an assessment) is coded instead
  (``valueCodeableConcept``: ``iUPD``, "iUPD (unconfirmed progression)").

Both name the patient by the pseudonym only (an identifier in the ``urn:irtmon:pseudonym``
system, never a clear ID), the model name and version (``RiskAssessment.method``,
``Observation.device``), and the acquisition or biopsy scored (``basis`` / ``derivedFrom``, by
event id). Resources are built and validated with ``fhir.resources``' R4B models: R4B (4.3)
keeps R4's Observation and RiskAssessment, so an R4 server takes them.

Pure: no database or network.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.riskassessment import RiskAssessment

from schemas.enums import IRECIST_SCORE, IRecistState
from schemas.events import TimepointScore

__all__ = [
    "EVENT_SYSTEM",
    "PSEUDONYM_SYSTEM",
    "SCORE_SYSTEM",
    "bundle",
    "is_probability",
    "score_resource",
]

PSEUDONYM_SYSTEM = "urn:irtmon:pseudonym"
SCORE_SYSTEM = "urn:irtmon:score"
SCORE_NAME_SYSTEM = "urn:irtmon:score-name"
EVENT_SYSTEM = "urn:irtmon:event"
IRECIST_SYSTEM = "urn:irtmon:irecist"
UCUM = "http://unitsofmeasure.org"
_UCUM_CODES = {"ml": "mL", "mm": "mm", "per mm2": "/mm2", "HU": "[hnsf'U]"}


def is_probability(score: TimepointScore) -> bool:
    """Whether the score is a probability (named ``*_probability``, within [0, 1])."""
    return score.score_name.endswith("_probability") and 0.0 <= score.value <= 1.0


def _label(name: str) -> str:
    return name.replace("_", " ")


def _common(score: TimepointScore) -> dict[str, Any]:
    return {
        "id": str(score.event_id),
        "identifier": [{"system": SCORE_SYSTEM, "value": str(score.event_id)}],
        "status": "final",
        "subject": {
            "identifier": {"system": PSEUDONYM_SYSTEM, "value": score.patient},
            "display": score.patient,
        },
    }


def _source(score: TimepointScore) -> dict[str, Any]:
    return {
        "identifier": {"system": EVENT_SYSTEM, "value": str(score.source_event_id)},
        "display": "irtmon acquisition or biopsy event",
    }


def _quantity(value: float, unit: str | None) -> dict[str, Any]:
    quantity: dict[str, Any] = {"value": value}
    if unit:
        quantity["unit"] = unit
        if unit in _UCUM_CODES:
            quantity.update(system=UCUM, code=_UCUM_CODES[unit])
    return quantity


def _risk_assessment(score: TimepointScore) -> RiskAssessment:
    prediction: dict[str, Any] = {
        "outcome": {
            "coding": [{"system": SCORE_NAME_SYSTEM, "code": score.score_name}],
            "text": _label(score.score_name.removesuffix("_probability")),
        },
        "probabilityDecimal": score.value,
    }
    if score.lower is not None and score.upper is not None:
        # probability[x] holds one of decimal or range: the point estimate stays structured
        # (what an EHR shows and sorts by); the interval goes into the note
        note = f"point estimate {score.value:g}, interval {score.lower:g} to {score.upper:g}"
    else:
        note = f"point estimate {score.value:g}"
    return RiskAssessment(
        **_common(score),
        occurrenceDateTime=score.occurred_at.isoformat(),
        method={
            "coding": [
                {
                    "system": "urn:irtmon:model",
                    "code": score.model_name,
                    "version": score.model_version,
                }
            ],
            "text": f"{score.model_name} {score.model_version}",
        },
        basis=[_source(score)],
        prediction=[prediction],
        note=[{"text": f"irtmon {_label(score.score_name)}: {note}"}],
    )


def _value(score: TimepointScore) -> dict[str, Any]:
    """``valueQuantity``, or for an iRECIST state the category as ``valueCodeableConcept``."""
    state = IRecistState.from_value(score.value) if score.score_name == IRECIST_SCORE else None
    if state is None:
        return {"valueQuantity": _quantity(score.value, score.unit)}
    return {
        "valueCodeableConcept": {
            "coding": [{"system": IRECIST_SYSTEM, "code": state.label}],
            "text": state.words,
        }
    }


def _observation(score: TimepointScore) -> Observation:
    components = []
    for bound, value in (("lower bound", score.lower), ("upper bound", score.upper)):
        if value is not None:
            components.append(
                {
                    "code": {
                        "coding": [
                            {
                                "system": SCORE_NAME_SYSTEM,
                                "code": f"{score.score_name}:{bound.split()[0]}",
                            }
                        ],
                        "text": f"{_label(score.score_name)} {bound}",
                    },
                    "valueQuantity": _quantity(value, score.unit),
                }
            )
    return Observation(
        **_common(score),
        code={
            "coding": [{"system": SCORE_NAME_SYSTEM, "code": score.score_name}],
            "text": _label(score.score_name),
        },
        effectiveDateTime=score.occurred_at.isoformat(),
        **_value(score),
        device={"display": f"{score.model_name} {score.model_version}"},
        derivedFrom=[_source(score)],
        component=components or None,
    )


def score_resource(score: TimepointScore) -> RiskAssessment | Observation:
    """The FHIR resource of one stored score (RiskAssessment for a probability)."""
    return _risk_assessment(score) if is_probability(score) else _observation(score)


def bundle(scores: Iterable[TimepointScore]) -> Bundle:
    """A ``collection`` Bundle of the resources of ``scores`` (in the order given)."""
    entries = []
    for score in scores:
        resource = score_resource(score)
        entries.append(
            {
                "fullUrl": f"urn:uuid:{score.event_id}",
                "resource": resource,
            }
        )
    return Bundle(type="collection", entry=entries)
