"""The committed reference models (reference_models/): verified, marked, small, and they score.

Retraining them with their one command and comparing is the slow test
tests/integration/test_reference_models.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from core.reference_models import INDEX, REFERENCE_NAMES, STORY, reference_folder
from core.settings import Settings
from models.pathology import analyse_slide
from models.registry import load_artifact
from models.response.history import Scan
from models.response.response import load_response
from models.response.signature import load_signature
from schemas.enums import ImmunePhenotype
from tests.conftest import REPO
from tests.unit.pathology.conftest import make_slide

SOURCE = REPO / "reference_models"
MAX_BYTES = 2 * 1024 * 1024
"""Each reference weights file stays under 2 MiB (they are small networks)."""


@pytest.fixture(scope="module")
def index() -> dict:
    return json.loads((SOURCE / INDEX).read_text())


def test_the_settings_point_at_the_repository_folder() -> None:
    assert Settings().reference_models_dir == SOURCE
    assert Settings().reference_models is True


@pytest.mark.parametrize("name", [str(n) for n in REFERENCE_NAMES])
def test_each_model_is_verified_marked_and_small(name: str, index: dict) -> None:
    art = load_artifact(reference_folder(SOURCE, name))  # weights against the card's hash
    listed = index["models"][name]
    assert (art.version, art.sha256, art.training_data_hash) == (
        listed["version"],
        listed["sha256"],
        listed["training_data_hash"],
    )
    assert art.training_data_hash
    assert art.weights_path.stat().st_size == listed["bytes"] < MAX_BYTES
    assert "not for clinical use" in art.card and f"story {STORY}" in art.card
    ref = art.extra["reference"]
    assert ref["story_version"] == STORY and ref["clinical_use"] is False
    assert (ref["seed"], ref["patients"]) == (index["seed"], index["patients"])


def test_the_index_says_how_they_were_made(index: dict) -> None:
    assert index["story_version"] == STORY
    assert index["command"].startswith("irtmon models reference ")
    assert f"--seed {index['seed']}" in index["command"]
    assert len(index["cohort_manifest_sha256"]) == 64


def test_the_response_model_names_the_reference_virtual_biopsy() -> None:
    resp = load_artifact(reference_folder(SOURCE, "response"))
    sig = load_artifact(reference_folder(SOURCE, "ct-signature"))
    pinned = resp.extra["ct_signature"]
    assert (pinned["version"], pinned["sha256"]) == (sig.version, sig.sha256)


def test_the_pathology_model_scores_slides(tmp_path: Path) -> None:
    folder = reference_folder(SOURCE, "pathology-mil")
    inflamed = analyse_slide(
        make_slide(tmp_path / "inflamed", ImmunePhenotype.INFLAMED, 3), folder, mc_samples=0
    )
    desert = analyse_slide(
        make_slide(tmp_path / "desert", ImmunePhenotype.DESERT, 4), folder, mc_samples=0
    )
    for result in (inflamed, desert):
        assert sum(result.probabilities.values()) == pytest.approx(1.0)
        assert result.provenance.model_version == folder.name
    # an inflamed slide reads as more inflamed, and richer in lymphocytes, than a desert
    assert inflamed.probabilities["inflamed"] > desert.probabilities["inflamed"]
    assert inflamed.til_score > desert.til_score


def test_the_virtual_biopsy_and_the_response_model_score() -> None:
    sig_art = load_artifact(reference_folder(SOURCE, "ct-signature"))
    sig = load_signature(sig_art.folder, sig_art.sha256)
    at = datetime(2026, 1, 5, tzinfo=UTC)
    probs, til, spread = sig.predict([Scan(at=at, volume_ml=12.0, diameter_mm=30.0)])
    assert probs.shape == (1, 3) and probs.sum() == pytest.approx(1.0, abs=1e-5)
    assert np.isfinite(til).all() and (til >= 0).all() and np.isfinite(spread).all()

    resp_art = load_artifact(reference_folder(SOURCE, "response"))
    model = load_response(resp_art.folder, resp_art.sha256)
    rows = [{k: 0.0 for k in model.inputs}, {k: 1.0 for k in model.inputs}]
    pred = model.predict(rows)
    assert pred.p.shape == (2,) and ((pred.p >= 0) & (pred.p <= 1)).all()
    assert (pred.lower <= pred.p).all() and (pred.p <= pred.upper).all()
    assert np.array_equal(model.predict(rows).p, pred.p)  # deterministic
