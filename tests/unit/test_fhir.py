"""Scores as FHIR resources: a RiskAssessment per probability, an Observation otherwise, for
any score name, with the model and only the pseudonym."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from fhir.resources.R4B.bundle import Bundle

from schemas import TimepointScore, score_event_id
from schemas.fhir import PSEUDONYM_SYSTEM, bundle, is_probability, score_resource

PATIENT = "psn-0123456789abcdef"
SOURCE = uuid.UUID("11111111-2222-3333-4444-555555555555")


def score(name: str, value: float, **kw: object) -> TimepointScore:
    model, version = str(kw.pop("model", "response-model")), str(kw.pop("version", "1.2.0"))
    return TimepointScore(
        event_id=score_event_id(SOURCE, name, model, version),
        patient=PATIENT,
        occurred_at=datetime(2026, 3, 1, 10, 15, tzinfo=UTC),
        source_event_id=SOURCE,
        score_name=name,
        value=value,
        model_name=model,
        model_version=version,
        **kw,
    )


def test_a_response_probability_is_a_risk_assessment() -> None:
    resource = score_resource(score("response_probability", 0.31, lower=0.2, upper=0.45))
    data = json.loads(resource.model_dump_json())
    assert data["resourceType"] == "RiskAssessment"
    assert data["status"] == "final"
    assert data["subject"]["identifier"] == {"system": PSEUDONYM_SYSTEM, "value": PATIENT}
    assert data["prediction"][0]["probabilityDecimal"] == 0.31
    assert "0.2 to 0.45" in data["note"][0]["text"]
    assert data["method"]["coding"][0]["code"] == "response-model"
    assert data["method"]["coding"][0]["version"] == "1.2.0"
    assert data["occurrenceDateTime"].startswith("2026-03-01T10:15:00")
    assert data["basis"][0]["identifier"]["value"] == str(SOURCE)


@pytest.mark.parametrize(
    ("name", "value", "unit"),
    [("ct_immune_score", 0.62, None), ("tumour_volume_ml", 27.7, "ml"), ("new_score_x", 3.0, "HU")],
)
def test_other_scores_are_observations(name: str, value: float, unit: str | None) -> None:
    resource = score_resource(score(name, value, unit=unit, lower=value - 0.1, upper=value + 0.1))
    data = json.loads(resource.model_dump_json())
    assert data["resourceType"] == "Observation"
    assert data["code"]["coding"][0]["code"] == name
    assert data["valueQuantity"]["value"] == value
    assert [c["code"]["coding"][0]["code"] for c in data["component"]] == [
        f"{name}:lower",
        f"{name}:upper",
    ]
    assert data["device"]["display"] == "response-model 1.2.0"
    if unit == "ml":
        assert data["valueQuantity"]["code"] == "mL"


def test_an_irecist_state_is_a_coded_observation() -> None:
    resource = score_resource(score("irecist_state", 3.0, model="irtmon-changepoint"))
    data = json.loads(resource.model_dump_json())
    assert data["resourceType"] == "Observation" and "valueQuantity" not in data
    concept = data["valueCodeableConcept"]
    assert concept["coding"][0] == {"system": "urn:irtmon:irecist", "code": "iUPD"}
    assert concept["text"] == "iUPD (unconfirmed progression)"
    # a code outside the five categories is not guessed at: it stays the stored number
    odd = json.loads(score_resource(score("irecist_state", 7.0)).model_dump_json())
    assert odd["valueQuantity"]["value"] == 7.0


def test_probability_needs_the_name_and_the_range() -> None:
    assert is_probability(score("response_probability", 0.5))
    assert not is_probability(score("ct_immune_score", 0.5))


def test_a_bundle_reads_back_as_fhir() -> None:
    scores = [score("response_probability", 0.7), score("tumour_volume_ml", 12.0, unit="ml")]
    text = bundle(scores).model_dump_json()
    again = Bundle.model_validate_json(text)
    assert again.type == "collection"
    assert [e.resource.get_resource_type() for e in again.entry] == [
        "RiskAssessment",
        "Observation",
    ]
    assert PATIENT in text
