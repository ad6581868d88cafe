"""The one declared analysis of the response models (``irtmon evaluate``): train on the
training cohort, tune on the tuning cohort, evaluate once on the test cohort.

1. The virtual biopsy (``ct-signature``) is trained on the training cohort's paired scans
   (teacher: the pathology model) and evaluated against the teacher on the test cohort.
2. The response model and every baseline of :mod:`models.response.baselines` are trained on
   the training cohort, calibrated on the tuning cohort (its scans scored by that virtual
   biopsy, which never saw them) and evaluated on the test cohort.
3. With test cohorts of other story variants of the virtual clinic (``variants``), the same
   frozen models (both trained once, above) are evaluated on each of them too: the same
   estimates, their keys suffixed ``@variant:<name>``
   (:func:`models.evaluation.declaration.variant_key`), for the robustness table.

The estimates (keys ``response.<model>.<metric>`` and ``ct_signature.<metric>``, see
:func:`models.response.evaluate.response_estimates` and
:func:`models.response.train.evaluate_signature`) carry 95 % intervals from the plan the
declaration fixes (:func:`models.evaluation.plan.plan_from_declaration`): DeLong for each AUC
and each paired difference against a baseline, the patient bootstrap for the rest.

This module only trains and measures; the protocol (declaration checks, the looks log, the
results files) is :mod:`irtmon.protocol`'s, and the caller logs the look *before* calling
:func:`declared_analysis`, which reads the test cohort.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from models.evaluation.declaration import variant_key
from models.evaluation.estimate import Estimate
from models.evaluation.plan import EvaluationPlan
from models.response.cohort import Progress
from models.response.evaluate import estimates_to_json
from models.response.response import ResponseConfig
from models.response.signature import SignatureConfig
from models.response.train import (
    Run,
    Selection,
    TrainingRequest,
    evaluate_response,
    evaluate_signature_on,
    train_ct_signature,
    train_response,
)


@dataclass(frozen=True)
class AnalysisCohorts:
    """The cohort folders of one declared analysis: training, tuning, the (base story's)
    test cohort, and story variant name -> the test cohort of that variant."""

    training: Path
    tuning: Path
    test: Path
    variants: Mapping[str, Path] = field(default_factory=dict)


@dataclass
class Analysis:
    """What the declared analysis produced: every estimate, and the two runs behind them."""

    estimates: dict[str, Estimate]
    signature: Run
    response: Run
    summary: dict[str, Any] = field(default_factory=dict)


def declared_analysis(
    cohorts: AnalysisCohorts,
    out: Path,
    *,
    pathology: Path,
    plan: EvaluationPlan,
    models_dir: Path,
    versions: tuple[str, str],
    cache_dir: Path | None = None,
    signature_config: SignatureConfig | None = None,
    response_config: ResponseConfig | None = None,
    selection: Selection | None = None,
    workers: int = 1,
    progress: Progress | None = None,
    device: str = "cpu",
) -> Analysis:
    """Run the declared analysis once.

    Parameters
    ----------
    cohorts
        Training, tuning and test cohort folders (no patient in two of them), and the test
        cohorts of other story variants (no patient of them in training or tuning either).
    out
        Run folder: ``ct-signature/`` and ``response/`` with their reports, metrics, plots.
    pathology
        The pathology-mil artefact folder (the virtual biopsy's teacher).
    plan
        Interval settings (the declaration's level, bootstrap resamples, seed and method).
    cache_dir
        Feature cache shared with the ``train`` commands (default: ``out/cache``).
    models_dir, versions
        Where to save the two artefacts and their versions ``(ct-signature, response)``
        (the response model loads the virtual biopsy from its artefact folder).
    signature_config, response_config
        The models' configurations (default: the shipped defaults).
    selection
        Which studies of every cohort to use and what the extraction computes.
    workers, progress, device
        Processes analysing studies, a progress callback, the torch device.

    Returns
    -------
    Analysis
        ``estimates``: every estimate of both runs (``ct_signature.*`` and ``response.*``),
        then the same on each variant's test cohort (keys ``...@variant:<name>``).

    Raises
    ------
    ValueError
        A patient in two cohorts.
    models.exceptions.InsufficientDataError
        A cohort without analysable studies, or too few to train or calibrate.
    """
    selection = selection or Selection()
    out.mkdir(parents=True, exist_ok=True)
    cache = cache_dir or out / "cache"
    request = TrainingRequest(
        cohort=cohorts.training,
        out=out / "ct-signature",
        pathology=pathology,
        test_cohort=cohorts.test,
        selection=selection,
        test_selection=selection,
        cache_dir=cache,
        models_dir=models_dir,
        version=versions[0],
        workers=workers,
        progress=progress,
        plan=plan,
        device=device,
    )
    sig = train_ct_signature(request, config=signature_config)
    assert sig.artifact is not None and sig.artifact.folder is not None  # saved: models_dir
    resp = train_response(
        replace(request, out=out / "response", version=versions[1]),
        ct_signature=sig.artifact.folder,
        config=response_config,
        calibration_cohort=cohorts.tuning,
        calibration_selection=selection,
    )
    estimates = {
        key: Estimate.from_dict(value)
        for run in (sig, resp)
        for key, value in run.metrics.get("estimates", {}).items()
    }
    variants: dict[str, Any] = {}
    for name, folder in cohorts.variants.items():
        variants[name] = _evaluate_variant(
            request, sig, resp, name, folder, out / "variants", estimates
        )
    m = resp.metrics
    summary = {
        "n_train_patients": m.get("n_train_patients"),
        "n_tuning_patients": m.get("n_calibration_patients"),
        "n_test_patients": m.get("n_test_patients"),
        "calibration": m.get("calibration"),
        "story_versions": m.get("story_versions"),
        "ct_signature_pairs": {
            "train": sig.metrics.get("n_train_pairs"),
            "test": sig.metrics.get("n_pairs"),
        },
        "reports": {"ct_signature": str(sig.report), "response": str(resp.report)},
        "artifacts": {
            name: {"version": run.artifact.version, "sha256": run.artifact.sha256}
            for name, run in (("ct-signature", sig), ("response", resp))
            if run.artifact is not None
        },
    }
    if variants:
        summary["variants"] = variants
    return Analysis(estimates=estimates, signature=sig, response=resp, summary=summary)


def _evaluate_variant(
    request: TrainingRequest,
    sig: Run,
    resp: Run,
    name: str,
    folder: Path,
    out: Path,
    estimates: dict[str, Estimate],
) -> dict[str, Any]:
    """The frozen virtual biopsy and response models on the test cohort of story variant
    ``name``: its estimates go into ``estimates`` (keys suffixed ``@variant:<name>``) and
    ``out/<name>.json``; returns its summary. Fits nothing."""
    data = request.load(folder, request.test_selection)
    resp.model.check_unseen(data, f"{name} test")
    sig_metrics = evaluate_signature_on(sig.model, data, request.plan)
    evaluation = evaluate_response(resp.model, data, request.plan)
    found = {**sig_metrics.get("estimates", {}), **estimates_to_json(evaluation.estimates)}
    for key, value in found.items():
        estimates[variant_key(key, name)] = Estimate.from_dict(value)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(
        json.dumps({"cohort": str(folder), "estimates": found}, indent=1, default=str) + "\n"
    )
    return {
        "cohort": str(folder),
        "n_test_patients": evaluation.n_patients,
        "ct_signature_pairs": sig_metrics.get("n_pairs"),
        "story_versions": list(data.story_versions),
        "estimates": str(out / f"{name}.json"),
    }
