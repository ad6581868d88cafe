"""The bad-input corpus: ``manifest.json`` lists each case, the topic it is sent to and the
error class and words its refusal must carry; ``files/`` holds the bad files the events point at
(rebuilt by ``make_files.py`` from pydicom's real test files)."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).parent
MANIFEST = HERE / "manifest.json"
FILES = HERE / "files"
HUGE = 100_000


@dataclass(frozen=True)
class Case:
    name: str
    topic: str
    what: str
    error_class: str
    reason: str
    patient: str
    payload: bytes


def copy_files(root: Path) -> Path:
    """Copy ``files/`` into ``root`` (a data root of the reader), links kept as links."""
    target = root / f"bad-inputs-{uuid.uuid4().hex[:8]}"
    shutil.copytree(FILES, target, symlinks=True)
    return target


def load_cases(files: Path, new_patient: Callable[[str], str]) -> list[Case]:
    """Every case of the manifest with its placeholders filled in."""
    out = []
    for spec in json.loads(MANIFEST.read_text(encoding="utf-8"))["cases"]:
        patient = new_patient(spec["name"])
        values = {
            "{files}": str(files),
            "{patient}": patient,
            "{event_id}": str(uuid.uuid4()),
            "{huge}": "S" * HUGE,
        }
        if "raw_hex" in spec:
            payload = bytes.fromhex(spec["raw_hex"])
        else:
            text = spec["raw"] if "raw" in spec else json.dumps(spec["message"])
            for placeholder, value in values.items():
                text = text.replace(placeholder, value)
            payload = text.encode()
        if "pad_to_bytes" in spec:
            payload += b" " * (spec["pad_to_bytes"] - len(payload))
        out.append(
            Case(
                spec["name"],
                spec["topic"],
                spec["what"],
                spec["error_class"],
                spec["reason"],
                patient,
                payload,
            )
        )
    return out
