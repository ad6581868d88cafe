"""The decision series read from stored assessments (core.db.history.lesion_points): a
not-evaluable assessment (iNE) gives no point, so its partial sum (only the lesions seen) is
never a nadir from which the next scan reads as growth."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import numpy as np

from core.db.history import lesion_points
from models.changepoint import DecisionRule, PatientSeries
from schemas.enums import IRecistState

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _row(day: int, state: IRecistState, total: float) -> dict:
    return {
        "source_event_id": uuid.uuid4(),
        "observed_at": T0 + timedelta(days=day),
        "irecist_state": int(state),
        "sum_diameters_mm": total,
        "total_volume_ml": total / 2,
        "new_lesions": 0,
        "in_field_sum_mm": total / 2,
        "out_of_field_sum_mm": total / 2,
    }


def _series(rows: list[dict]) -> PatientSeries:
    points, extra = lesion_points(rows)
    return PatientSeries(
        times=tuple(p[0] for p in points),
        sum_diameters_mm=np.array([p[1] for p in points]),
        volume_ml=np.array([p[2] for p in points]),
        new_lesions=np.asarray(extra["new"]),
        irecist_states=tuple(extra["states"]),
    )


def test_a_not_evaluable_assessment_gives_no_point() -> None:
    rows = [
        _row(0, IRecistState.ISD, 60.0),
        _row(42, IRecistState.INE, 20.0),  # one of three lesions seen
        _row(84, IRecistState.ISD, 58.0),
        _row(84, IRecistState.ISD, 99.0),  # a second acquisition at that time: the first counts
    ]
    points, extra = lesion_points(rows)
    assert [p[4] for p in points] == [rows[0]["source_event_id"], rows[2]["source_event_id"]]
    assert [p[1] for p in points] == [60.0, 58.0]
    assert extra["states"] == [IRecistState.ISD, IRecistState.ISD]


def test_stable_disease_around_a_not_evaluable_scan_raises_no_flag() -> None:
    rows = [
        _row(0, IRecistState.ISD, 60.0),
        _row(42, IRecistState.INE, 20.0),
        _row(84, IRecistState.ISD, 58.0),
        _row(126, IRecistState.ISD, 59.0),
    ]
    assert DecisionRule().fit(_series(rows)).predict().flags == ()
    # with the partial sum as a point, 58 mm reads as a near threefold rise from a 20 mm nadir
    unfiltered = PatientSeries(
        times=tuple(r["observed_at"] for r in rows),
        sum_diameters_mm=np.array([r["sum_diameters_mm"] for r in rows]),
        volume_ml=np.array([r["total_volume_ml"] for r in rows]),
        irecist_states=(IRecistState.ISD,) * len(rows),
    )
    assert DecisionRule().fit(unfiltered).predict().flags != ()
