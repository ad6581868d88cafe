"""The committed reference models (reference_models/): verified, marked, small, and they score.

Retraining them with their one command and comparing is the slow test
tests/integration/test_reference_models.py.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from clinic.slides import render_slide, write_pyramid
from clinic.story_v2 import params
from clinic.story_v2.patient import DESERT_CUT, INFLAMED_CUT, phenotype_of
from core.reference_models import INDEX, REFERENCE_NAMES, STORY, reference_folder
from core.settings import Settings
from models.pathology import analyse_slide
from models.registry import load_artifact
from models.response.history import Scan
from models.response.response import load_response
from models.response.signature import load_signature
from schemas.enums import ImmunePhenotype
from tests.conftest import REPO

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


def _story_v2_slide(folder: Path, reading: float, seed: int) -> Path:
    """A slide as story v2 renders a biopsy whose infiltration reading is ``reading`` (SD),
    at the training cohort's size (2048 px)."""
    intra = params.INFLAMED_TIL_PER_MM2 * math.exp(params.LOG_TIL_PER_SD * (reading - INFLAMED_CUT))
    stromal = params.STROMAL_TIL_AT_DESERT_THRESHOLD * math.exp(
        params.STROMAL_LOG_TIL_PER_SD * (reading - DESERT_CUT)
    )
    image, tiles, _ = render_slide(
        np.random.default_rng(seed), phenotype_of(reading), intra, stromal, 2048
    )
    folder.mkdir(parents=True, exist_ok=True)
    write_pyramid(folder / "slide.tiff", image, description="story v2 test slide")
    tiles.to_parquet(folder / "slide.tiles.parquet", index=False)
    return folder / "slide.tiff"


def test_the_pathology_model_scores_slides(tmp_path: Path) -> None:
    folder = reference_folder(SOURCE, "pathology-mil")
    high, low = INFLAMED_CUT + 1.0, DESERT_CUT - 1.0
    assert (phenotype_of(high), phenotype_of(low)) == (
        ImmunePhenotype.INFLAMED,
        ImmunePhenotype.DESERT,
    )
    inflamed = analyse_slide(_story_v2_slide(tmp_path / "i", high, 3), folder, mc_samples=0)
    desert = analyse_slide(_story_v2_slide(tmp_path / "d", low, 4), folder, mc_samples=0)
    for result in (inflamed, desert):
        assert sum(result.probabilities.values()) == pytest.approx(1.0)
        assert result.provenance.model_version == folder.name
    # a slide of an inflamed biopsy reads as more inflamed, and richer in lymphocytes, than a
    # desert one's
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
