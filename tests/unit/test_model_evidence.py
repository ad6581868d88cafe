"""Model cards carry the evidence behind the model (issue #22 item 7): the declaration it, or
its recipe, was evaluated under, with the numbers of that one evaluation read from its results
file, so a card cannot quote a number the results do not hold."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from core.reference_models import (
    INDEX,
    RECIPE_DECLARATION,
    REFERENCE_NAMES,
    recipe_results,
    reference_folder,
)
from models.evaluation.evidence import SECTION, evidence_note
from models.registry import amend_card, load_artifact
from tests.conftest import REPO

SOURCE = REPO / "reference_models"


@pytest.fixture(scope="module")
def results() -> dict:
    return json.loads(recipe_results(REPO).read_text())


def test_the_note_quotes_the_results_file(results: dict) -> None:
    est = results["estimates"]
    note = evidence_note("response", results, instance=False)
    assert note.startswith(SECTION) and "not itself evaluated" in note
    assert f"declaration {RECIPE_DECLARATION}" in note
    auc = est["response.full.auc_fu1"]
    assert f"{auc['value']:.3f} [{auc['lower']:.3f}, {auc['upper']:.3f}]" in note
    diff = est["response.full.auc_fu1_minus_burden_all"]
    assert f"{diff['value']:+.3f} [{diff['lower']:+.3f}, {diff['upper']:+.3f}]" in note
    assert f"on {results['extra']['n_test_patients']} held-out patients" in note
    own = evidence_note("response", results, instance=True)
    assert own.startswith(f"{SECTION} evaluated once under declaration {RECIPE_DECLARATION}")
    bac = est["ct_signature.balanced_accuracy_vs_teacher"]["value"]
    assert f"{bac:.3f}" in evidence_note("ct-signature", results, instance=True)
    teacher = evidence_note("pathology-mil", results, instance=False)
    assert "teacher" in teacher and "no estimate of this model's own" in teacher


def test_a_missing_interval_or_estimate_is_said(results: dict) -> None:
    changed = json.loads(json.dumps(results))
    changed["estimates"]["response.full.auc_fu1"]["lower"] = None
    del changed["estimates"]["response.full.ece_fu1"]
    note = evidence_note("response", changed, instance=True)
    assert "(no interval)" in note and "ECE" not in note
    with pytest.raises(ValueError, match="declaration id"):
        evidence_note("response", {"estimates": {}}, instance=True)


def test_a_newer_evidence_section_replaces_the_old(tmp_path: Path, results: dict) -> None:
    folder = tmp_path / "m"
    shutil.copytree(reference_folder(SOURCE, "response"), folder)
    before = load_artifact(folder)
    old = f"{SECTION} evaluated once under declaration x-0, 95 % intervals: nothing."
    amend_card(folder, card_note=old, section=SECTION)
    new = evidence_note("response", results, instance=True)
    after = amend_card(folder, card_note=new, section=SECTION)
    assert after.card.count(SECTION) == 1 and after.card.endswith(new)
    assert after.sha256 == before.sha256  # weights untouched


@pytest.mark.parametrize("name", REFERENCE_NAMES)
def test_the_shipped_cards_carry_the_recipes_evidence(name: str, results: dict) -> None:
    card = load_artifact(reference_folder(SOURCE, name)).card
    assert card.endswith(evidence_note(name, results, instance=False)), (
        "the reference cards are behind the results file: run "
        "`irtmon models reference --out reference_models --evidence-only`"
    )
    index = json.loads((SOURCE / INDEX).read_text())
    assert index["evidence"]["declaration"] == RECIPE_DECLARATION
    assert index["evidence"]["evaluated_instance"] is False
