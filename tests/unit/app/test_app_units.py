"""Unit tests of the app's pure parts: burden maths, figures, passwords, pixels, vocabulary."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from core.passwords import hash_password, verify_password
from monitoring_app import charts, imaging
from monitoring_app.vocab import IRecistState, Role


def _t(d: int) -> datetime:
    return datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=d)


def test_burden_change_from_baseline_and_prior_nadir() -> None:
    b = pd.DataFrame(
        {"observed_at": [_t(0), _t(50), _t(100)], "sum_diameters_mm": [100.0, 60.0, 78.0]}
    )
    out = charts.burden_table(b)
    assert list(out["pct_from_baseline"].round(1)) == [0.0, -40.0, -22.0]
    assert list(out["pct_from_nadir"].round(1)) == [0.0, -40.0, 30.0]  # PD: +30 % from nadir


def test_timeline_figure_draws_each_model_version() -> None:
    scores = pd.DataFrame(
        {
            "observed_at": [_t(0), _t(50), _t(0), _t(50)],
            "score_name": ["response_probability"] * 4,
            "value": [0.5, 0.4, 0.6, 0.5],
            "lower": [0.3, 0.2, 0.4, 0.3],
            "upper": [0.7, 0.6, 0.8, 0.7],
            "model_name": ["m"] * 4,
            "model_version": ["1", "1", "2", "2"],
            "source_kind": ["imaging"] * 4,
            "source_modality": ["CT"] * 4,
            "source_series": [["1.2.3"]] * 4,
            "specimen_id": [None] * 4,
            "inputs": [[]] * 4,
        }
    )
    empty = pd.DataFrame()
    data = {
        "scores": scores,
        "burden": empty,
        "treatments": empty,
        "alerts": empty,
        "actions": empty,
    }
    names = {t.name for t in charts.timeline_figure(data).data}
    assert {"m 1", "m 2"} <= names
    names = {t.name for t in charts.timeline_figure(data, [("m", "2")]).data}
    assert "m 2" in names and "m 1" not in names


def test_passwords_are_argon2_hashes() -> None:
    h = hash_password("long enough pw")
    assert h.startswith("$argon2id$") and "long enough pw" not in h
    assert verify_password(h, "long enough pw")
    assert not verify_password(h, "wrong")
    assert not verify_password(None, "anything")
    with pytest.raises(ValueError, match="at least"):
        hash_password("short")


def test_render_slice_outlines_the_mask() -> None:
    hu = np.full((32, 32), -800.0)
    labels = np.zeros((32, 32), np.uint8)
    labels[10:20, 10:20] = 1
    rgb = imaging.render_slice(hu, (-600, 1500), labels, size=32)
    assert rgb.shape == (32, 32, 3)
    assert tuple(rgb[10, 15]) == imaging.LESION_COLOURS[0]  # edge in the lesion colour
    assert rgb[0, 0, 0] == rgb[0, 0, 1] == rgb[0, 0, 2]  # grey outside


def test_lesion_slice_and_attention_convention(tmp_path) -> None:
    labels = np.zeros((5, 4, 4), np.uint8)
    labels[3, :2, :2] = 1
    assert imaging.lesion_slice(labels, 5) == 3
    assert imaging.lesion_slice(None, 5) == 2
    slide = tmp_path / "slide.tiff"
    slide.write_bytes(b"")
    assert imaging.attention_png(slide) is None
    (tmp_path / "slide.attention.png").write_bytes(b"png")
    assert imaging.attention_png(slide) == tmp_path / "slide.attention.png"


def test_vocabulary() -> None:
    assert IRecistState.from_value(3.0).label == "iUPD"
    assert IRecistState.from_value(None) is None and IRecistState.from_value(9.0) is None
    assert Role("admin").sees_all_cohorts and not Role("researcher").can_act_on_alerts
