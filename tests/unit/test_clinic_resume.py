"""A killed cohort generation resumes from the patients it finished, and writes the same files
as an uninterrupted run (``cohort.json``'s ``generated_at`` aside: it keeps the first start)."""

from __future__ import annotations

import json
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clinic import generate_cohort
from clinic.cohort import PARTS_DIR, _open_parts, _run_fingerprint
from tests.unit.test_clinic_determinism import _files

SEED, PATIENTS, TIMEPOINTS = 31, 3, 2


def _kill_after_two(out: Path) -> dict:
    """Start a generation of PATIENTS in another process and SIGKILL it once the second
    patient is kept; return the run's ``run.json``."""
    code = (
        "from clinic import generate_cohort; "
        f"generate_cohort({str(out)!r}, {PATIENTS}, {SEED}, n_timepoints={TIMEPOINTS}, "
        "story='v2')"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).parents[2])
    second = out / PARTS_DIR / "patient-000002.pickle"
    deadline = time.monotonic() + 600
    try:
        while not second.exists():
            assert proc.poll() is None, "the generation ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not (out / "cohort.json").exists()  # killed before the cohort was complete
    return json.loads((out / PARTS_DIR / "run.json").read_text())


@pytest.mark.slow
def test_a_killed_generation_resumes_to_the_same_files(tmp_path: Path) -> None:
    resumed = tmp_path / "resumed"
    run = _kill_after_two(resumed)
    kept = sorted(p.name for p in (resumed / PARTS_DIR).glob("patient-*.pickle"))
    assert kept[:2] == ["patient-000001.pickle", "patient-000002.pickle"]
    result = pickle.loads((resumed / PARTS_DIR / kept[0]).read_bytes())
    first_patient = sorted((resumed / "patients" / result[2]["pseudonym"]).rglob("*.dcm"))[0]
    written_at = first_patient.stat().st_mtime_ns

    calls: list[int] = []
    generate_cohort(
        resumed, PATIENTS, SEED, n_timepoints=TIMEPOINTS, story="v2", progress=calls.append
    )
    assert calls[0] == len(kept) and calls[-1] == PATIENTS  # the kept patients were reused
    assert first_patient.stat().st_mtime_ns == written_at  # and not written again
    assert not (resumed / PARTS_DIR).exists()  # removed once the cohort is complete
    meta = json.loads((resumed / "cohort.json").read_text())
    assert meta["generated_at"] == run["started_at"]  # when the generation first started

    fresh = generate_cohort(tmp_path / "fresh", PATIENTS, SEED, n_timepoints=TIMEPOINTS, story="v2")
    a, b = _files(resumed), _files(fresh)
    assert sorted(a) == sorted(b)
    assert [k for k in a if a[k] != b[k]] == []


def test_parts_of_another_run_are_discarded(tmp_path: Path) -> None:
    parts = tmp_path / PARTS_DIR
    ours = _run_fingerprint("v2", SEED, "test", "k" * 16, TIMEPOINTS)
    started = _open_parts(parts, ours)
    (parts / "patient-000001.pickle").write_bytes(b"kept")
    assert _open_parts(parts, ours) == started  # same run: kept, same start
    assert (parts / "patient-000001.pickle").exists()
    for other in (
        _run_fingerprint("v2", SEED + 1, "test", "k" * 16, TIMEPOINTS),
        _run_fingerprint("v1", SEED, "test", "k" * 16, TIMEPOINTS),
        _run_fingerprint("v2", SEED, "small", "k" * 16, TIMEPOINTS),
        _run_fingerprint("v2", SEED, "test", "j" * 16, TIMEPOINTS),
        _run_fingerprint("v2", SEED, "test", "k" * 16, TIMEPOINTS + 1),
        _run_fingerprint("v2", SEED, "test", "k" * 16, TIMEPOINTS, "no-pcct"),
    ):
        assert other != ours
    _open_parts(parts, _run_fingerprint("v2", SEED + 1, "test", "k" * 16, TIMEPOINTS))
    assert not (parts / "patient-000001.pickle").exists()  # another seed: discarded
