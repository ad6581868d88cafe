"""Same seed, same bytes; different seeds, different cohorts; story v1 writes what it wrote
before story v2 existed."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom

from clinic import generate_cohort, load_events
from tests.unit.clinic_digest import FIXTURE, PATIENTS, SEED, TIMEPOINTS, cohort_digest


def _pixels(cohort: Path) -> list[bytes]:
    files = sorted((cohort / "patients").rglob("IM-*.dcm"))
    return [pydicom.dcmread(f).PixelData for f in files]


def _files(cohort: Path) -> dict[str, bytes]:
    """Every file's bytes by relative path, the cohort folder written in them replaced, and
    ``cohort.json`` without its generation time (the evaluation protocol's stamp)."""
    out = {}
    for path in sorted(p for p in cohort.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if path.suffix in (".jsonl", ".json"):
            data = data.replace(str(cohort).encode(), b"<ROOT>")
        if path.name == "cohort.json" and path.parent == cohort:
            meta = json.loads(data)
            assert "T" in meta.pop("generated_at")  # ISO 8601, with the time
            data = json.dumps(meta, sort_keys=True).encode()
        out[path.relative_to(cohort).as_posix()] = data
    return out


def test_same_seed_same_pixels_different_seed_different(tmp_path: Path) -> None:
    a = generate_cohort(tmp_path / "a", 1, 7, n_timepoints=2)
    b = generate_cohort(tmp_path / "b", 1, 7, n_timepoints=2)
    c = generate_cohort(tmp_path / "c", 1, 8, n_timepoints=2)
    assert _pixels(a) == _pixels(b)
    slide = "slide.tiff"
    assert [p.read_bytes() for p in sorted(a.rglob(slide))] == [
        p.read_bytes() for p in sorted(b.rglob(slide))
    ]
    assert [e.event_id for e in load_events(a)] == [e.event_id for e in load_events(b)]
    assert _pixels(a) != _pixels(c)
    assert {e.event_id for e in load_events(a)}.isdisjoint(e.event_id for e in load_events(c))


def test_story_v1_writes_what_it_wrote_before_v2(tmp_path: Path) -> None:
    """The digest fixture was recorded with the generator as it stood before story v2 (commit
    62e8424); UIDs, accession and the SEG's clock are normalised there because they were random
    then. Since v2 they are not: two runs now give the same bytes, UIDs included."""
    a = generate_cohort(tmp_path / "a", PATIENTS, SEED, n_timepoints=TIMEPOINTS)
    b = generate_cohort(tmp_path / "b", PATIENTS, SEED, n_timepoints=TIMEPOINTS)
    expected = json.loads(FIXTURE.read_text())
    got = cohort_digest(a)
    assert sorted(got) == sorted(expected)
    assert [k for k in expected if got[k] != expected[k]] == []
    assert _files(a) == _files(b)
    assert json.loads((a / "cohort.json").read_text())["story_version"] == "v1"


def test_story_v2_same_seed_same_bytes(tmp_path: Path) -> None:
    a = generate_cohort(tmp_path / "a", 1, 11, n_timepoints=2, story="v2")
    b = generate_cohort(tmp_path / "b", 1, 11, n_timepoints=2, story="v2")
    c = generate_cohort(tmp_path / "c", 1, 12, n_timepoints=2, story="v2")
    files_a, files_b = _files(a), _files(b)
    assert sorted(files_a) == sorted(files_b)
    assert [k for k in files_a if files_a[k] != files_b[k]] == []
    assert _pixels(a) != _pixels(c)
    assert {e.event_id for e in load_events(a)}.isdisjoint(e.event_id for e in load_events(c))
