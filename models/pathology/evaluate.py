"""Evaluation of the slide MIL model: metrics, attention checks, plots and the written report.

Metrics: balanced accuracy, accuracy, confusion matrix, per-class precision / recall / F1,
expected calibration error and Brier score of the phenotype; Spearman correlation of the TIL
score with the labelled intratumoral TIL density and with the slide's ground-truth lymphocyte
density (when the clinic's tile truth is there); attention enrichment (lymphocyte density of
the top 10 per cent of tiles by attention over the slide's average, with the best any ranking
could reach on that slide beside it). Plots use matplotlib's Agg backend.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from models.pathology.bag import SlideBag
from models.pathology.heatmap import attention_grid, heatmap_png, write_heatmap
from models.pathology.mil import PHENOTYPES, GatedAttentionMIL
from models.pathology.slide import open_slide

CLASS_NAMES = [str(p) for p in PHENOTYPES]


@dataclass
class Predictions:
    """Model outputs for a list of slides (same order)."""

    probabilities: np.ndarray  # (n, n_classes)
    til_density: np.ndarray  # (n,) predicted TILs per mm²
    attention: list[np.ndarray]


def predict_bags(model: GatedAttentionMIL, bags: Sequence[SlideBag]) -> Predictions:
    """Run the model on encoded slides one by one (eval mode, no dropout)."""
    import torch

    model.eval()
    probs, til, att = [], [], []
    with torch.no_grad():
        for b in bags:
            out = model(torch.as_tensor(b.features, dtype=torch.float32))
            probs.append(torch.softmax(out.logits, dim=1)[0].numpy())
            til.append(float(model.til_to_density(out.til)[0]))
            att.append(out.attention[0].numpy().astype(np.float64))
    return Predictions(
        probabilities=np.array(probs).reshape(-1, len(PHENOTYPES)),
        til_density=np.array(til),
        attention=att,
    )


# ----------------------------------------------------------------------------- metrics


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts, rows = truth, columns = prediction."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return cm


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """Mean recall over the classes present in ``y_true``."""
    cm = confusion_matrix(y_true, y_pred, n_classes)
    support = cm.sum(axis=1)
    present = support > 0
    return float((np.diag(cm)[present] / support[present]).mean()) if present.any() else 0.0


def per_class_metrics(cm: np.ndarray, names: Sequence[str]) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support of each class from a confusion matrix."""
    out = {}
    for i, name in enumerate(names):
        tp = float(cm[i, i])
        precision = tp / cm[:, i].sum() if cm[:, i].sum() else 0.0
        recall = tp / cm[i].sum() if cm[i].sum() else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[name] = {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "support": int(cm[i].sum()),
        }
    return out


def expected_calibration_error(
    y_true: np.ndarray, probs: np.ndarray, n_bins: int = 10
) -> tuple[float, list[dict[str, float]]]:
    """ECE of the top-class confidence, and the reliability bins behind it."""
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y_true).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ece, bins = 0.0, []
    for lo, hi in pairwise(edges):
        sel = (conf > lo) & (conf <= hi)
        if sel.any():
            gap = abs(correct[sel].mean() - conf[sel].mean())
            ece += sel.mean() * gap
            bins.append(
                {
                    "lo": float(lo),
                    "hi": float(hi),
                    "confidence": float(conf[sel].mean()),
                    "accuracy": float(correct[sel].mean()),
                    "n": int(sel.sum()),
                }
            )
    return float(ece), bins


def attention_enrichment(
    attention: np.ndarray,
    lymphocyte_count: np.ndarray,
    tissue_fraction: np.ndarray,
    top: float = 0.1,
) -> tuple[float, float]:
    """Lymphocyte density of the top ``top`` tiles by attention over the slide's average.

    Densities are lymphocytes per unit of ground-truth tissue area, over the tiles used.

    Returns
    -------
    ratio, oracle
        The attention's ratio, and the ratio of the top tiles by true density (the ceiling).
    """
    attention = np.asarray(attention, dtype=np.float64)
    count = np.asarray(lymphocyte_count, dtype=np.float64)
    tissue = np.maximum(np.asarray(tissue_fraction, dtype=np.float64), 1e-9)
    k = max(1, round(top * len(attention)))
    average = count.sum() / tissue.sum()
    if average <= 0:
        return float("nan"), float("nan")
    by_attention = np.argsort(-attention, kind="stable")[:k]
    by_truth = np.argsort(-(count / tissue), kind="stable")[:k]
    ratio = count[by_attention].sum() / tissue[by_attention].sum() / average
    oracle = count[by_truth].sum() / tissue[by_truth].sum() / average
    return float(ratio), float(oracle)


def _spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    if len(a) < 3:
        return None
    rho = spearmanr(a, b)[0]
    return None if not np.isfinite(rho) else float(rho)


def evaluation_metrics(bags: Sequence[SlideBag], predictions: Predictions) -> dict[str, Any]:
    """All metrics of a held-out set, as a JSON-able dict (with a ``per_slide`` table)."""
    n_classes = len(PHENOTYPES)
    y = np.array([PHENOTYPES.index(b.record.phenotype) for b in bags])
    probs = predictions.probabilities
    pred = probs.argmax(axis=1)
    cm = confusion_matrix(y, pred, n_classes)
    ece, bins = expected_calibration_error(y, probs)
    onehot = np.eye(n_classes)[y]
    til_true = [b.record.til_density for b in bags]
    lym_true = [b.slide_lymphocyte_density for b in bags]
    per_slide = []
    enrichment: dict[str, list[tuple[float, float]]] = {c: [] for c in CLASS_NAMES}
    for b, p, til, att in zip(
        bags, probs, predictions.til_density, predictions.attention, strict=True
    ):
        row: dict[str, Any] = {
            "slide": b.record.slide_id,
            "patient": b.record.patient,
            "phenotype": str(b.record.phenotype),
            "predicted": CLASS_NAMES[int(np.argmax(p))],
            "probabilities": {c: float(v) for c, v in zip(CLASS_NAMES, p, strict=True)},
            "til_density_true": b.record.til_density,
            "til_density_predicted": float(til),
            "lymphocyte_density_true": b.slide_lymphocyte_density,
            "tiles": len(b.features),
        }
        if b.lymphocyte_count is not None and b.truth_tissue_fraction is not None:
            ratio, oracle = attention_enrichment(att, b.lymphocyte_count, b.truth_tissue_fraction)
            row["attention_enrichment"] = ratio
            row["attention_enrichment_oracle"] = oracle
            if np.isfinite(ratio):
                enrichment[str(b.record.phenotype)].append((ratio, oracle))
        per_slide.append(row)
    return {
        "n_test_slides": len(bags),
        "balanced_accuracy": balanced_accuracy(y, pred, n_classes),
        "accuracy": float((pred == y).mean()) if len(y) else 0.0,
        "confusion_matrix": {"classes": CLASS_NAMES, "counts": cm.tolist()},
        "per_class": per_class_metrics(cm, CLASS_NAMES),
        "macro_f1": float(np.mean([m["f1"] for m in per_class_metrics(cm, CLASS_NAMES).values()])),
        "ece": ece,
        "reliability": bins,
        "brier": float(((probs - onehot) ** 2).sum(axis=1).mean()) if len(y) else 0.0,
        "til_spearman_intratumoral": _spearman(predictions.til_density, til_true),
        "til_spearman_slide_lymphocyte_density": (
            _spearman(predictions.til_density, lym_true)
            if all(v is not None for v in lym_true)
            else None
        ),
        "attention_enrichment": {
            c: {
                "n": len(v),
                "median": float(np.median([r for r, _ in v])),
                "min": float(np.min([r for r, _ in v])),
                "oracle_median": float(np.median([o for _, o in v])),
            }
            for c, v in enrichment.items()
            if v
        },
        "per_slide": per_slide,
    }


# ----------------------------------------------------------------------------- report


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(cm: np.ndarray, path: Path) -> Path:
    """Confusion-matrix heat map (PNG)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.2, 3.8), dpi=110)
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center", color="black")
    ax.set_xticks(range(len(CLASS_NAMES)), CLASS_NAMES)
    ax.set_yticks(range(len(CLASS_NAMES)), CLASS_NAMES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Immune phenotype, held-out slides")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_calibration(y: np.ndarray, probs: np.ndarray, path: Path, n_bins: int = 5) -> Path:
    """Reliability diagram: one-vs-rest per class and the top-class confidence (PNG)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.6, 4.2), dpi=110)
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect")
    edges = np.linspace(0, 1, n_bins + 1)
    for k, name in enumerate(CLASS_NAMES):
        p = probs[:, k]
        hit = (y == k).astype(float)
        xs, ys = [], []
        for lo, hi in pairwise(edges):
            sel = (p >= lo) & (p <= hi) if lo == 0 else (p > lo) & (p <= hi)
            if sel.any():
                xs.append(p[sel].mean())
                ys.append(hit[sel].mean())
        ax.plot(xs, ys, marker="o", label=name)
    _, bins = expected_calibration_error(y, probs, n_bins)
    ax.plot(
        [b["confidence"] for b in bins],
        [b["accuracy"] for b in bins],
        marker="s",
        color="black",
        label="top class",
    )
    ax.set_xlabel("predicted probability")
    ax.set_ylabel("observed frequency")
    ax.set_title("Calibration")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_til(
    true: Sequence[float], pred: Sequence[float], labels: Sequence[str], path: Path
) -> Path:
    """Predicted against labelled TIL density, log scales (PNG)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.6, 4.2), dpi=110)
    for name in CLASS_NAMES:
        sel = [i for i, lab in enumerate(labels) if lab == name]
        ax.scatter([true[i] + 1 for i in sel], [pred[i] + 1 for i in sel], label=name, s=18)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("labelled intratumoral TILs per mm² (+1)")
    ax.set_ylabel("predicted TILs per mm² (+1)")
    ax.set_title("TIL score, held-out slides")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_history(history: Sequence[dict[str, float]], path: Path) -> Path:
    """Training and validation loss per epoch (PNG)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.4), dpi=110)
    ax.plot([h["epoch"] for h in history], [h["train_loss"] for h in history], label="train")
    ax.plot([h["epoch"] for h in history], [h["val_loss"] for h in history], label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def model_card(
    metrics: dict[str, Any],
    encoder: dict[str, Any],
    tiles: dict[str, Any],
    config: dict[str, Any],
) -> str:
    """Short Markdown model card (stored in the artefact's ``model.json``)."""
    return (
        "Gated attention MIL (Ilse et al. 2018) over H&E tile features; predicts the immune "
        "phenotype (inflamed / excluded / desert) and intratumoral TIL density.\n"
        f"Encoder: {encoder.get('name')} ({encoder.get('kind')}). Tiles: {tiles['tile_px']} px "
        f"at {tiles['mpp']} µm/px, tissue >= {tiles['min_tissue']:.0%}.\n"
        f"Held-out patients: balanced accuracy {_fmt(metrics.get('balanced_accuracy'))}, "
        f"TIL Spearman {_fmt(metrics.get('til_spearman_intratumoral'))}, "
        f"ECE {_fmt(metrics.get('ece'))}. Seed {config.get('seed')}.\n"
        "Trained on synthetic virtual-clinic slides unless stated otherwise: not for clinical use."
    )


def write_report(
    out_dir: Path,
    bags: Sequence[SlideBag],
    predictions: Predictions,
    metrics: dict[str, Any],
    *,
    history: Sequence[dict[str, float]] = (),
    context: dict[str, Any] | None = None,
    n_heatmaps: int = 3,
) -> dict[str, Path]:
    """Write ``report.md``, ``metrics.json``, plots and a few attention heat maps.

    Returns
    -------
    dict
        File kind -> path.
    """

    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    y = np.array([PHENOTYPES.index(b.record.phenotype) for b in bags])
    cm = np.array(metrics["confusion_matrix"]["counts"])
    files["confusion_matrix"] = plot_confusion(cm, out_dir / "confusion_matrix.png")
    files["calibration"] = plot_calibration(
        y, predictions.probabilities, out_dir / "calibration.png"
    )
    files["til"] = plot_til(
        [b.record.til_density for b in bags],
        list(predictions.til_density),
        [str(b.record.phenotype) for b in bags],
        out_dir / "til_scatter.png",
    )
    if history:
        files["learning_curve"] = plot_history(history, out_dir / "learning_curve.png")
    heatmaps = []
    shown: set[str] = set()
    for b, att in zip(bags, predictions.attention, strict=True):
        ph = str(b.record.phenotype)
        if ph in shown or len(heatmaps) >= n_heatmaps:
            continue
        shown.add(ph)
        slide = open_slide(b.record.path)
        try:
            thumb = np.asarray(slide.get_thumbnail((512, 512)).convert("RGB"))
        finally:
            slide.close()
        grid = attention_grid(b.coords, att, b.tile_size_level0, b.dimensions)
        path = write_heatmap(
            out_dir / "heatmaps" / f"{ph}-{len(heatmaps)}.png", heatmap_png(thumb, grid)
        )
        heatmaps.append((b.record.slide_id, ph, path))
        files[f"heatmap_{ph}"] = path
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str) + "\n")
    files["metrics"] = out_dir / "metrics.json"

    lines = [
        "# Pathology MIL: evaluation on held-out patients",
        "",
        f"- slides: {metrics.get('n_slides', {})}; patients: {metrics.get('n_patients', {})}",
        f"- balanced accuracy: **{_fmt(metrics['balanced_accuracy'])}** "
        f"(accuracy {_fmt(metrics['accuracy'])}, macro F1 {_fmt(metrics['macro_f1'])})",
        f"- TIL score Spearman vs labelled intratumoral TIL density: "
        f"**{_fmt(metrics['til_spearman_intratumoral'])}**; vs slide lymphocyte density: "
        f"{_fmt(metrics['til_spearman_slide_lymphocyte_density'])}",
        f"- calibration: ECE {_fmt(metrics['ece'])}, Brier {_fmt(metrics['brier'])}",
        "",
        "## Confusion matrix (rows true, columns predicted)",
        "",
        "| | " + " | ".join(CLASS_NAMES) + " |",
        "|---|" + "---|" * len(CLASS_NAMES),
    ]
    for name, row in zip(CLASS_NAMES, cm, strict=True):
        lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
    lines += [
        "",
        "## Per class",
        "",
        "| class | precision | recall | F1 | support |",
        "|---|---|---|---|---|",
    ]
    for name, m in metrics["per_class"].items():
        lines.append(
            f"| {name} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} "
            f"| {m['support']} |"
        )
    if metrics.get("attention_enrichment"):
        lines += [
            "",
            "## Attention and lymphocytes",
            "",
            "Lymphocyte density (ground truth) of the top 10 % of tiles by attention over the "
            "slide's average; the oracle column is the same for the top 10 % by true density.",
            "",
            "| phenotype | slides | median | min | oracle median |",
            "|---|---|---|---|---|",
        ]
        for name, e in metrics["attention_enrichment"].items():
            lines.append(
                f"| {name} | {e['n']} | {e['median']:.2f} | {e['min']:.2f} "
                f"| {e['oracle_median']:.2f} |"
            )
    lines += ["", "## Plots", ""]
    for kind, path in files.items():
        if path.suffix == ".png":
            lines.append(f"![{kind}]({path.relative_to(out_dir)})")
    if context:
        lines += ["", "## Run", "", "```json", json.dumps(context, indent=2, default=str), "```"]
    (out_dir / "report.md").write_text("\n".join(lines) + "\n")
    files["report"] = out_dir / "report.md"
    return files
