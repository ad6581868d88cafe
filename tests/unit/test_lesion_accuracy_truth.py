"""The RECIST 1.1 truth that `bench.lesion_accuracy` compares the pipeline with: roles from the
clinic's measurability, categories by the same iRECIST machine."""

from __future__ import annotations

from typing import Any

import pytest

from bench.lesion_accuracy import truth_categories


def _lesion(track: int, organ: str, long: float, short: float, ml: float, measurable: bool):
    return {
        "track_id": track,
        "organ": organ,
        "long_axis_mm": long,
        "short_axis_mm": short,
        "volume_ml": ml,
        "visible": True,
        "in_field": False,
        "measurable": measurable,
    }


def _timepoints(node_ml: list[float], node_short_mm: float = 12.0) -> list[dict[str, Any]]:
    """A stable 30 mm lung target and a lymph node the clinic calls not measurable."""
    return [
        {
            "days_from_rt_start": 42.0 * i,
            "lesions": [
                _lesion(1, "lung", 30.0, 21.0, 10.0, True),
                _lesion(2, "lymph_node", 18.0, node_short_mm, ml, False),
            ],
        }
        for i, ml in enumerate(node_ml)
    ]


@pytest.mark.parametrize("rule", ["clinic", "pipeline"])
def test_a_pathological_node_is_a_non_target_whose_growth_is_progression(rule: str) -> None:
    # 12 mm short axis: pathological (>= 10 mm), not measurable (< 15 mm): non-target. Its
    # volume tripling is unequivocal non-target progression (RECIST 1.1, 4.3.3) while the
    # target is stable; read as a normal node (the bench's earlier clinic truth) it was SD.
    cats = truth_categories(_timepoints([2.0, 2.0, 6.0]), rule)
    assert [c["recist"] for c in cats[1:]] == ["SD", "PD"]
    assert cats[1]["sum_mm"] == pytest.approx(30.0)  # the node is not in the sum


def test_a_node_under_10_mm_is_normal_and_never_counted() -> None:
    cats = truth_categories(_timepoints([0.3, 0.3, 0.9], node_short_mm=8.0), "clinic")
    assert [c["recist"] for c in cats[1:]] == ["SD", "SD"]


def test_a_bone_lesion_the_clinic_calls_not_measurable_is_never_a_target() -> None:
    tps = [
        {
            "days_from_rt_start": 42.0 * i,
            "lesions": [
                _lesion(1, "lung", 20.0, 14.0, 3.0, True),
                _lesion(2, "bone", 40.0 * f, 30.0 * f, 20.0 * f**3, False),
            ],
        }
        for i, f in enumerate([1.0, 1.0])
    ]
    for rule in ("clinic", "pipeline"):
        assert truth_categories(tps, rule)[1]["sum_mm"] == pytest.approx(20.0)
