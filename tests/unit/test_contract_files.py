"""The exported JSON Schema files stay equal to the models, and the registry is coherent."""

from __future__ import annotations

import json

import pytest

from schemas import TOPICS
from schemas.export import JSON_DIR, schema_documents
from schemas.topics import topic


def test_json_schema_files_match_the_models() -> None:
    docs = schema_documents()
    on_disk = {p.name for p in JSON_DIR.glob("*.schema.json")}
    assert on_disk == set(docs), "run `irtmon schemas export` and commit schemas/json/"
    for name, text in docs.items():
        assert (JSON_DIR / name).read_text() == text, (
            f"{name} is stale: run `irtmon schemas export` and commit it"
        )


def test_wire_required_fields_in_every_schema() -> None:
    for text in schema_documents().values():
        schema = json.loads(text)
        assert schema["required"][:2] == ["schema_version", "event_id"]
        assert "occurred_at" in schema["required"]


def test_registry_is_keyed_by_patient_and_sized() -> None:
    assert set(TOPICS) == {
        "imaging.acquired",
        "biopsy.acquired",
        "treatment.events",
        "scores.timepoint",
        "alerts",
        "deadletter",
    }
    for spec in TOPICS.values():
        assert spec.key == "patient"
        assert spec.partitions >= 1
        assert int(spec.config["retention.ms"]) >= 7 * 24 * 3600 * 1000
    with pytest.raises(KeyError, match="known topics"):
        topic("imaging.aquired")
