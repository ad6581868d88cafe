"""Metrics, plots and the Markdown report of the virtual biopsy and the response model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np


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
