"""Export the event models as JSON Schema files into ``schemas/json/``."""

from __future__ import annotations

import json
from pathlib import Path

from schemas.events import WIRE_REQUIRED
from schemas.topics import TOPICS

JSON_DIR = Path(__file__).parent / "json"


def schema_documents() -> dict[str, str]:
    """File name -> JSON text, one file per topic record, deterministic."""
    docs: dict[str, str] = {}
    for spec in TOPICS.values():
        schema = spec.record.model_json_schema(mode="validation")
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"irtmon/{spec.name}.schema.json"
        # On the wire these are required even though code may leave them to their defaults.
        required = schema.get("required", [])
        schema["required"] = [*WIRE_REQUIRED, *(f for f in required if f not in WIRE_REQUIRED)]
        schema["x-topic"] = {"name": spec.name, "key": spec.key}
        docs[f"{spec.name}.schema.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return docs


def export(directory: Path = JSON_DIR) -> list[Path]:
    """Write the schema files; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in schema_documents().items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written
