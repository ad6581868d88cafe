"""A content digest of a generated cohort, to prove that story v1, and story v2's base story,
still write the same files.

Every file is hashed (SHA-256) by its path relative to the cohort. Three kinds of file are
normalised first, and only in the ways listed:

* ``events.jsonl``: the absolute cohort folder written into folder and slide paths is replaced
  by ``<ROOT>`` (the folder differs between runs);
* ``cohort.json``: ``root`` (the folder) and ``story_version`` are dropped;
* ``manifest.csv`` / ``manifest.parquet`` and ``ground_truth/<pseudonym>.json``: the
  ``story_version`` column or key is dropped (story v2 added it; it says ``v1`` for these files).

Generated UIDs are replaced by placeholders numbered in order of first appearance over the whole
cohort (files in path order), in DICOM files and in the text files alike, because until story
v2 the clinic's ``uid()`` ignored its parts (pydicom's ``generate_uid`` with ``prefix=None``
draws a random UUID) and highdicom drew a random Dimension Organization UID, so no two runs had
the same UIDs. The placeholders keep every link between objects (which SEG frame references
which slice) while dropping the random values. The Accession Number (cut from a generated UID)
and the SEG's creation date, time and contribution date-time (highdicom's clock) are replaced
by placeholders too. DICOM files are compared element by element (pixel data by
hash), everything else (slides, tile tables, label maps, identities) byte for byte, so the digest
also changes when pydicom, highdicom, tifffile or pyarrow change how they write: regenerate the
fixture (``python -m tests.unit.clinic_digest``) only after checking that such an upgrade, and
nothing in the clinic, is the cause.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import sys
from pathlib import Path

import pandas as pd
import pydicom

FIXTURE = Path(__file__).parent / "fixtures" / "clinic_v1_digest.json"
FIXTURE_V2 = Path(__file__).parent / "fixtures" / "clinic_v2_digest.json"
SEED, PATIENTS, TIMEPOINTS = 7, 1, 2
"""The cohort the fixtures describe: ``generate_cohort(out, 1, 7, n_timepoints=2)`` (test size),
story v1 and story v2 (its base story)."""


_WALL_CLOCK = frozenset(
    {"AccessionNumber", "InstanceCreationDate", "InstanceCreationTime", "ContributionDateTime"}
)
"""Cut from a generated UID (accession), or highdicom's clock when it wrote the SEG (until v2)."""
_GENERATED_UID = re.compile(r"(?:2\.25|1\.2\.826\.0\.1\.3680043\.10\.511)\.[0-9.]+")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Uids:
    """Generated UID -> ``UID#<n>`` in order of first appearance."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}

    def name(self, value: str) -> str:
        return self.names.setdefault(value, f"UID#{len(self.names)}")

    def text(self, text: str) -> str:
        return _GENERATED_UID.sub(lambda m: self.name(m.group(0)), text)


def _frame_digest(frame: pd.DataFrame, uids: _Uids) -> str:
    frame = frame.drop(columns=["story_version"], errors="ignore")
    buf = io.StringIO()
    frame.to_csv(buf, index=False)
    return _sha(uids.text(buf.getvalue()).encode())


def _dicom_lines(ds: pydicom.Dataset, uids: _Uids, depth: int = 0) -> list[str]:
    lines = []
    for elem in ds:
        if elem.tag.element == 0:  # group lengths follow the UIDs' lengths
            continue
        if elem.VR == "SQ":
            lines.append(f"{depth} {elem.tag} SQ {len(elem.value)}")
            for item in elem.value:
                lines.extend(_dicom_lines(item, uids, depth + 1))
        elif elem.keyword in _WALL_CLOCK:
            lines.append(f"{depth} {elem.tag} {elem.VR} <{elem.keyword}>")
        elif isinstance(elem.value, bytes):
            lines.append(f"{depth} {elem.tag} {elem.VR} {_sha(elem.value)}")
        elif elem.VR == "UI":
            values = (
                elem.value
                if isinstance(elem.value, list | pydicom.multival.MultiValue)
                else [elem.value]
            )
            lines.append(f"{depth} {elem.tag} UI {[uids.text(str(v)) for v in values]}")
        else:
            lines.append(f"{depth} {elem.tag} {elem.VR} {elem.value!r}")
    return lines


def _dicom_digest(path: Path, uids: _Uids) -> str:
    ds = pydicom.dcmread(path)
    lines = _dicom_lines(ds.file_meta, uids) + _dicom_lines(ds, uids)
    return _sha("\n".join(lines).encode())


def cohort_digest(cohort: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file of ``cohort``, normalised as described above."""
    cohort = Path(cohort).resolve()
    uids = _Uids()
    out: dict[str, str] = {}
    for path in sorted(p for p in cohort.rglob("*") if p.is_file()):
        rel = path.relative_to(cohort).as_posix()
        if rel == "events.jsonl":
            out[rel] = _sha(uids.text(path.read_text().replace(str(cohort), "<ROOT>")).encode())
        elif rel == "cohort.json":
            meta = json.loads(path.read_text())
            meta.pop("root", None)
            meta.pop("story_version", None)
            meta.pop("generated_at", None)  # when it was generated (the evaluation protocol's)
            out[rel] = _sha(json.dumps(meta, sort_keys=True).encode())
        elif rel == "manifest.csv":
            out[rel] = _frame_digest(pd.read_csv(path), uids)
        elif rel == "manifest.parquet":
            out[rel] = _frame_digest(pd.read_parquet(path), uids)
        elif rel.startswith("ground_truth/") and rel.endswith(".json"):
            truth = json.loads(path.read_text())
            truth.pop("story_version", None)
            out[rel] = _sha(uids.text(json.dumps(truth, sort_keys=True)).encode())
        elif rel.endswith(".dcm"):
            out[rel] = _dicom_digest(path, uids)
        else:
            out[rel] = _sha(path.read_bytes())
    return out


def main(out_dir: str, story: str = "v1") -> None:
    """Generate the fixture cohort of ``story`` into ``out_dir`` and write its digest to
    :data:`FIXTURE` (v1) or :data:`FIXTURE_V2` (v2)."""
    from clinic import generate_cohort

    fixture = FIXTURE if story == "v1" else FIXTURE_V2
    cohort = generate_cohort(Path(out_dir), PATIENTS, SEED, n_timepoints=TIMEPOINTS, story=story)
    fixture.parent.mkdir(parents=True, exist_ok=True)
    fixture.write_text(json.dumps(cohort_digest(cohort), indent=1, sort_keys=True) + "\n")
    print(f"wrote {fixture} ({len(cohort_digest(cohort))} files)")


if __name__ == "__main__":
    # python -m tests.unit.clinic_digest [OUT_DIR [v1|v2]], numpy at the fixtures' SIMD level
    # (test_clinic_determinism.FIXTURE_SIMD)
    main(*(sys.argv[1:] or ["/tmp/clinic-digest"]))
