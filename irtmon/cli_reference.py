"""``irtmon models reference``: train the repository's reference models from a fixed seed.

One command makes the three models a fresh deployment starts with (the pathology model, the CT
virtual biopsy, the response model): it generates a small story-v2 virtual-clinic cohort (test
size) from the seed, trains the three in turn with the ``irtmon train`` commands, marks each
model card as a reference model (story version, seed, not for clinical use) and writes
``reference.json`` (files, hashes, training-data hashes, key metrics) beside them.
:mod:`core.reference_models` registers and promotes them where the registry has none.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from core.reference_models import (
    INDEX,
    RECIPE_DECLARATION,
    REFERENCE_NAMES,
    STORY,
    recipe_results,
    reference_folder,
    reference_version,
)
from irtmon.common import TorchDevice, console, fail, get_settings

REPO = Path(__file__).resolve().parents[1]
"""The repository (its docs/evaluation/results/ hold the declared evaluations)."""

NOT_FOR_CLINICAL_USE = "Trained on the virtual clinic, not for clinical use."
TIMEPOINTS = 5
"""Scans per patient of the training cohort (planning CT and 4 follow-ups, as the demo's)."""


def _cohort(work: Path, patients: int, seed: int, workers: int) -> Path:
    """The story-v2 training cohort, generated once into ``work`` (reused when complete)."""
    from clinic.cohort import demo_key, generate_cohort

    target = work / f"cohort-{STORY}-seed{seed}-n{patients}"
    meta = target / "cohort.json"
    if meta.is_file() and (target / "events.jsonl").is_file():
        console.print(f"reusing the training cohort in {target}")
        return target
    start = time.perf_counter()
    with console.status(f"generating {patients} story-{STORY} patients (seed {seed})..."):
        # the clinic's demo key, never IRTMON_PSEUDONYM_KEY: the same seed gives the same data
        generate_cohort(
            target,
            patients,
            seed,
            "test",
            key=demo_key(seed),
            n_timepoints=TIMEPOINTS,
            workers=workers,
            story=STORY,
        )
    console.print(f"training cohort: {target} ({time.perf_counter() - start:.0f} s)")
    return target


def _key_metrics(name: str, metrics: dict[str, Any]) -> dict[str, Any]:
    keys = {
        "pathology-mil": ("balanced_accuracy", "til_spearman_intratumoral", "ece"),
        "ct-signature": ("balanced_accuracy_vs_teacher", "til_spearman_vs_teacher", "n_pairs"),
        "response": ("auc_fu1", "ece_fu1", "n_test_patients"),
    }[name]
    return {k: metrics.get(k) for k in keys}


def reference(
    out: Annotated[
        Path,
        typer.Option(help="Folder of the reference models (the repository's is reference_models)."),
    ] = Path("reference_models"),
    patients: Annotated[int, typer.Option(min=12, help="Virtual patients of the cohort.")] = 60,
    imaging_patients: Annotated[
        int,
        typer.Option(
            min=12,
            help="The first N patients train the CT virtual biopsy and the response model "
            "(their scans' feature extraction costs about a minute per patient on 2 cores); "
            "the pathology model trains on every patient's slides.",
        ),
    ] = 20,
    seed: Annotated[int, typer.Option(help="Seed of the cohort, the splits and training.")] = 1,
    workers: Annotated[int, typer.Option(min=1, help="Processes.")] = 2,
    work: Annotated[
        Path | None,
        typer.Option(help="Cohort and run reports (default <state_dir>/runs/reference)."),
    ] = None,
    replace: Annotated[bool, typer.Option(help="Replace reference models already in OUT.")] = False,
    evidence_only: Annotated[
        bool,
        typer.Option(
            help="Train nothing: write the evidence of the recipe's declared evaluation "
            "(docs/evaluation/results/) into the cards of the models in OUT, weights untouched.",
        ),
    ] = False,
    device: TorchDevice = None,
) -> None:
    """Generate a story-v2 cohort from SEED and train the three reference models into OUT,
    with their cards, hashes and training-data hashes (about 10 minutes on 2 idle cores).

    The same seed and patient count give the same cohort and the same training data hashes;
    torch on the CPU with the same thread count gives the same weights
    (tests/integration/test_reference_models.py checks it).
    """
    from irtmon.cli_models import train_ct_signature, train_response
    from irtmon.cli_pathology import train_pathology
    from models.registry import amend_card, load_artifact

    if evidence_only:
        write_evidence(out)
        return
    settings = get_settings()
    work = work or settings.state_dir / "runs" / "reference"
    version = reference_version(seed, patients)
    imaging_patients = min(imaging_patients, patients)
    kept = _resumable(out, version) if not replace else set()
    existing = [out / n for n in REFERENCE_NAMES if (out / n).is_dir() and n not in kept]
    if existing and not replace:
        raise fail(
            f"{out} already holds other reference models ({', '.join(map(str, existing))}); "
            "pass --replace to retrain them"
        )
    for folder in existing:
        shutil.rmtree(folder)
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    cohort = _cohort(work, patients, seed, workers)
    seconds["cohort"] = time.perf_counter() - t0
    runs = work / f"runs-seed{seed}-n{patients}"
    common = {"seed": seed, "workers": workers, "register": False, "device": device}
    t0 = time.perf_counter()
    if "pathology-mil" in kept:
        console.print(f"pathology-mil {version}: kept (in {out} already; --replace retrains it)")
    else:
        train_pathology(
            out=runs / "pathology",
            cohort=cohort,
            version=version,
            models_dir=out,
            patients=patients,
            **common,
        )
    seconds["pathology-mil"] = time.perf_counter() - t0
    pathology = out / "pathology-mil" / version
    t0 = time.perf_counter()
    if "ct-signature" in kept:
        console.print(f"ct-signature {version}: kept (in {out} already; --replace retrains it)")
    else:
        train_ct_signature(
            cohort=[cohort],
            out=runs / "ct-signature",
            pathology_model=str(pathology),
            version=version,
            models_dir=out,
            max_patients=imaging_patients,
            **common,
        )
    seconds["ct-signature"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    train_response(
        cohort=[cohort],
        out=runs / "response",
        pathology_model=str(pathology),
        ct_signature=str(out / "ct-signature" / version),
        version=version,
        models_dir=out,
        max_patients=imaging_patients,
        **common,
    )
    seconds["response"] = time.perf_counter() - t0

    manifest_hash = _cohort_hash(cohort)
    reference_info = {
        "story_version": STORY,
        "seed": seed,
        "patients": patients,
        "imaging_patients": imaging_patients,
        "timepoints": TIMEPOINTS,
        "cohort_manifest_sha256": manifest_hash,
        "command": (
            f"irtmon models reference --out {out} --patients {patients} "
            f"--imaging-patients {imaging_patients} --seed {seed}"
        ),
        "clinical_use": False,
    }
    models: dict[str, Any] = {}
    for name in REFERENCE_NAMES:
        folder = out / name / version
        used = patients if name == "pathology-mil" else imaging_patients
        note = (
            f"Reference model of the repository: story {STORY}, seed {seed}, the first {used} "
            f"of {patients} virtual patients. {NOT_FOR_CLINICAL_USE}"
        )
        art = amend_card(folder, card_note=note, extra={"reference": reference_info})
        art = load_artifact(folder)
        models[name] = {
            "version": art.version,
            "folder": f"{name}/{art.version}",
            "weights": art.weights,
            "sha256": art.sha256,
            "bytes": art.weights_path.stat().st_size,
            "training_data_hash": art.training_data_hash,
            "metrics": _key_metrics(name, art.metrics),
            "train_seconds": round(seconds[name], 1),
        }
    import torch

    index = {
        **reference_info,
        "note": NOT_FOR_CLINICAL_USE,
        "cohort_seconds": round(seconds["cohort"], 1),
        "trained_with": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "machine": platform.machine(),
        },
        "models": models,
    }
    (out / INDEX).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    write_evidence(out)
    console.print(f"reference models in {out} ({out / INDEX}):")
    for name, m in models.items():
        console.print(
            f"  {name:14} {m['version']}  sha256 {m['sha256'][:12]}  {m['bytes'] / 1024:.0f} KiB"
        )


def write_evidence(out: Path) -> None:
    """Write the evidence behind the reference models in ``out`` into their cards and index:
    the declared evaluation of their recipe (:data:`~core.reference_models.RECIPE_DECLARATION`,
    its results file in this repository), which did not evaluate these instances."""
    from models.evaluation.evidence import SECTION, evidence_note
    from models.registry import amend_card

    results_path = recipe_results(REPO)
    if not results_path.is_file():
        raise fail(f"no results file {results_path}: the recipe's declared evaluation is missing")
    results = json.loads(results_path.read_text(encoding="utf-8"))
    for name in REFERENCE_NAMES:
        note = evidence_note(name, results, instance=False)
        amend_card(reference_folder(out, name), card_note=note, section=SECTION)
    index_path = out / INDEX
    index = json.loads(index_path.read_text(encoding="utf-8"))
    index["evidence"] = {
        "declaration": RECIPE_DECLARATION,
        "results": str(results_path.relative_to(REPO)),
        "evaluated_instance": False,
    }
    index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    console.print(f"evidence of {RECIPE_DECLARATION} written into the cards in {out}")


def _resumable(out: Path, version: str) -> set[str]:
    """Names whose model of ``version`` is in ``out`` already, intact: a run stopped part-way
    goes on from the next model."""
    from models.exceptions import ModelError
    from models.registry import load_artifact

    kept = set()
    for name in REFERENCE_NAMES[:-1]:  # the last one written ends a run
        folders = list((out / name).glob("*/model.json"))
        if len(folders) == 1 and folders[0].parent.name == version:
            try:
                load_artifact(folders[0].parent)
            except ModelError:
                continue
            kept.add(str(name))
    return kept


def _cohort_hash(cohort: Path) -> str:
    """sha256 of the cohort's ``events.jsonl`` (every event the cohort sends, with its ids),
    its files' paths taken relative to the cohort: the same seed gives the same hash wherever
    the cohort is written (the events name their files by absolute path)."""
    text = (cohort / "events.jsonl").read_text(encoding="utf-8")
    root = json.dumps(str(cohort.resolve()))[1:-1]  # as the events spell it, escapes included
    return hashlib.sha256(text.replace(root + "/", "<cohort>/").encode("utf-8")).hexdigest()
