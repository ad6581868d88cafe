"""Same seed, same bytes; different seeds, different cohorts."""

from __future__ import annotations

from pathlib import Path

import pydicom

from clinic import generate_cohort, load_events


def _pixels(cohort: Path) -> list[bytes]:
    files = sorted((cohort / "patients").rglob("IM-*.dcm"))
    return [pydicom.dcmread(f).PixelData for f in files]


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
