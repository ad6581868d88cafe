"""Training runs of the virtual biopsy (``ct-signature``) and the response model (``response``).

Both take one or more cohort manifests (see :mod:`models.response.cohort`; several are merged,
each patient in one of them) and evaluate on patients never seen in training: a test cohort
when one is given (``test_cohort``; a patient in both is refused), else a held-out share.
Patients, never timepoints, are split. Each run writes ``report.md``, ``metrics.json`` and PNG
plots into its folder and, when a models folder and version are given, saves the
artefact with its card (:func:`models.registry.save_artifact`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.evaluation.plan import EvaluationPlan
from models.exceptions import InsufficientDataError
from models.registry import ModelArtifact, load_artifact, save_artifact
from models.response import baselines as bl
from models.response import evaluate as ev
from models.response.cohort import (
    CohortData,
    ExtractionOptions,
    Progress,
    load_cohort,
    merge_cohorts,
)
from models.response.history import (
    PHENOTYPE_NAMES,
    History,
    Scan,
    Signature,
    response_inputs,
)
from models.response.response import (
    MODEL_NAME as RESPONSE_NAME,
)
from models.response.response import (
    WEIGHTS_FILE as RESPONSE_WEIGHTS,
)
from models.response.response import (
    Prediction,
    ResponseConfig,
    ResponseModel,
    fit_response,
    save_response,
)
from models.response.signature import (
    MODEL_NAME as SIGNATURE_NAME,
)
from models.response.signature import (
    WEIGHTS_FILE as SIGNATURE_WEIGHTS,
)
from models.response.signature import (
    CtSignatureModel,
    Pair,
    SignatureConfig,
    fit_signature,
    load_signature,
    pair_scans,
    save_signature,
)
from models.runtime import device as torch_device


@dataclass
class Run:
    """What a training run produced."""

    metrics: dict[str, Any]
    report: Path
    artifact: ModelArtifact | None = None
    files: dict[str, Path] = field(default_factory=dict)
    model: Any = field(default=None, repr=False, compare=False)
    """The fitted model(s) in memory, frozen, to evaluate on further cohorts: the
    :class:`~models.response.signature.CtSignatureModel` of :func:`train_ct_signature`, the
    :class:`ResponseModels` of :func:`train_response`."""


def split_patients(
    labels: Mapping[str, Any], fraction: float, seed: int
) -> tuple[list[str], list[str]]:
    """(rest, held-out) patients, stratified by label, reproducible by seed."""
    rng = np.random.default_rng(seed)
    held: list[str] = []
    for value in sorted({str(v) for v in labels.values()}):
        group = sorted(p for p, v in labels.items() if str(v) == value)
        rng.shuffle(group)
        held += group[: round(len(group) * fraction)]
    rest = sorted(set(labels) - set(held))
    return rest, sorted(held)


def _data_hash(histories: Mapping[str, History], extra: Sequence[str] = ()) -> str:
    digest = hashlib.sha256()
    for p in sorted(histories):
        h = histories[p]
        for s in h.scans:
            digest.update(f"{p}|{s.key}|{s.at.isoformat()}|{s.volume_ml:.6g}\n".encode())
            digest.update(json.dumps(dict(s.features), sort_keys=True).encode())
            if s.lesions is not None:
                digest.update(json.dumps(s.lesions.to_dict(), sort_keys=True).encode())
        for b in h.biopsies:
            digest.update(f"{p}|{b.at.isoformat()}|{b.signature}\n".encode())
        for lab in h.labs:
            digest.update(f"{p}|{lab.at.isoformat()}|{lab.pd_l1_tps}\n".encode())
    for e in extra:
        digest.update(e.encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class Selection:
    """Which part of a cohort a run uses (all of it by default), and what its extraction
    computes (:class:`~models.response.cohort.ExtractionOptions`)."""

    max_patients: int | None = None
    max_timepoint: int | None = None
    options: ExtractionOptions = field(default_factory=ExtractionOptions)


Cohorts = Path | Sequence[Path]
"""One cohort folder, or several trained on together (each patient in one of them)."""


def cohort_list(cohort: Cohorts) -> list[Path]:
    return [Path(cohort)] if isinstance(cohort, str | Path) else [Path(c) for c in cohort]


def describe_cohorts(cohort: Cohorts) -> str:
    return " + ".join(f"`{c}`" for c in cohort_list(cohort))


def _given(cohort: Cohorts | None) -> bool:
    return cohort is not None and bool(cohort_list(cohort))


def _test_words(test: Cohorts | None, fraction: float) -> str:
    """How the test patients were chosen, for the metrics and the report."""
    if not _given(test):
        return f"held-out {fraction:.0%}"
    n = len(cohort_list(test))
    return "separate cohort" if n == 1 else f"{n} separate cohorts, pooled"


@dataclass(frozen=True)
class TrainingRequest:
    """What a training run of :func:`train_ct_signature` or :func:`train_response` reads and
    writes: one object instead of the same parameters in every trainer (the CLI's ``train``
    commands and :func:`models.response.analysis.declared_analysis` build one).

    Attributes
    ----------
    cohort
        Training cohort folder(s) (several are merged, each patient in one of them).
    out
        Run folder: ``report.md``, ``metrics.json``, plots, weights.
    pathology
        The pathology-mil artefact folder (the teacher of the virtual biopsy).
    test_cohort
        Separate test cohort(s) (a patient in both is refused); without one, ``test_fraction``
        of the training patients is held out (patients, never timepoints).
    selection, test_selection
        Which part of the training and test cohorts the run uses, and what extraction computes.
    cache_dir
        Feature cache (default ``out/cache``).
    models_dir, version
        Where the artefact is saved and its version; nothing is saved unless both are set.
    workers, progress
        Processes analysing studies, and a progress callback.
    plan
        Interval settings of the held-out estimates (:mod:`models.evaluation.plan`).
    device
        Torch device of the networks (:func:`models.runtime.device`).
    """

    cohort: Cohorts
    out: Path
    pathology: Path
    test_cohort: Cohorts | None = None
    test_fraction: float = 0.3
    selection: Selection = field(default_factory=Selection)
    test_selection: Selection = field(default_factory=Selection)
    cache_dir: Path | None = None
    models_dir: Path | None = None
    version: str | None = None
    workers: int = 1
    progress: Progress | None = None
    plan: EvaluationPlan | None = None
    device: str = "cpu"

    @property
    def cache(self) -> Path:
        return self.cache_dir or self.out / "cache"

    def load(self, cohort: Cohorts, selection: Selection) -> CohortData:
        """One cohort (or several, merged) through the request's cache and workers."""
        return _load(cohort, self.cache, self.pathology, self.workers, self.progress, selection)

    def start(self, seed: int) -> tuple[CohortData, CohortData | None, CohortData, CohortData]:
        """Refuse an absent GPU before any cohort is read, make the run folder, load the
        cohorts and split them: ``(training data, test data or None, train, test)``."""
        torch_device(self.device)
        self.out.mkdir(parents=True, exist_ok=True)
        data = self.load(self.cohort, self.selection)
        test_data = (
            self.load(self.test_cohort, self.test_selection)  # type: ignore[arg-type]
            if _given(self.test_cohort)
            else None
        )
        train, test = _split_data(data, test_data, self.test_fraction, seed)
        return data, test_data, train, test


def _load(
    cohort: Cohorts,
    cache: Path,
    pathology: Path,
    workers: int,
    progress: Progress | None,
    selection: Selection = Selection(),
) -> CohortData:
    """Load (and merge) the cohorts; ``selection`` applies to each."""
    parts = []
    for folder in cohort_list(cohort):
        data = load_cohort(
            folder,
            cache,
            pathology_folder=pathology,
            workers=workers,
            progress=progress,
            max_patients=selection.max_patients,
            max_timepoint=selection.max_timepoint,
            options=selection.options,
        )
        if not data.histories:
            raise InsufficientDataError(f"no analysable study in {folder}: {data.skipped[:3]}")
        parts.append((folder, data))
    return parts[0][1] if len(parts) == 1 else merge_cohorts(parts)


def _split_data(
    data: CohortData, test: CohortData | None, fraction: float, seed: int
) -> tuple[CohortData, CohortData]:
    if test is not None:
        shared = sorted(set(data.histories) & set(test.histories))
        if shared:
            raise ValueError(
                f"{len(shared)} patients are in both the training and the test cohort "
                f"(first: {shared[0]}): a test patient must never be seen in training"
            )
        return data, test
    rest, held = split_patients(data.non_responder, fraction, seed)
    return _subset(data, rest), _subset(data, held)


def _disjoint(data: CohortData, others: Mapping[str, CohortData]) -> None:
    """Refuse a cohort sharing a patient with any of ``others`` (name -> data)."""
    for name, other in others.items():
        shared = sorted(set(data.histories) & set(other.histories))
        if shared:
            raise ValueError(
                f"{len(shared)} patients of the tuning cohort are in the {name} cohort too "
                f"(first: {shared[0]}): a tuning patient must be in neither training nor test"
            )


def _subset(data: CohortData, patients: Sequence[str]) -> CohortData:
    keep = set(patients)
    return CohortData(
        histories={p: h for p, h in data.histories.items() if p in keep},
        non_responder={p: v for p, v in data.non_responder.items() if p in keep},
        phenotype={p: v for p, v in data.phenotype.items() if p in keep},
        scan_labels=data.scan_labels,
        skipped=data.skipped,
        extraction=data.extraction,
        story_versions=data.story_versions,
    )


# ------------------------------------------------------------------------- virtual biopsy


def evaluate_signature(
    model: CtSignatureModel,
    pairs: Sequence[Pair],
    truth: Mapping[str, str],
    plan: EvaluationPlan | None = None,
) -> dict[str, Any]:
    """Agreement of the virtual biopsy with the teacher on paired scans.

    Point metrics as before, plus ``estimates``: ``ct_signature.<metric>`` with a patient
    bootstrap interval (a patient's paired scans resampled together) for the balanced
    accuracy against the teacher (all scans, conventional CT, PCCT, PCCT with spectral
    features withheld) and against the true phenotype.
    """
    if not pairs:
        return {"n_pairs": 0}
    plan = plan or EvaluationPlan()
    pats = np.array([p.patient for p in pairs])
    estimates: dict[str, Any] = {}
    scans = [p.scan for p in pairs]
    probs, til, _ = model.predict(scans)
    teacher = np.array(
        [np.argmax([p.teacher.p_inflamed, p.teacher.p_excluded, p.teacher.p_desert]) for p in pairs]
    )
    pred = model.phenotype_call(probs)
    out: dict[str, Any] = {
        "n_pairs": len(pairs),
        "n_patients": len({p.patient for p in pairs}),
        "balanced_accuracy_vs_teacher": ev.balanced_accuracy(teacher, pred),
        "balanced_accuracy_vs_teacher_argmax": ev.balanced_accuracy(teacher, probs.argmax(axis=1)),
        "til_spearman_vs_teacher": ev.spearman([p.teacher.til_density for p in pairs], til),
        "immune_score_spearman_vs_teacher": ev.spearman(
            [p.teacher.immune_score for p in pairs], probs[:, 0] + 0.5 * probs[:, 1]
        ),
    }
    estimates["ct_signature.balanced_accuracy_vs_teacher"] = ev.balanced_accuracy_interval(
        teacher, pred, pats, plan=plan
    )
    known = [i for i, p in enumerate(pairs) if truth.get(p.patient) in PHENOTYPE_NAMES]
    if known:
        true_idx = np.array([PHENOTYPE_NAMES.index(truth[pairs[i].patient]) for i in known])
        out["balanced_accuracy_vs_truth"] = ev.balanced_accuracy(true_idx, pred[known])
        out["teacher_balanced_accuracy_vs_truth"] = ev.balanced_accuracy(true_idx, teacher[known])
        estimates["ct_signature.balanced_accuracy_vs_truth"] = ev.balanced_accuracy_interval(
            true_idx, pred[known], pats[known], plan=plan
        )
    pcct = [i for i, p in enumerate(pairs) if p.scan.pcct]
    ct = [i for i, p in enumerate(pairs) if not p.scan.pcct]
    for name, idx in (("ct", ct), ("pcct", pcct)):
        if len(idx) >= 3:
            out[f"balanced_accuracy_vs_teacher_{name}"] = ev.balanced_accuracy(
                teacher[idx], pred[idx]
            )
            out[f"n_pairs_{name}"] = len(idx)
            estimates[f"ct_signature.balanced_accuracy_vs_teacher_{name}"] = (
                ev.balanced_accuracy_interval(teacher[idx], pred[idx], pats[idx], plan=plan)
            )
    if len(pcct) >= 3:
        p_no, _, _ = model.predict([scans[i] for i in pcct], use_spectral=False)
        call_no = model.phenotype_call(p_no)
        out["balanced_accuracy_vs_teacher_pcct_without_spectral"] = ev.balanced_accuracy(
            teacher[pcct], call_no
        )
        estimates["ct_signature.balanced_accuracy_vs_teacher_pcct_without_spectral"] = (
            ev.balanced_accuracy_interval(teacher[pcct], call_no, pats[pcct], plan=plan)
        )
    cm = np.zeros((3, 3), dtype=int)
    for t, q in zip(teacher, pred, strict=True):
        cm[t, q] += 1
    out["confusion_vs_teacher"] = cm.tolist()
    out["estimates"] = ev.estimates_to_json(estimates)
    return out


def evaluate_signature_on(
    model: CtSignatureModel, test: CohortData, plan: EvaluationPlan | None = None
) -> dict[str, Any]:
    """:func:`evaluate_signature` on every paired scan of a test cohort: the frozen virtual
    biopsy against the teacher (and the true phenotype). Fits nothing."""
    return evaluate_signature(model, pair_scans(test.histories), test.phenotype, plan)


def train_ct_signature(
    request: TrainingRequest,
    *,
    config: SignatureConfig | None = None,
) -> Run:
    """Train the virtual biopsy on paired scans; evaluate against the teacher on held-out
    patients (intervals by ``request.plan``); write the report; save the artefact when the
    request names a models folder and a version."""
    req = request
    config = config or SignatureConfig()
    t0 = time.perf_counter()
    data, test_data, train, test = req.start(config.seed)
    seconds = {"data": time.perf_counter() - t0}
    t0 = time.perf_counter()
    train_pairs = pair_scans(train.histories)
    model = fit_signature(train_pairs, config, device=req.device)
    seconds["training"] = time.perf_counter() - t0
    metrics = evaluate_signature_on(model, test, req.plan)
    metrics["n_train_pairs"] = len(train_pairs)
    metrics["n_train_patients"] = len(train.histories)
    metrics["test"] = _test_words(req.test_cohort, req.test_fraction)
    metrics["seconds"] = {k: round(v, 1) for k, v in seconds.items()}
    metrics["skipped"] = data.skipped + (test_data.skipped if test_data else [])
    weights = save_signature(model, req.out / SIGNATURE_WEIGHTS)
    files = {"weights": weights}
    if metrics.get("confusion_vs_teacher"):
        files["confusion"] = ev.plot_confusion(
            np.array(metrics["confusion_vs_teacher"]),
            PHENOTYPE_NAMES,
            req.out / "confusion.png",
            "Virtual biopsy vs pathology, held-out",
        )
    report = _signature_report(req.out, metrics, req.cohort, req.test_cohort, req.pathology)
    (req.out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str) + "\n")
    artifact = None
    if req.models_dir is not None and req.version is not None:
        artifact = save_artifact(
            req.models_dir,
            SIGNATURE_NAME,
            req.version,
            weights,
            training_data_hash=_data_hash(train.histories),
            metrics={k: v for k, v in metrics.items() if k != "skipped"},
            card=_signature_card(metrics, req.pathology, config),
            extra={
                "teacher": str(req.pathology),
                "train_patients": sorted(train.histories),
                "config": {**asdict(config), "mlp": asdict(config.mlp)},
            },
        )
    return Run(metrics, report, artifact, files, model)


def _signature_card(m: Mapping[str, Any], pathology: Path, config: SignatureConfig) -> str:
    families = ", ".join(f"{p}*" for p in config.inputs)
    return (
        "CT virtual biopsy: predicts the pathology model's immune signature (phenotype "
        "probabilities, TIL density) from a CT/PCCT study's imaging features "
        f"({families}; spectral only on PCCT). "
        f"Teacher: {pathology.parent.name} {pathology.name}. Trained on "
        f"{m.get('n_train_pairs')} paired scans of {m.get('n_train_patients')} patients. Held-out "
        "balanced accuracy against the teacher "
        f"{ev.fmt_ci(m.get('estimates', {}).get('ct_signature.balanced_accuracy_vs_teacher'))} "
        "(95 % patient bootstrap interval). "
        "Research use; synthetic training data unless retrained on a site's cohort."
    )


def _signature_report(
    out: Path, m: Mapping[str, Any], cohort: Cohorts, test: Cohorts | None, pathology: Path
) -> Path:
    est = m.get("estimates", {})

    def ci(key: str) -> str:
        return ev.fmt_ci(est.get(f"ct_signature.{key}"))

    rows = [
        ["paired scans (held-out) / patients", f"{m.get('n_pairs')} / {m.get('n_patients')}"],
        ["balanced accuracy vs pathology model", ci("balanced_accuracy_vs_teacher")],
        [
            "  (largest probability, no prior correction)",
            ev.fmt(m.get("balanced_accuracy_vs_teacher_argmax")),
        ],
        ["  conventional CT", ci("balanced_accuracy_vs_teacher_ct")],
        ["  PCCT", ci("balanced_accuracy_vs_teacher_pcct")],
        [
            "  PCCT with spectral features withheld",
            ci("balanced_accuracy_vs_teacher_pcct_without_spectral"),
        ],
        ["balanced accuracy vs true phenotype", ci("balanced_accuracy_vs_truth")],
        ["(teacher vs true phenotype)", ev.fmt(m.get("teacher_balanced_accuracy_vs_truth"))],
        ["TIL Spearman vs pathology model", ev.fmt(m.get("til_spearman_vs_teacher"))],
        [
            "immune-score Spearman vs pathology model",
            ev.fmt(m.get("immune_score_spearman_vs_teacher")),
        ],
    ]
    text = "\n\n".join(
        [
            "# CT virtual biopsy: held-out evaluation",
            f"Training cohort {describe_cohorts(cohort)} ({m.get('n_train_pairs')} paired scans, "
            f"{m.get('n_train_patients')} patients); test: {m.get('test')}"
            + (f" {describe_cohorts(test)}" if _given(test) else "")
            + f"; teacher `{pathology}`.",
            ev.markdown_table(["metric", "value [95 % interval]"], rows),
            "Intervals: patient bootstrap (a patient's paired scans resampled together).",
            "![confusion](confusion.png)",
        ]
    )
    path = out / "report.md"
    path.write_text(text + "\n")
    return path


# ------------------------------------------------------------------------- response


def cross_fitted_signatures(
    data: CohortData, config: SignatureConfig, folds: int = 5, device: str = "cpu"
) -> dict[str, Signature]:
    """Out-of-fold virtual biopsies of every scan (by scan key), so the response model never
    trains on immune scores of scans the virtual biopsy was fitted on."""
    patients = sorted(data.histories)
    rng = np.random.default_rng(config.seed + 7)
    order = list(rng.permutation(patients))
    out: dict[str, Signature] = {}
    for k in range(folds):
        held = set(order[k::folds])
        pairs = pair_scans({p: h for p, h in data.histories.items() if p not in held})
        model = fit_signature(pairs, config, device=device)
        scans = [s for p in sorted(held) for s in data.histories[p].scans]
        if not scans:
            continue
        probs, til, _ = model.predict(scans)
        for s, pr, t in zip(scans, probs, til, strict=True):
            out[s.key] = Signature(float(pr[0]), float(pr[1]), float(pr[2]), float(t))
    return out


def _rows(
    data: CohortData,
    signature: Callable[[Scan], Signature | None] | None,
    first_biopsy_only: bool = False,
) -> tuple[list[dict[str, float]], list[bool], list[str], list[str]]:
    rows, labels, patients, tlabels = [], [], [], []
    for p in sorted(data.histories):
        h = data.histories[p]
        if first_biopsy_only:
            h = History(h.scans, h.biopsies[:1], h.treatment)
        for s in h.scans:
            rows.append(response_inputs(h, s.at, signature))
            labels.append(data.non_responder[p])
            patients.append(p)
            tlabels.append(data.scan_labels.get(s.key, ""))
    return rows, labels, patients, tlabels


def recist_scores(data: CohortData) -> list[float]:
    """The RECIST 1.1 category at each scan as a score (:func:`~models.response.baselines.
    rule_scores`), in the row order of the response rows."""
    return bl.rule_scores(data.histories)


def _without_biopsies(data: CohortData) -> CohortData:
    """The same patients with their biopsy signatures withheld (PD-L1 stays)."""
    return CohortData(
        histories={p: History(h.scans, (), h.treatment, h.labs) for p, h in data.histories.items()},
        non_responder=data.non_responder,
        phenotype=data.phenotype,
        scan_labels=data.scan_labels,
        skipped=data.skipped,
    )


@dataclass
class ResponseModels:
    """The response model and every learned baseline, fitted and calibrated once
    (:func:`fit_response_models`) and then frozen: :func:`evaluate_response` scores any
    test cohort with them.

    Attributes
    ----------
    fitted
        Model name (:data:`models.response.baselines.MODELS`) -> the calibrated model.
    signature
        The virtual biopsy that scores the scans of the tuning and test cohorts.
    seen
        ``training`` (and ``tuning``) -> the patients the models were fitted or calibrated on.
    n_fit_patients, n_calibration_patients
        Patients the networks were fitted on, and those they were calibrated on.
    """

    fitted: dict[str, ResponseModel]
    signature: CtSignatureModel
    seen: dict[str, frozenset[str]] = field(default_factory=dict)
    n_fit_patients: int = 0
    n_calibration_patients: int = 0

    def check_unseen(self, data: CohortData, name: str) -> None:
        """Refuse a test cohort sharing a patient with the training or tuning patients.

        Raises
        ------
        ValueError
            A patient of ``data`` the models were fitted or calibrated on.
        """
        for role, patients in self.seen.items():
            shared = sorted(set(data.histories) & patients)
            if shared:
                raise ValueError(
                    f"{len(shared)} patients of the {name} cohort are in the {role} cohort too "
                    f"(first: {shared[0]}): a test patient must never be seen in training or "
                    "tuning"
                )


def fit_response_models(
    train: CohortData,
    signature_model: CtSignatureModel,
    config: ResponseConfig,
    *,
    tuning: CohortData | None = None,
    calibration_fraction: float | None = None,
    device: str = "cpu",
) -> ResponseModels:
    """Fit the response model and every baseline on ``train`` (its scans scored by
    out-of-fold virtual biopsies) and calibrate them: on ``tuning`` (its scans scored by
    ``signature_model``, which never saw them), else on a held-out ``calibration_fraction``
    of the training patients, else cross-fitted (see :func:`train_response`). Reads no test
    data."""
    oof = cross_fitted_signatures(train, signature_model.config, device=device)
    fit_d, cal_d = train, tuning
    if calibration_fraction:
        fit_p, cal_p = split_patients(train.non_responder, calibration_fraction, config.seed + 1)
        fit_d, cal_d = _subset(train, fit_p), _subset(train, cal_p)

    def oof_sig(scan: Scan) -> Signature | None:
        return oof.get(scan.key)

    cache_sig: dict[str, Signature] = {}

    def tuning_sig(scan: Scan) -> Signature:
        if scan.key not in cache_sig:
            cache_sig[scan.key] = signature_model.signature(scan)
        return cache_sig[scan.key]

    def cal_sig(scan: Scan) -> Signature | None:
        # a tuning cohort's scans: the virtual biopsy never saw them; else out-of-fold
        return tuning_sig(scan) if tuning is not None else oof_sig(scan)

    fitted: dict[str, ResponseModel] = {}
    for spec in bl.MODELS:
        rows, y, pats, _ = _rows(fit_d, oof_sig, spec.first_biopsy_only)
        if cal_d is None:
            fitted[spec.name] = fit_response(
                rows, y, pats, list(spec.inputs), config=config, device=device
            )
        else:
            crows, cy, _, _ = _rows(cal_d, cal_sig, spec.first_biopsy_only)
            fitted[spec.name] = fit_response(
                rows, y, pats, list(spec.inputs), crows, cy, config, device=device
            )
    seen = {"training": frozenset(train.histories)}
    if tuning is not None:
        seen["tuning"] = frozenset(tuning.histories)
    return ResponseModels(
        fitted=fitted,
        signature=signature_model,
        seen=seen,
        n_fit_patients=len(fit_d.histories),
        n_calibration_patients=len(cal_d.histories) if cal_d else len(fit_d.histories),
    )


@dataclass
class ResponseEvaluation:
    """The frozen response models on one test cohort (:func:`evaluate_response`).

    Attributes
    ----------
    results
        Model name -> point metrics (AUC by scan, ECE, Brier...).
    estimates
        ``response.<model>.<metric>`` (and ``...@<subgroup>``) -> estimate with its interval.
    extra
        What :func:`models.response.evaluate.response_estimates` returns beside them
        (``reliability_fu1``).
    subgroups
        Patients at the first follow-up in each subgroup.
    curves
        Model name -> (labels, scores) at the first follow-up, for the ROC plot.
    full_pred
        The full model's predictions on every test row.
    n_patients
        Test patients.
    seconds
        Time the intervals took.
    """

    results: dict[str, dict[str, Any]]
    estimates: dict[str, Any]
    extra: dict[str, Any]
    subgroups: dict[str, dict[str, int]]
    curves: dict[str, tuple[list[bool], list[float]]]
    full_pred: Prediction
    n_patients: int
    seconds: float


def evaluate_response(
    models: ResponseModels, test: CohortData, plan: EvaluationPlan | None = None
) -> ResponseEvaluation:
    """Score ``test`` with the frozen models (every baseline, the RECIST 1.1 category rule
    and the two counterfactuals: biopsy withheld, spectral withheld) and estimate every
    metric with its interval (``plan``). Fits nothing; the same models and cohort give the
    same numbers."""
    signature_model = models.signature
    fitted = models.fitted
    specs = {m.name: m for m in bl.MODELS}
    cache_sig: dict[str, Signature] = {}

    def test_sig(scan: Scan) -> Signature:
        if scan.key not in cache_sig:
            cache_sig[scan.key] = signature_model.signature(scan)
        return cache_sig[scan.key]

    def test_sig_no_spectral(scan: Scan) -> Signature:
        p, til, _ = signature_model.predict([scan], use_spectral=False)
        return Signature(float(p[0, 0]), float(p[0, 1]), float(p[0, 2]), float(til[0]))

    results: dict[str, dict[str, Any]] = {}
    curves: dict[str, tuple[list[bool], list[float]]] = {}
    scores: dict[str, np.ndarray] = {}
    full_rows, y_test, t_patients, t_labels = _rows(test, test_sig)
    full_pred = None
    for name, model in fitted.items():
        rows = full_rows if not specs[name].first_biopsy_only else _rows(test, test_sig, True)[0]
        pred = model.predict(rows)
        if name == bl.FULL:
            full_pred = pred
        scores[name] = pred.p
    scores[bl.RULE] = np.asarray(recist_scores(test), dtype=float)
    scores[bl.NO_BIOPSY] = fitted[bl.FULL].predict(_rows(_without_biopsies(test), test_sig)[0]).p
    no_spectral = [dict(r, is_pcct=0.0) for r in _rows(test, test_sig_no_spectral)[0]]
    scores[bl.NO_SPECTRAL] = fitted[bl.FULL].predict(no_spectral).p
    fu1 = [i for i, lab in enumerate(t_labels) if lab == "fu1"]
    for name, s_ in scores.items():
        results[name] = _response_metrics(y_test, s_, t_labels)
        curves[name] = ([y_test[i] for i in fu1], [float(s_[i]) for i in fu1])
        if name == bl.RULE:  # a category, not a probability
            results[name] = {k: results[name][k] for k in ("auc_fu1", "auc_followups", "n_fu1")}
    probabilities = set(fitted) | set(bl.COUNTERFACTUALS)
    t0 = time.perf_counter()
    estimates, extra = ev.response_estimates(
        y_test, t_labels, t_patients, scores, probabilities=probabilities, plan=plan
    )
    sub_est, sub_counts = bl.subgroup_estimates(
        full_rows, y_test, t_labels, t_patients, scores, plan=plan
    )
    estimates.update(sub_est)
    seconds = time.perf_counter() - t0
    for name, r in results.items():
        key = ev.model_key(name)
        for tp in ev.TIMEPOINTS:
            r.setdefault(f"auc_{tp}", ev.value(estimates, f"response.{key}.auc_{tp}"))
        if name in probabilities:  # one row per patient, equal-mass bins (was equal-width)
            r["ece_fu1"] = ev.value(estimates, f"response.{key}.ece_fu1")
    assert full_pred is not None
    return ResponseEvaluation(
        results=results,
        estimates=estimates,
        extra=extra,
        subgroups=sub_counts,
        curves=curves,
        full_pred=full_pred,
        n_patients=len(test.histories),
        seconds=seconds,
    )


def train_response(
    request: TrainingRequest,
    *,
    ct_signature: Path,
    config: ResponseConfig | None = None,
    calibration_fraction: float | None = None,
    calibration_cohort: Cohorts | None = None,
    calibration_selection: Selection = Selection(),
) -> Run:
    """Train, calibrate and evaluate the response model and its baselines (the networks
    train on ``request.device``, :func:`models.runtime.device`).

    Calibration is cross-fitted over the training patients (``config.calibration_folds``);
    with ``calibration_fraction``, that share of them is held out to calibrate instead; with
    ``calibration_cohort`` (a tuning cohort: patients in neither the training nor the test
    cohort), every model is calibrated on that cohort, whose scans get the virtual biopsy
    of the ``ct_signature`` model (it never saw them).
    The held-out estimates carry intervals (``request.plan``; see
    :func:`models.response.evaluate.response_estimates`): ``metrics["estimates"]``.
    """
    req = request
    config = config or ResponseConfig()
    t0 = time.perf_counter()
    data, test_data, train, test = req.start(config.seed)
    tune = (
        req.load(calibration_cohort, calibration_selection)  # type: ignore[arg-type]
        if _given(calibration_cohort)
        else None
    )
    if tune is not None:
        _disjoint(tune, {"training": train, "test": test})
        if calibration_fraction:
            raise ValueError("give either a calibration cohort or a calibration fraction")
    signature_model = load_signature(ct_signature)
    seconds = {"data": time.perf_counter() - t0}

    t0 = time.perf_counter()
    models = fit_response_models(
        train,
        signature_model,
        config,
        tuning=tune,
        calibration_fraction=calibration_fraction,
        device=req.device,
    )
    seconds["training"] = time.perf_counter() - t0
    evaluation = evaluate_response(models, test, req.plan)
    seconds["intervals"] = evaluation.seconds
    results, estimates = evaluation.results, evaluation.estimates
    extra, full_pred = evaluation.extra, evaluation.full_pred
    fitted = models.fitted
    baselines = [k for k in results if k != bl.FULL and k not in bl.COUNTERFACTUALS]
    best = max(baselines, key=lambda k: results[k].get("auc_fu1") or 0.0)
    metrics: dict[str, Any] = {
        "models": results,
        "estimates": ev.estimates_to_json(estimates),
        "reliability_fu1": extra.get("reliability_fu1", []),
        "best_baseline": best,
        "auc_fu1": results["full model"]["auc_fu1"],
        "auc_fu1_margin_over_best_baseline": (results["full model"]["auc_fu1"] or 0.0)
        - (results[best].get("auc_fu1") or 0.0),
        "ece_fu1": results["full model"]["ece_fu1"],
        "ece_followups": results["full model"]["ece_followups"],
        "ece_followups_if_calibrated": results["full model"].get("ece_followups_if_calibrated"),
        "interval_mean_width": float(np.mean(full_pred.upper - full_pred.lower)),
        "n_test_patients": len(test.histories),
        "n_train_patients": models.n_fit_patients,
        "n_calibration_patients": models.n_calibration_patients,
        "calibration_method": config.calibration,
        "calibration": (
            f"tuning cohort {describe_cohorts(calibration_cohort)}"  # type: ignore[arg-type]
            if tune is not None
            else f"held-out {calibration_fraction:.0%} of training patients"
            if calibration_fraction
            else f"cross-fitted over the training patients ({config.calibration_folds} folds)"
        ),
        "test": _test_words(req.test_cohort, req.test_fraction),
        "ct_signature": str(ct_signature),
        "baselines": {
            ev.model_key(m.name): {"name": m.name, "inputs": list(m.inputs)}
            for m in bl.MODELS
            if m.name != bl.FULL
        },
        "subgroups": evaluation.subgroups,
        "story_versions": sorted(
            {v for d in (data, test_data, tune) if d is not None for v in d.story_versions}
        ),
        "feature_extraction": {
            name: d.extraction.summary()
            for name, d in (("training", data), ("tuning", tune), ("test", test_data))
            if d is not None and d.extraction is not None
        },
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
    }
    files = {
        "roc": ev.plot_roc(
            evaluation.curves, req.out / "roc_fu1.png", "Non-response at the first follow-up"
        ),
    }
    if metrics["reliability_fu1"]:
        files["calibration"] = ev.plot_reliability_table(
            metrics["reliability_fu1"],
            req.out / "calibration.png",
            "Full model, first follow-up (one scan per patient)",
            estimates.get("response.full.ece_fu1"),
        )
    sig = load_artifact(ct_signature)
    # the virtual biopsy by name, version and hash, not by path: the same training writes the
    # same weights file wherever its models folder is
    pinned = {"name": sig.name, "version": sig.version, "sha256": sig.sha256}
    weights = save_response(
        fitted["full model"], req.out / RESPONSE_WEIGHTS, extra={"ct_signature": pinned}
    )
    files["weights"] = weights
    report = _response_report(req.out, metrics, req.cohort, req.test_cohort)
    (req.out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str) + "\n")
    artifact = None
    if req.models_dir is not None and req.version is not None:
        artifact = save_artifact(
            req.models_dir,
            RESPONSE_NAME,
            req.version,
            weights,
            training_data_hash=_data_hash(train.histories, [sig.sha256]),
            metrics=metrics,
            card=_response_card(metrics, sig.version),
            extra={
                "ct_signature": pinned,
                "inputs": fitted["full model"].inputs,
                "train_patients": sorted(train.histories),
            },
        )
    return Run(metrics, report, artifact, files, models)


def _response_metrics(y: Sequence[bool], p: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for lab in sorted({lab for lab in labels}):
        idx = [i for i, v in enumerate(labels) if v == lab]
        out[f"auc_{lab}"] = ev.auc([y[i] for i in idx], p[idx])
    fu1 = [i for i, v in enumerate(labels) if v == "fu1"]
    fus = [i for i, v in enumerate(labels) if v != "planning"]
    # pooled over follow-ups (two rows per patient, equal-width bins): kept for comparison
    # with earlier reports; the patient-level ECE is the estimate response.<model>.ece_fu1
    out["ece_followups"] = ev.binary_ece([y[i] for i in fus], p[fus]) if fus else None
    if fus:
        out["ece_followups_if_calibrated"] = ev.ece_if_calibrated(p[fus])
    out["brier_followups"] = ev.brier([y[i] for i in fus], p[fus]) if fus else None
    out["auc_followups"] = ev.auc([y[i] for i in fus], p[fus]) if fus else None
    out["n_fu1"] = len(fu1)
    return out


CALIBRATION_NAMES = {"beta": "beta", "platt": "Platt (temperature)", "isotonic": "isotonic"}


def _calibration_words(m: Mapping[str, Any]) -> str:
    method = m["calibration_method"]
    return f"{CALIBRATION_NAMES.get(method, method)} calibration, {m['calibration']}"


def _response_card(m: Mapping[str, Any], signature_version: str) -> str:
    est = m.get("estimates", {})
    return (
        "Response model: P(non-response) at each scan from the burden trajectories (primary "
        "lesion, every lesion, in and out of the radiotherapy field, vs baseline and nadir), "
        "new lesions and the RECIST 1.1 / iRECIST assessment, the CT virtual biopsy, the latest "
        "biopsy's pathology signature, PD-L1 TPS at baseline and the treatment context, using "
        "only what is known at that time. Virtual biopsy "
        f"ct-signature {signature_version}. Ensemble of small networks, "
        f"{_calibration_words(m)}. Held-out ({m.get('n_test_patients')} patients, 95 % "
        f"intervals): AUC before treatment {ev.fmt_ci(est.get('response.full.auc_planning'))}, "
        f"at the first follow-up {ev.fmt_ci(est.get('response.full.auc_fu1'))}; minus the "
        "burden trajectory of every lesion "
        f"{ev.fmt_ci(est.get('response.full.auc_fu1_minus_burden_all'), '+.3f')}, minus RECIST "
        f"1.1 {ev.fmt_ci(est.get('response.full.auc_fu1_minus_recist'), '+.3f')}; "
        f"ECE at the first follow-up {ev.fmt_ci(est.get('response.full.ece_fu1'))}. "
        f"Virtual clinic story {', '.join(m.get('story_versions') or ['unknown'])}. "
        "Research use; synthetic training data unless retrained on a site's cohort."
    )


def _response_report(
    out: Path, m: Mapping[str, Any], cohort: Cohorts, test: Cohorts | None
) -> Path:
    est = m.get("estimates", {})
    names = list(m["models"])
    auc_rows = [
        [name]
        + [ev.fmt_ci(est.get(f"response.{ev.model_key(name)}.auc_{tp}")) for tp in ev.TIMEPOINTS]
        + [ev.fmt_ci(est.get(f"response.{ev.model_key(name)}.auc_followups"))]
        for name in names
    ]
    diff_rows = []
    for name in names[1:]:
        keys = [f"response.full.auc_{tp}_minus_{ev.model_key(name)}" for tp in ev.TIMEPOINTS]
        fu1 = est.get(keys[1]) or {}
        p_value = (fu1.get("details") or {}).get("p_value")
        diff_rows.append(
            [name]
            + [ev.fmt_ci(est.get(k), "+.3f") for k in keys]
            + ["n/a" if p_value is None else ("< 0.001" if p_value < 0.001 else f"{p_value:.3f}")]
        )
    cal_rows = []
    for name in names:
        key = ev.model_key(name)
        ece = est.get(f"response.{key}.ece_fu1")
        if ece is None:
            continue
        details = ece.get("details") or {}
        floor = (details.get("if_calibrated_median"), details.get("if_calibrated_p90"))
        cal_rows.append(
            [
                name,
                ev.fmt_ci(est.get(f"response.{key}.calibration_slope_fu1")),
                ev.fmt_ci(est.get(f"response.{key}.calibration_intercept_fu1"), "+.3f"),
                ev.fmt_ci(ece),
                "n/a" if floor[0] is None else f"{floor[0]:.3f} ({floor[1]:.3f})",
                ev.fmt_ci(est.get(f"response.{key}.brier_fu1")),
            ]
        )
    any_boot = next((e for e in est.values() if "resamples" in (e.get("details") or {})), None)
    boot_words = (
        f"{any_boot['details']['resamples']} resamples, seed {any_boot['details']['seed']}"
        if any_boot
        else "none computed"
    )
    extraction = m.get("feature_extraction") or {}
    speed = "; ".join(
        f"{name}: {e['studies_computed']} studies analysed now, {e['studies_cached']} from the "
        f"cache"
        + (
            f", {e['studies_per_hour_per_core']} studies per hour per core"
            if e.get("studies_per_hour_per_core")
            else ""
        )
        for name, e in extraction.items()
    )
    text = "\n\n".join(
        [
            "# Response model: held-out evaluation",
            f"Training cohort {describe_cohorts(cohort)}: {m['n_train_patients']} patients to fit, "
            f"{m['n_calibration_patients']} to calibrate ({_calibration_words(m)}); "
            f"test: {m['test']}"
            + (f" {describe_cohorts(test)}" if _given(test) else "")
            + f", {m['n_test_patients']} patients. Label: non-response (pseudo-progression counts "
            "as response). Every score uses only what was known at its scan. Virtual clinic "
            f"story {', '.join(m.get('story_versions') or ['unknown'])}."
            + (f" Feature extraction: {speed}." if speed else ""),
            "## Models compared",
            "Every learned baseline is the full model's learner (same ensemble, same "
            "calibration, same training patients) on a subset of its inputs "
            "(`models/response/baselines.py`).",
            bl.baselines_table(names),
            "Intervals are 95 %. AUCs at one scan per patient and the paired differences: "
            "DeLong. AUC over all follow-ups (a patient's scans resampled together), "
            "calibration, ECE and Brier: patient bootstrap "
            f"({boot_words}). A target is met only when its interval clears it.",
            "## Non-response AUC by scan",
            ev.markdown_table(
                [
                    "model",
                    "planning (pre-treatment)",
                    "fu1",
                    "fu2",
                    "all follow-ups",
                ],
                auc_rows,
            ),
            "## Full model minus each baseline (same patients, DeLong)",
            ev.markdown_table(["baseline", "planning", "fu1", "fu2", "p at fu1"], diff_rows),
            "## Calibration at the first follow-up (one scan per patient)",
            ev.markdown_table(
                [
                    "model",
                    "slope (1 ideal)",
                    "intercept in the large (0 ideal)",
                    "ECE, 10 equal-mass bins",
                    "ECE if calibrated: median (90th pct)",
                    "Brier",
                ],
                cal_rows,
            ),
            "For comparison with earlier reports only: the full model's ECE pooled over both "
            f"follow-ups (two rows per patient, equal-width bins) is "
            f"{ev.fmt(m['ece_followups'])}; it is not a patient-level metric. Mean width of the "
            f"per-score band: {m['interval_mean_width']:.3f}.",
            "## Subgroups",
            "The same held-out rows split by what was known at the scan; AUCs and differences "
            "by DeLong, the full model's ECE and calibration slope by patient bootstrap.",
            *bl.subgroup_tables(est, names, m.get("subgroups") or {}),
            "![ROC at the first follow-up](roc_fu1.png)\n\n![calibration](calibration.png)",
        ]
    )
    path = out / "report.md"
    path.write_text(text + "\n")
    return path
