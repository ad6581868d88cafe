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

Every tracked lesion of an imaging acquisition becomes an ``Observation`` too
(:func:`lesion_observations`), grouped per acquisition: one group ``Observation`` (the
timepoint's RECIST 1.1 category, iRECIST state, sum of diameters of the target lesions, in-field
and out-of-field sums, new lesions, as components) whose ``hasMember`` lists one
``Observation`` per lesion, with its ``bodySite`` (SNOMED CT) and as components its tracking
identifier and UID, RECIST role, long axis, short axis, volume, whether it lies in the
radiotherapy field, whether it was seen and how its outline was obtained.

All name the patient by the pseudonym only (an identifier in the ``urn:irtmon:pseudonym``
system, never a clear ID), the model name and version (``RiskAssessment.method``,
``Observation.device``), and the acquisition or biopsy scored (``basis`` / ``derivedFrom``, by
event id). Resources are built and validated with ``fhir.resources``' R4B models: R4B (4.3)
keeps R4's Observation and RiskAssessment, so an R4 server takes them.

Pure: no database or network.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.riskassessment import RiskAssessment

from schemas.enums import IRECIST_SCORE, IRecistState, LesionRole, Organ, carries_burden
from schemas.events import TimepointScore

__all__ = [
    "EVENT_SYSTEM",
    "LESION_SYSTEM",
    "PSEUDONYM_SYSTEM",
    "SCORE_SYSTEM",
    "bundle",
    "is_probability",
    "lesion_observations",
    "score_resource",
]

PSEUDONYM_SYSTEM = "urn:irtmon:pseudonym"
SCORE_SYSTEM = "urn:irtmon:score"
SCORE_NAME_SYSTEM = "urn:irtmon:score-name"
EVENT_SYSTEM = "urn:irtmon:event"
IRECIST_SYSTEM = "urn:irtmon:irecist"
UCUM = "http://unitsofmeasure.org"
SNOMED = "http://snomed.info/sct"
LESION_SYSTEM = "urn:irtmon:lesion"
RECIST_SYSTEM = "urn:irtmon:recist"
LESION_NAMESPACE = uuid.UUID("5d0f3a52-1c7e-4b8e-9f61-2a9e7c3b4d10")
_ORGAN_SNOMED = {
    Organ.LUNG: ("39607008", "Lung structure"),
    Organ.LIVER: ("10200004", "Liver structure"),
    Organ.LYMPH_NODE: ("59441001", "Structure of lymph node"),
    Organ.ADRENAL: ("23451007", "Structure of adrenal gland"),
    Organ.BONE: ("272673000", "Bone structure"),
    Organ.BRAIN: ("12738006", "Brain structure"),
    Organ.KIDNEY: ("64033007", "Kidney structure"),
    Organ.PLEURA: ("3120008", "Pleural membrane structure"),
    Organ.SOFT_TISSUE: ("87784001", "Soft tissues"),
}
_ROLE_WORDS = {
    LesionRole.TARGET: "target lesion",
    LesionRole.NON_TARGET: "non-target lesion",
    LesionRole.NEW_TARGET: "new target lesion",
    LesionRole.NEW_NON_TARGET: "new non-target lesion",
    LesionRole.NORMAL_NODE: "normal lymph node",
}
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


# ----------------------------------------------------------------------------- lesions


def _lesion_code(code: str, text: str) -> dict[str, Any]:
    return {"coding": [{"system": LESION_SYSTEM, "code": code}], "text": text}


def _component(code: str, text: str, **value: Any) -> dict[str, Any]:
    return {"code": _lesion_code(code, text), **value}


def _mm(value: float) -> dict[str, Any]:
    return {"valueQuantity": _quantity(round(float(value), 2), "mm")}


def _lesion_id(source_event_id: uuid.UUID | str, what: str) -> uuid.UUID:
    return uuid.uuid5(LESION_NAMESPACE, f"{source_event_id}/{what}")


def _subject(patient: str) -> dict[str, Any]:
    return {"identifier": {"system": PSEUDONYM_SYSTEM, "value": patient}, "display": patient}


def _acquisition(source_event_id: uuid.UUID | str) -> dict[str, Any]:
    return {
        "identifier": {"system": EVENT_SYSTEM, "value": str(source_event_id)},
        "display": "irtmon imaging acquisition event",
    }


def _lesion_observation(
    patient: str, source_event_id: uuid.UUID | str, at: datetime, lesion: Mapping[str, Any]
) -> Observation:
    organ = Organ(lesion["organ"])
    role = LesionRole(lesion["role"])
    status = str(lesion["status"])
    components = [
        _component("tracking-id", "tracking identifier", valueString=str(lesion["tracking_id"])),
        _component(
            "tracking-uid", "tracking unique identifier", valueString=lesion["tracking_uid"]
        ),
        _component(
            "recist-role",
            "RECIST role",
            valueCodeableConcept={
                "coding": [{"system": RECIST_SYSTEM, "code": role.value}],
                "text": _ROLE_WORDS[role],
            },
        ),
        _component(
            "status",
            "lesion at this timepoint",
            valueCodeableConcept={
                "coding": [{"system": LESION_SYSTEM, "code": status}],
                "text": status.replace("_", " "),
            },
        ),
    ]
    if lesion.get("in_field") is not None:
        components.append(
            _component("in-field", "within the radiotherapy field", valueBoolean=lesion["in_field"])
        )
    if lesion.get("long_axis_mm") is not None:
        components.append(_component("long-axis", "long axis", **_mm(lesion["long_axis_mm"])))
    if lesion.get("short_axis_mm") is not None:
        components.append(_component("short-axis", "short axis", **_mm(lesion["short_axis_mm"])))
    if lesion.get("volume_ml") is not None:
        components.append(
            _component(
                "volume",
                "volume",
                valueQuantity=_quantity(round(float(lesion["volume_ml"]), 4), "ml"),
            )
        )
    if lesion.get("origin"):
        components.append(
            _component("origin", "outline obtained", valueString=str(lesion["origin"]))
        )
    if lesion.get("failure"):
        components.append(
            _component("not-evaluable", "why not evaluable", valueString=str(lesion["failure"]))
        )
    diameter = None
    if status == "seen":
        axis = "short_axis_mm" if lesion.get("is_node") else "long_axis_mm"
        diameter = lesion.get(axis)
    elif status == "not_seen":
        diameter = 0.0
    site = _ORGAN_SNOMED.get(organ)
    value: dict[str, Any] = (
        _mm(diameter) if diameter is not None else {"dataAbsentReason": {"text": "not evaluable"}}
    )
    return Observation(
        id=str(_lesion_id(source_event_id, str(lesion["tracking_uid"]))),
        identifier=[
            {"system": LESION_SYSTEM, "value": f"{source_event_id}/{lesion['tracking_uid']}"}
        ],
        status="final",
        subject=_subject(patient),
        code=_lesion_code("lesion-diameter", "RECIST diameter of a tracked lesion"),
        effectiveDateTime=at.isoformat(),
        bodySite={
            "coding": [{"system": SNOMED, "code": site[0], "display": site[1]}] if site else None,
            "text": organ.value.replace("_", " "),
        },
        device={"display": f"{lesion['model_name']} {lesion['model_version']}"},
        derivedFrom=[_acquisition(source_event_id)],
        component=components,
        **value,
    )


def lesion_observations(
    patient: str,
    assessment: Mapping[str, Any],
    lesions: Sequence[Mapping[str, Any]],
) -> list[Observation]:
    """The lesions of one imaging acquisition as FHIR: one ``Observation`` per lesion and a
    group ``Observation`` (first) whose ``hasMember`` lists them, carrying the timepoint's
    RECIST 1.1 and iRECIST categories and sums as components (the sums absent, "not evaluable",
    at an iNE timepoint: they would count only the lesions seen).

    ``assessment`` and ``lesions`` are rows as ``core.db.lesions`` reads them
    (``lesion_assessments`` and ``lesion_measurements`` columns).
    """
    source = assessment["source_event_id"]
    at = assessment["observed_at"]
    members = [_lesion_observation(patient, source, at, lesion) for lesion in lesions]
    state = IRecistState(int(assessment["irecist_state"]))

    def summed(column: str) -> dict[str, Any]:  # none when not evaluable (carries_burden)
        if carries_burden(state):
            return _mm(assessment[column])
        return {"dataAbsentReason": {"text": "not evaluable"}}

    components = [
        _component(
            "sum-diameters", "sum of diameters of the target lesions", **summed("sum_diameters_mm")
        ),
        _component(
            "in-field-sum",
            "sum of diameters in the radiotherapy field",
            **summed("in_field_sum_mm"),
        ),
        _component(
            "out-of-field-sum",
            "sum of diameters outside the radiotherapy field",
            **summed("out_of_field_sum_mm"),
        ),
        _component(
            "new-lesions", "new lesions present", valueInteger=int(assessment["new_lesions"])
        ),
    ]
    if int(assessment["timepoint"]) > 0:
        components.append(
            _component(
                "irecist",
                "iRECIST timepoint response",
                valueCodeableConcept={
                    "coding": [{"system": IRECIST_SYSTEM, "code": state.label}],
                    "text": state.words,
                },
            )
        )
    for key, text in (
        ("recist", "RECIST 1.1 overall response"),
        ("target_response", "RECIST 1.1 target response"),
        ("nontarget_response", "RECIST 1.1 non-target response"),
    ):
        if assessment.get(key):
            components.append(
                _component(
                    key.replace("_", "-"),
                    text,
                    valueCodeableConcept={
                        "coding": [{"system": RECIST_SYSTEM, "code": assessment[key]}],
                        "text": f"RECIST 1.1 {assessment[key]}",
                    },
                )
            )
    group = Observation(
        id=str(_lesion_id(source, "assessment")),
        identifier=[{"system": LESION_SYSTEM, "value": f"{source}/assessment"}],
        status="final",
        subject=_subject(patient),
        code=_lesion_code(
            "lesion-assessment",
            "tumour response assessment over every tracked lesion (RECIST 1.1, iRECIST)",
        ),
        effectiveDateTime=at.isoformat(),
        device={"display": f"{assessment['model_name']} {assessment['model_version']}"},
        derivedFrom=[_acquisition(source)],
        hasMember=[
            {"reference": f"urn:uuid:{m.id}", "display": f"lesion {lesion['tracking_id']}"}
            for m, lesion in zip(members, lesions, strict=True)
        ],
        component=components,
        note=[{"text": str(assessment.get("reason") or "")}] if assessment.get("reason") else None,
    )
    return [group, *members]


def bundle(scores: Iterable[TimepointScore], lesions: Iterable[Observation] = ()) -> Bundle:
    """A ``collection`` Bundle of the resources of ``scores`` (in the order given), then the
    lesion observations (:func:`lesion_observations`), each under ``urn:uuid:<id>``."""
    entries = []
    for score in scores:
        resource = score_resource(score)
        entries.append(
            {
                "fullUrl": f"urn:uuid:{score.event_id}",
                "resource": resource,
            }
        )
    for observation in lesions:
        entries.append({"fullUrl": f"urn:uuid:{observation.id}", "resource": observation})
    return Bundle(type="collection", entry=entries)
