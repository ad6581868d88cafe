"""Scores as FHIR resources: a RiskAssessment per probability, an Observation otherwise, for
any score name, with the model and only the pseudonym."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from fhir.resources.R4B.bundle import Bundle

from schemas import TimepointScore, score_event_id
from schemas.fhir import (
    PSEUDONYM_SYSTEM,
    bundle,
    is_probability,
    lesion_observations,
    score_resource,
)

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


def _lesion(tid: str, uid: str, organ: str, role: str, **kw: object) -> dict:
    row = {
        "tracking_id": tid,
        "tracking_uid": uid,
        "organ": organ,
        "role": role,
        "status": "seen",
        "is_node": organ == "lymph_node",
        "in_field": False,
        "long_axis_mm": 24.5,
        "short_axis_mm": 16.25,
        "volume_ml": 3.5,
        "origin": "annotated",
        "failure": None,
        "model_name": "irtmon-lesions",
        "model_version": "1.0",
    }
    row.update(kw)
    return row


def test_lesions_are_observations_grouped_per_scan() -> None:
    assessment = {
        "source_event_id": SOURCE,
        "observed_at": datetime(2026, 4, 12, 9, 0, tzinfo=UTC),
        "timepoint": 1,
        "irecist_state": 3,
        "recist": "PD",
        "target_response": "SD",
        "nontarget_response": "non-CR/non-PD",
        "reason": "iUPD: new lesions",
        "sum_diameters_mm": 61.3,
        "in_field_sum_mm": 24.5,
        "out_of_field_sum_mm": 52.8,
        "new_lesions": 1,
        "model_name": "irtmon-lesions",
        "model_version": "1.0",
    }
    lesions = [
        _lesion("L1", "1.2.3.1", "lung", "target", in_field=True),
        _lesion("L2", "1.2.3.2", "lymph_node", "target"),
        _lesion(
            "L3",
            "1.2.3.3",
            "liver",
            "non_target",
            status="not_seen",
            long_axis_mm=None,
            short_axis_mm=None,
            volume_ml=None,
            origin=None,
        ),
        _lesion("L4", "1.2.3.4", "adrenal", "new_target"),
    ]
    group, *members = [
        json.loads(o.model_dump_json()) for o in lesion_observations(PATIENT, assessment, lesions)
    ]
    assert len(members) == 4
    assert group["resourceType"] == "Observation"
    assert [m["reference"] for m in group["hasMember"]] == [f"urn:uuid:{m['id']}" for m in members]
    comp = {c["code"]["coding"][0]["code"]: c for c in group["component"]}
    assert comp["sum-diameters"]["valueQuantity"] == {
        "value": 61.3,
        "unit": "mm",
        "system": "http://unitsofmeasure.org",
        "code": "mm",
    }
    assert comp["irecist"]["valueCodeableConcept"]["coding"][0]["code"] == "iUPD"
    assert comp["recist"]["valueCodeableConcept"]["coding"][0]["code"] == "PD"
    assert comp["new-lesions"]["valueInteger"] == 1
    lung, node, gone, new = members
    assert lung["bodySite"]["coding"][0] == {
        "system": "http://snomed.info/sct",
        "code": "39607008",
        "display": "Lung structure",
    }
    parts = {c["code"]["coding"][0]["code"]: c for c in lung["component"]}
    assert parts["tracking-id"]["valueString"] == "L1"
    assert parts["tracking-uid"]["valueString"] == "1.2.3.1"
    assert parts["recist-role"]["valueCodeableConcept"]["coding"][0]["code"] == "target"
    assert parts["in-field"]["valueBoolean"] is True
    assert parts["long-axis"]["valueQuantity"]["value"] == 24.5
    assert parts["volume"]["valueQuantity"]["code"] == "mL"
    assert lung["valueQuantity"]["value"] == 24.5  # the RECIST diameter: long axis
    assert node["valueQuantity"]["value"] == 16.25  # a node: its short axis
    assert gone["valueQuantity"]["value"] == 0.0 and "long-axis" not in str(gone["component"])
    assert new["bodySite"]["text"] == "adrenal"
    assert all(m["subject"]["identifier"]["value"] == PATIENT for m in members)
    # the same scan gives the same ids (an EHR updates, never duplicates)
    again = lesion_observations(PATIENT, assessment, lesions)
    assert [o.id for o in again] == [group["id"], *(m["id"] for m in members)]
    b = json.loads(bundle([], again).model_dump_json())
    assert len(b["entry"]) == 5 and b["entry"][0]["fullUrl"] == f"urn:uuid:{group['id']}"


def test_a_not_evaluable_scan_reports_no_sums() -> None:
    assessment = {
        "source_event_id": SOURCE,
        "observed_at": datetime(2026, 4, 12, 9, 0, tzinfo=UTC),
        "timepoint": 1,
        "irecist_state": 5,
        "recist": "NE",
        "target_response": "NE",
        "nontarget_response": "non-CR/non-PD",
        "reason": "iNE: not evaluable",
        "sum_diameters_mm": 12.0,  # only the lesions seen
        "in_field_sum_mm": 0.0,
        "out_of_field_sum_mm": 12.0,
        "new_lesions": 0,
        "model_name": "irtmon-lesions",
        "model_version": "1.0",
    }
    lesions = [_lesion("L1", "1.2.3.1", "lung", "target", in_field=True)]
    group = json.loads(lesion_observations(PATIENT, assessment, lesions)[0].model_dump_json())
    comp = {c["code"]["coding"][0]["code"]: c for c in group["component"]}
    for name in ("sum-diameters", "in-field-sum", "out-of-field-sum"):
        assert "valueQuantity" not in comp[name]
        assert comp[name]["dataAbsentReason"]["text"] == "not evaluable"
    assert comp["irecist"]["valueCodeableConcept"]["coding"][0]["code"] == "iNE"
    assert comp["new-lesions"]["valueInteger"] == 0
