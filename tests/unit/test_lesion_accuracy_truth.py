"""The RECIST 1.1 truth that `bench.lesion_accuracy` compares the pipeline with: roles from the
clinic's measurability, categories by the same iRECIST machine."""

from __future__ import annotations

from typing import Any

import pytest

from bench.lesion_accuracy import truth_categories, truth_new_lesions


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
    # volume growing six-fold is unequivocal non-target progression (RECIST 1.1, 4.3.3): the
    # overall burden grows 83 % while the target is stable; read as a normal node (the bench's
    # earlier clinic truth) it was SD. Tripling (overall +33 %) is a modest increase: SD.
    cats = truth_categories(_timepoints([2.0, 2.0, 12.0]), rule)
    assert [c["recist"] for c in cats[1:]] == ["SD", "PD"]
    assert cats[1]["sum_mm"] == pytest.approx(30.0)  # the node is not in the sum
    cats = truth_categories(_timepoints([2.0, 2.0, 6.0]), rule)
    assert [c["recist"] for c in cats[1:]] == ["SD", "SD"]


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


def _with_node(short_mm: list[float | None]) -> list[dict[str, Any]]:
    """A stable 30 mm lung target; a lymph node drawn from the first follow-up (None: absent)."""
    tps = []
    for i, short in enumerate(short_mm):
        lesions = [_lesion(1, "lung", 30.0, 21.0, 10.0, True) | {"seg_segment_number": 1}]
        if short is not None:
            node = _lesion(2, "lymph_node", short * 1.3, short, 0.5, short >= 15.0)
            lesions.append(node | {"seg_segment_number": 2})
        tps.append({"days_from_rt_start": 42.0 * i, "lesions": lesions})
    return tps


def test_a_new_node_is_new_when_unequivocal_not_when_first_drawn() -> None:
    # iRECIST: a new node under 10 mm short axis is normal; one of 10 to 15 mm is equivocal
    # until 5 mm above its smallest (EORTC RECIST FAQ); the pipeline tracks it so, and so must
    # the truth it is judged by
    tps = _with_node([None, 8.0, 9.5, 11.0, 13.0])
    assert truth_new_lesions(tps) == {2: 4}
    cats = truth_categories(tps, "clinic")
    assert [c["irecist"] for c in cats[1:]] == ["iSD", "iSD", "iSD", "iUPD"]


def test_a_new_node_of_15_mm_or_more_is_new_where_first_drawn() -> None:
    assert truth_new_lesions(_with_node([None, 16.0, 17.0])) == {2: 1}


def test_a_new_node_of_10_to_15_mm_that_stays_so_is_never_new() -> None:
    tps = _with_node([None, 12.0, 13.0, 12.5])
    assert truth_new_lesions(tps) == {}
    assert [c["recist"] for c in truth_categories(tps, "clinic")[1:]] == ["SD", "SD", "SD"]


def test_a_node_that_stays_under_10_mm_is_never_new() -> None:
    tps = _with_node([None, 6.0, 8.0, 9.9])
    assert truth_new_lesions(tps) == {}
    assert [c["recist"] for c in truth_categories(tps, "clinic")[1:]] == ["SD", "SD", "SD"]
