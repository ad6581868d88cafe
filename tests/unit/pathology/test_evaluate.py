"""Metrics, attention enrichment and the written report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.pathology import attention_enrichment, balanced_accuracy, predict_bags, write_report
from models.pathology.evaluate import (
    confusion_matrix,
    evaluation_metrics,
    expected_calibration_error,
    per_class_metrics,
)


def test_classification_metrics() -> None:
    y = np.array([0, 0, 0, 0, 1, 1, 2])
    p = np.array([0, 0, 0, 1, 1, 1, 0])
    cm = confusion_matrix(y, p, 3)
    assert cm.tolist() == [[3, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert balanced_accuracy(y, p, 3) == pytest.approx((0.75 + 1.0 + 0.0) / 3)
    per = per_class_metrics(cm, ["a", "b", "c"])
    assert per["a"]["precision"] == pytest.approx(0.75)
    assert per["c"]["f1"] == 0.0


def test_calibration_error() -> None:
    y = np.array([0, 1])
    assert expected_calibration_error(y, np.eye(3)[y])[0] == pytest.approx(0.0)
    assert expected_calibration_error(y, np.eye(3)[1 - y])[0] == pytest.approx(1.0)


def test_attention_enrichment() -> None:
    count = np.array([10, 0, 0, 0, 0, 0, 0, 0, 0, 10], dtype=float)
    tissue = np.ones(10)
    ratio, oracle = attention_enrichment(np.arange(10.0), count, tissue)
    assert oracle == pytest.approx(5.0)
    assert ratio == pytest.approx(5.0)
    ratio, _ = attention_enrichment(-np.arange(10.0) + 0.5 * (np.arange(10) == 0), count, tissue)
    assert ratio == pytest.approx(5.0)
    ratio, _ = attention_enrichment(np.r_[0, np.ones(8), 0], count, tissue)
    assert ratio == 0.0


def test_report_files(bags: list, tiny_model: Path, tmp_path: Path) -> None:
    from models.pathology import load_pipeline

    model = load_pipeline(tiny_model).model
    preds = predict_bags(model, bags)
    metrics = evaluation_metrics(bags, preds)
    assert set(metrics["attention_enrichment"]) <= {"inflamed", "excluded", "desert"}
    assert len(metrics["per_slide"]) == len(bags)
    files = write_report(
        tmp_path,
        bags,
        preds,
        metrics,
        history=[{"epoch": 1, "train_loss": 1.0, "val_loss": 1.1, "val_acc": 0.3}],
    )
    for key in ("confusion_matrix", "calibration", "til", "learning_curve", "report", "metrics"):
        assert files[key].is_file() and files[key].stat().st_size > 0
    assert files["calibration"].read_bytes()[:4] == b"\x89PNG"
    assert "balanced accuracy" in files["report"].read_text()
    assert any(k.startswith("heatmap_") for k in files)
