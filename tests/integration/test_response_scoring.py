"""The response models in the running service: a worker stores the virtual biopsy and the
response probability of every scan with the promoted versions, ``irtmon rescore`` adds another
version's scores beside them, and the registry commands show, verify and promote.

The artefacts are trained here on synthetic histories (plumbing; the accuracy targets are
checked by ``irtmon train response`` on held-out virtual-clinic cohorts, see the README).
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest

from bench.response_inference import build_artifacts, synthetic_histories
from clinic import load_events
from core.db import connect
from core.db.registry import register
from core.publish import Publisher
from core.settings import Settings
from irtmon.stack.private import settings_env
from models.registry import load_artifact
from schemas import ImagingAcquired, TreatmentEvent, pseudonymise
from tests.conftest import REPO
from tests.integration.conftest import Workers, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def cli(settings: Settings, models_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "irtmon", *args],
        env=settings_env(settings, models_dir=models_dir),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def registered(settings: Settings, stack_dir: Path):
    """Two versions of each response model registered; none promoted after the test."""
    models_dir = stack_dir / "models"
    versions = {}
    with connect(settings, autocommit=True) as conn:
        for v, seed in (("it-1", 0), ("it-2", 1)):
            folder = stack_dir / f"response-artefacts-{v}"
            if not (folder / "response" / v).is_dir():
                folder.mkdir(parents=True, exist_ok=True)
                build_artifacts(folder, synthetic_histories(40, 4, 30, seed=seed), version=v)
            sig = load_artifact(folder / "ct-signature" / v)
            resp = load_artifact(folder / "response" / v)
            register(conn, sig)
            register(conn, resp)
            versions[v] = (sig, resp)
    yield models_dir, versions
    with connect(settings, autocommit=True) as conn:
        conn.execute(
            "UPDATE model_registry SET promoted = false, promoted_at = NULL "
            "WHERE name IN ('ct-signature', 'response')"
        )


def fresh_patient_events(cohort: Path) -> list:
    """One cohort patient's imaging and treatment events under a new pseudonym and new ids."""
    events = load_events(cohort)
    first = next(e for e in events if isinstance(e, ImagingAcquired)).patient
    new = pseudonymise(f"it-response-{uuid.uuid4()}", "integration-response-key-0123456789")
    out = []
    for e in events:
        if e.patient == first and isinstance(e, ImagingAcquired | TreatmentEvent):
            out.append(e.model_copy(update={"event_id": uuid.uuid4(), "patient": new}))
    return out


@pytest.mark.timeout(900)
def test_worker_scores_with_promoted_models_and_rescore_adds_a_version(
    settings: Settings, workers: Workers, cohort: Path, registered
) -> None:
    models_dir, versions = registered
    (sig1, resp1), (sig2, _resp2) = versions["it-1"], versions["it-2"]
    for name in ("ct-signature", "response"):
        r = cli(settings, models_dir, "models", "promote", name, "it-1")
        assert r.returncode == 0, r.stderr[-2000:]
        assert "irtmon rescore --model" in r.stdout

    events = fresh_patient_events(cohort)
    patient = events[0].patient
    scans = [e for e in events if isinstance(e, ImagingAcquired)]
    with Publisher(settings) as pub:
        pub.publish(sorted(events, key=lambda e: e.occurred_at))
    workers.start()

    def scores(name: str) -> list[tuple]:
        with psycopg.connect(settings.dsn, autocommit=True) as conn:
            return conn.execute(
                "SELECT source_event_id, model_version, value, lower, upper, inputs "
                "FROM timepoint_scores WHERE patient = %s AND score_name = %s "
                "ORDER BY observed_at, model_version",
                (patient, name),
            ).fetchall()

    wait_for(lambda: len(scores("response_probability")) == len(scans), 600, "response scores")
    rp = scores("response_probability")
    immune = scores("ct_immune_score")
    assert {r[0] for r in rp} == {e.event_id for e in scans}
    assert {r[1] for r in rp} == {"it-1"} and {r[1] for r in immune} == {"it-1"}
    assert len(immune) == len(scans)
    for _, _, value, lower, upper, inputs in rp:
        assert 0.0 < value < 1.0 and lower <= value <= upper
        assert inputs  # the scans it was computed from
    # the response at scan k was computed from scans 0..k only
    assert [len(r[5]) for r in rp] == list(range(1, len(scans) + 1))
    before = {r[0]: r[2] for r in rp}

    r = cli(settings, models_dir, "rescore", "--model", "response", "--version", "it-2")
    assert r.returncode == 0, r.stderr[-2000:]
    rp = scores("response_probability")
    assert sorted({r[1] for r in rp}) == ["it-1", "it-2"]
    assert len(rp) == 2 * len(scans)
    assert {r[0]: r[2] for r in rp if r[1] == "it-1"} == before  # the old version is kept
    again = cli(settings, models_dir, "rescore", "--model", "response", "--version", "it-2")
    assert again.returncode == 0 and len(scores("response_probability")) == 2 * len(scans)

    listed = cli(settings, models_dir, "models", "list", "--name", "response")
    assert listed.returncode == 0 and "it-1" in listed.stdout and "it-2" in listed.stdout
    shown = cli(settings, models_dir, "models", "show", "response")
    assert shown.returncode == 0 and "(verified)" in shown.stdout
    assert resp1.sha256 in shown.stdout and "(promoted)" in shown.stdout
    assert sig1.sha256 != sig2.sha256
