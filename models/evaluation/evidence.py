"""What a model card says about the evidence behind a model (issue #22 item 7).

A card names the declaration its model, or its recipe, was evaluated under, and the headline
numbers of that one evaluation with their 95 % intervals, read from the results file
(``docs/evaluation/results/<id>.json``) so the card and the results cannot drift apart. Two
cases:

* the model **is** the evaluated instance (the artefacts ``irtmon evaluate`` trained);
* the model shares the evaluated **recipe** (the same training method and default
  configuration; the code of the evaluated commit, which may have changed since) but was
  trained on other data, as the repository's reference models are (60 virtual patients, not
  the 300 of the evaluation): it is not itself evaluated, and the card says so.

The text starts with :data:`SECTION`, which :func:`models.registry.amend_card` replaces as a
whole when a newer evaluation is written into a card.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

SECTION = "Evidence:"
"""First word of the evidence part of a card (always its last part)."""

HEADLINES: dict[str, tuple[tuple[str, str], ...]] = {
    "response": (
        ("response.full.auc_planning", "AUC before treatment"),
        ("response.full.auc_fu1", "AUC at the first follow-up"),
        ("response.full.auc_fu1_minus_burden_all", "minus the burden trajectory of every lesion"),
        ("response.full.auc_fu1_minus_recist", "minus RECIST 1.1"),
        ("response.full.ece_fu1", "ECE at the first follow-up"),
    ),
    "ct-signature": (
        ("ct_signature.balanced_accuracy_vs_teacher", "balanced accuracy against its teacher"),
        ("ct_signature.balanced_accuracy_vs_truth", "against the clinic's true phenotype"),
    ),
}
"""Per model name, the estimates a card quotes (key, words), in this order."""


def _number(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out


def _estimate_words(words: str, estimate: Mapping[str, Any], signed: bool) -> str:
    v, lo, hi = (_number(estimate.get(k)) for k in ("value", "lower", "upper"))
    fmt = "+.3f" if signed else ".3f"
    if math.isnan(v):
        return f"{words} n/a"
    if math.isnan(lo) or math.isnan(hi):
        return f"{words} {v:{fmt}} (no interval)"
    return f"{words} {v:{fmt}} [{lo:{fmt}}, {hi:{fmt}}]"


def evidence_note(name: str, results: Mapping[str, Any], *, instance: bool) -> str:
    """The evidence part of the card of model ``name`` from one evaluation's ``results``
    (the JSON that :func:`irtmon.protocol.write_results` writes).

    ``instance``: the model is the evaluated artefact itself; otherwise it shares the evaluated
    recipe only (module docstring).

    Raises
    ------
    ValueError
        ``results`` without a declaration id.
    """
    declaration = results.get("declaration") or {}
    ident = declaration.get("id")
    if not ident:
        raise ValueError("results without a declaration id: not an evaluation's results file")
    path = f"docs/evaluation/results/{ident}.md"
    extra = results.get("extra") or {}
    n_test = extra.get("n_test_patients")
    n_train = extra.get("n_train_patients")
    n_tune = extra.get("n_tuning_patients")
    held_out = f" on {n_test} held-out patients" if n_test else ""
    story = declaration.get("story_version")
    story_words = f" story-{story}" if story else ""
    if instance:
        head = f"{SECTION} evaluated once under declaration {ident} ({path}){held_out}"
    else:
        trained = f", trained there on {n_train}{story_words} patients" if n_train else ""
        if n_train and n_tune and name == "response":
            trained += f" and calibrated on {n_tune} others"
        head = (
            f"{SECTION} this model is not itself evaluated under a declaration. Its recipe (the "
            f"same training method and default configuration, with the code of the commit "
            f"evaluated there{trained}) was evaluated once under "
            f"declaration {ident} ({path}){held_out}"
        )
    keys = HEADLINES.get(name, ())
    estimates = results.get("estimates") or {}
    parts = [
        _estimate_words(words, estimates[key], signed="minus" in key)
        for key, words in keys
        if key in estimates
    ]
    if not parts:
        role = "the teacher of its virtual biopsy" if name == "pathology-mil" else "part of it"
        return f"{head}, as {role}; no estimate of this model's own is declared there."
    return f"{head}, 95 % intervals: " + "; ".join(parts) + "."
