"""Metrics, plots and the Markdown report of the virtual biopsy and the response model.

The held-out estimates with their intervals (:func:`response_estimates`,
:func:`balanced_accuracy_interval`) come from :mod:`models.evaluation`: DeLong for each AUC
at one scan per patient and for each paired difference against a baseline, a patient
bootstrap for the rest, calibration and ECE at the first follow-up with one row per patient.
Their keys (``response.<model>.<metric>``) are the metric names a declaration refers to
(``docs/evaluation/README.md``). The older point metrics (:func:`auc`, :func:`binary_ece`...)
stay for the callers that use them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from models.evaluation import metrics as wm
from models.evaluation.calibration import calibration_summary, ece_noise_floor, reliability_table
from models.evaluation.compare import difference_interval, metric_interval
from models.evaluation.delong import delong_auc, delong_difference
from models.evaluation.estimate import Estimate, IntervalMethod
from models.evaluation.plan import EvaluationPlan

TIMEPOINTS = ("planning", "fu1", "fu2")
"""Scans at which the response AUC is reported: pre-treatment, first and second follow-up."""
REFERENCE_MODEL = "full model"
MODEL_KEYS = {
    "full model": "full",
    "RECIST 1.1, all target lesions": "recist",
    "burden trajectory, all lesions": "burden_all",
    "burden trajectory, primary lesion": "burden",
    "in-field burden alone": "in_field",
    "out-of-field burden alone": "out_of_field",
    "PD-L1 TPS alone": "pd_l1",
    "pathology at baseline alone": "pathology",
    "RECIST 1.1 category rule": "recist_rule",
    "full model, biopsy withheld": "full_no_biopsy",
    "full model, spectral withheld": "full_no_spectral",
    # names of earlier reports
    "burden trajectory alone": "burden",
    "RECIST 1.1 rule alone": "recist_rule",
}
"""Short names of the response models in metric keys (``response.<key>.<metric>``). Until
2026-12 ``recist`` was the RECIST 1.1 category used as a score (now ``recist_rule``); it is
now the learned ordinal RECIST 1.1 baseline over every target lesion."""


def auc(y: Sequence[bool], score: Sequence[float]) -> float | None:
    """ROC AUC, or None when only one class is present."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y, dtype=int)
    if len(set(y.tolist())) < 2:
        return None
    return float(roc_auc_score(y, np.asarray(score, dtype=float)))


def binary_ece(y: Sequence[bool], p: Sequence[float], n_bins: int = 10) -> float:
    """Expected calibration error of P(y=1) over equal-width bins."""
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ece = 0.0
    for lo, hi in pairwise(edges):
        sel = (p >= lo) & (p <= hi) if lo == 0 else (p > lo) & (p <= hi)
        if sel.any():
            ece += sel.mean() * abs(y[sel].mean() - p[sel].mean())
    return float(ece)


def ece_if_calibrated(
    p: Sequence[float], n_bins: int = 10, draws: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """(median, 90th percentile) of the ECE that a perfectly calibrated model would show on
    these predictions: outcomes drawn as Bernoulli(p). With a few hundred predictions this
    noise floor is itself a few per cent, so an observed ECE is read against it."""
    rng = np.random.default_rng(seed)
    p = np.asarray(p, dtype=float)
    values = [binary_ece(rng.uniform(size=p.size) < p, p, n_bins) for _ in range(draws)]
    return float(np.median(values)), float(np.percentile(values, 90))


def brier(y: Sequence[bool], p: Sequence[float]) -> float:
    return float(np.mean((np.asarray(p, float) - np.asarray(y, float)) ** 2))


def balanced_accuracy(y: Sequence[int], pred: Sequence[int]) -> float:
    """Mean recall over the classes present in ``y``. A prediction of a class absent from a
    small test set counts as an error, as it should; sklearn's warning about it is not shown."""
    import warnings

    from sklearn.metrics import balanced_accuracy_score

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        return float(balanced_accuracy_score(np.asarray(y), np.asarray(pred)))


def spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    from scipy.stats import spearmanr

    if len(a) < 3:
        return None
    return float(spearmanr(a, b).statistic)


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_roc(
    curves: Mapping[str, tuple[Sequence[bool], Sequence[float]]], path: Path, title: str
) -> Path:
    """ROC curves of several scores on the same labels (PNG)."""
    from sklearn.metrics import roc_curve

    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.0, 4.6), dpi=110)
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
    for name, (y, s) in curves.items():
        a = auc(y, s)
        if a is None:
            continue
        fpr, tpr, _ = roc_curve(np.asarray(y, int), np.asarray(s, float))
        ax.plot(fpr, tpr, label=f"{name} (AUC {a:.3f})")
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate (non-responders flagged)")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_reliability(
    y: Sequence[bool], p: Sequence[float], path: Path, title: str, n_bins: int = 10
) -> Path:
    """Reliability diagram of P(non-response) with bin counts (PNG)."""
    plt = _plt()
    y = np.asarray(y, float)
    p = np.asarray(p, float)
    fig, ax = plt.subplots(figsize=(5.0, 4.6), dpi=110)
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect")
    xs, ys, ns = [], [], []
    edges = np.linspace(0, 1, n_bins + 1)
    for lo, hi in pairwise(edges):
        sel = (p >= lo) & (p <= hi) if lo == 0 else (p > lo) & (p <= hi)
        if sel.any():
            xs.append(p[sel].mean())
            ys.append(y[sel].mean())
            ns.append(int(sel.sum()))
    ax.plot(xs, ys, marker="o", label=f"model (ECE {binary_ece(y, p, n_bins):.3f})")
    for x, yy, n in zip(xs, ys, ns, strict=True):
        ax.annotate(str(n), (x, yy), textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.set_xlabel("predicted P(non-response)")
    ax.set_ylabel("observed fraction of non-responders")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_confusion(cm: np.ndarray, names: Sequence[str], path: Path, title: str) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.4, 4.0), dpi=110)
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center")
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("virtual biopsy (CT)")
    ax.set_ylabel("pathology model (slide)")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def fmt(v: Any, spec: str = ".3f") -> str:
    return "n/a" if v is None else format(v, spec)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


# ------------------------------------------------------------------------- with intervals


def model_key(name: str) -> str:
    """The short name of a model in metric keys (``full``, ``burden``...)."""
    return MODEL_KEYS.get(name) or re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def unavailable(reason: str, n: int, level: float, method: IntervalMethod) -> Estimate:
    """An estimate that cannot be computed here, with the reason (reported, never hidden)."""
    nan = float("nan")
    return Estimate(nan, nan, nan, level, method, n, {"reason": reason})


def _both_classes(y: np.ndarray) -> str | None:
    pos, neg = int(y.sum()), int((~y).sum())
    if pos < 2 or neg < 2:
        return f"{pos} non-responders and {neg} responders: too few for an AUC"
    return None


def response_estimates(
    y: Sequence[bool],
    labels: Sequence[str],
    patients: Sequence[str],
    scores: Mapping[str, Sequence[float]],
    *,
    probabilities: Collection[str] = (),
    reference: str = REFERENCE_MODEL,
    plan: EvaluationPlan | None = None,
    pooled: bool = True,
    suffix: str = "",
) -> tuple[dict[str, Estimate], dict[str, Any]]:
    """Held-out estimates of the response models with their intervals.

    Parameters
    ----------
    y
        Non-response per row (the patient's label on each of its scans).
    labels
        Timepoint label per row (``planning``, ``fu1``, ``fu2``...); one row per patient and
        label is expected (a second row of a patient at one label is refused).
    patients
        Patient per row.
    scores
        Model name -> score per row (same rows); higher = more likely non-response.
    probabilities
        The models whose scores are calibrated probabilities: only they get calibration,
        ECE and Brier estimates (the RECIST category is a score, not a probability).
    reference
        The model compared against every other (the baselines).
    plan
        Interval settings (level, bootstrap resamples and seed).
    pooled
        Also the AUC over all follow-ups (a patient bootstrap per model); off for subgroups.
    suffix
        Appended to every key (``@pcct``: the estimates of a subgroup).

    Returns
    -------
    estimates, extra
        ``estimates``: key -> :class:`Estimate`, keys ``response.<model>.auc_<timepoint>``
        (DeLong), ``response.<model>.auc_followups`` (all follow-ups, patient bootstrap, a
        patient's rows resampled together), ``response.<reference>.auc_<timepoint>_minus_
        <baseline>`` (DeLong, paired), and for the probabilities at the first follow-up
        ``calibration_slope_fu1``, ``calibration_intercept_fu1``, ``ece_fu1`` (equal-mass bins,
        with the noise floor in its details) and ``brier_fu1``, plus the reference's
        ``brier_fu1_minus_<baseline>`` (paired bootstrap). ``extra``: ``reliability_fu1``,
        the reference's reliability table at the first follow-up.
    """
    plan = plan or EvaluationPlan()
    yy = np.asarray(y, dtype=bool)
    lab = np.asarray(labels)
    pat = np.asarray(patients)
    sc = {name: np.asarray(s, dtype=float) for name, s in scores.items()}
    boot = {"n_resamples": plan.resamples, "seed": plan.seed, "level": plan.level}
    out: dict[str, Estimate] = {}
    extra: dict[str, Any] = {}
    baselines = [m for m in sc if m != reference]
    ref = model_key(reference)
    for tp in TIMEPOINTS:
        idx = np.flatnonzero(lab == tp)
        if idx.size == 0:
            continue
        why = _both_classes(yy[idx])
        for name, s in sc.items():
            key = f"response.{model_key(name)}.auc_{tp}"
            out[key] = (
                unavailable(why, idx.size, plan.level, IntervalMethod.DELONG)
                if why
                else delong_auc(yy[idx], s[idx], groups=pat[idx], level=plan.level)
            )
        if reference not in sc:
            continue
        for name in baselines:
            key = f"response.{ref}.auc_{tp}_minus_{model_key(name)}"
            out[key] = (
                unavailable(why, idx.size, plan.level, IntervalMethod.DELONG)
                if why
                else delong_difference(
                    yy[idx], sc[reference][idx], sc[name][idx], groups=pat[idx], level=plan.level
                )
            )
    fus = np.flatnonzero(lab != "planning")
    if pooled and fus.size and not _both_classes(yy[fus]):
        for name, s in sc.items():
            out[f"response.{model_key(name)}.auc_followups"] = metric_interval(
                wm.auc,
                yy[fus],
                s[fus],
                groups=pat[fus],
                stratify=True,
                method=plan.method,
                **boot,
            )
    fu1 = np.flatnonzero(lab == "fu1")
    if fu1.size == 0 or _both_classes(yy[fu1]):
        return _suffixed(out, suffix), extra
    for name in (m for m in sc if m in probabilities):
        cal = calibration_summary(
            yy[fu1],
            sc[name][fu1],
            groups=pat[fu1],
            n_bins=plan.n_bins,
            method=plan.method,
            **boot,
        )
        median, p90 = ece_noise_floor(sc[name][fu1], n_bins=plan.n_bins, seed=plan.seed)
        cal["ece"].details.update({"if_calibrated_median": median, "if_calibrated_p90": p90})
        for metric, est in cal.items():
            prefix = "calibration_" if metric in ("slope", "intercept") else ""
            out[f"response.{model_key(name)}.{prefix}{metric}_fu1"] = est
    if reference in probabilities:
        for name in (b for b in baselines if b in probabilities):
            out[f"response.{ref}.brier_fu1_minus_{model_key(name)}"] = difference_interval(
                wm.brier,
                yy[fu1],
                sc[reference][fu1],
                sc[name][fu1],
                groups=pat[fu1],
                method=plan.method,
                **boot,
            )
        extra["reliability_fu1"] = reliability_table(
            yy[fu1], sc[reference][fu1], groups=pat[fu1], n_bins=plan.n_bins, level=plan.level
        )
    return _suffixed(out, suffix), extra


def _suffixed(estimates: dict[str, Estimate], suffix: str) -> dict[str, Estimate]:
    return {f"{k}{suffix}": v for k, v in estimates.items()} if suffix else estimates


def balanced_accuracy_interval(
    truth: Sequence[int],
    pred: Sequence[int],
    patients: Sequence[str],
    *,
    plan: EvaluationPlan | None = None,
) -> Estimate:
    """Balanced accuracy with a patient bootstrap interval (a patient's paired scans are
    resampled together)."""
    plan = plan or EvaluationPlan()
    t = np.asarray(truth)
    if t.size < 2 or np.unique(t).size < 2:
        return unavailable(
            f"{t.size} rows and {np.unique(t).size} classes", t.size, plan.level, plan.method
        )
    return metric_interval(
        wm.balanced_accuracy,
        t,
        np.asarray(pred),
        groups=np.asarray(patients),
        n_resamples=plan.resamples,
        seed=plan.seed,
        level=plan.level,
        method=plan.method,
    )


def estimates_to_json(estimates: Mapping[str, Estimate]) -> dict[str, dict[str, Any]]:
    """Estimates as JSON-able dicts (``metrics.json``'s ``estimates``)."""
    return {k: v.to_dict() for k, v in estimates.items()}


def value(estimates: Mapping[str, Estimate], key: str) -> float | None:
    """The point value of ``key`` (None when absent or not computable)."""
    e = estimates.get(key)
    return None if e is None or not math.isfinite(e.value) else float(e.value)


def fmt_ci(e: Estimate | Mapping[str, Any] | None, spec: str = ".3f") -> str:
    """``0.887 [0.861, 0.912]`` from an estimate or its JSON dict; ``n/a`` when absent."""
    if e is None:
        return "n/a"
    if isinstance(e, Mapping):
        e = Estimate.from_dict(dict(e))
    return "n/a" if not math.isfinite(e.value) else e.format(spec)


def plot_reliability_table(
    table: Sequence[Mapping[str, float]], path: Path, title: str, ece: Estimate | None = None
) -> Path:
    """Reliability diagram from :func:`models.evaluation.calibration.reliability_table`:
    equal-mass bins, one patient per row, Wilson intervals of the observed rate (PNG)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.0, 4.6), dpi=110)
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect")
    xs = [r["mean_predicted"] for r in table]
    ys = [r["observed"] for r in table]
    err = [
        [max(r["observed"] - r["observed_lower"], 0.0) for r in table],
        [max(r["observed_upper"] - r["observed"], 0.0) for r in table],
    ]
    label = "model" if ece is None else f"model (ECE {fmt_ci(ece)})"
    ax.errorbar(xs, ys, yerr=err, marker="o", capsize=2, label=label)
    for x, yy, r in zip(xs, ys, table, strict=True):
        ax.annotate(str(r["n"]), (x, yy), textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.set_xlabel("predicted P(non-response)")
    ax.set_ylabel("observed fraction of non-responders")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
