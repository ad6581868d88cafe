"""iRECIST: one test per rule."""

from __future__ import annotations

import pytest

from models.changepoint import Irecist, IrecistConfig, recist_progression
from schemas.enums import IRecistState

CR, S, P, U, C = (
    IRecistState.ICR,
    IRecistState.ISD,
    IRecistState.IPR,
    IRecistState.IUPD,
    IRecistState.ICPD,
)


def states(sums, days, new=None, **cfg) -> list[IRecistState]:
    m = Irecist(config=IrecistConfig(**cfg)).fit(sums, days, new)
    return [a.state for a in m.assessments_]


def test_iupd_needs_20_percent_and_5_mm_over_the_nadir() -> None:
    # nadir 40; 48 is +20% and +8 mm -> iUPD
    assert states([50, 40, 48], [0, 42, 84]) == [S, S, U]
    # small lesions: 10 -> 12 is +20% but only 2 mm -> not progression
    assert states([12, 10, 12], [0, 42, 84]) == [S, S, S]
    # +19% is not enough
    assert states([50, 40, 47.6], [0, 42, 84]) == [S, S, S]


def test_nadir_is_the_smallest_sum_so_far_including_baseline() -> None:
    assert states([50, 60], [0, 42]) == [S, U]  # over baseline (the nadir at that time)
    assert recist_progression([50, 60]) == 1
    assert recist_progression([50, 40, 47]) is None
    assert recist_progression([50, 40, 48]) == 2


def test_partial_and_complete_response() -> None:
    assert states([50, 35, 0], [0, 42, 84]) == [S, P, CR]
    assert states([50, 36], [0, 42]) == [S, S]


def test_icpd_by_further_5_mm_inside_the_window() -> None:
    assert states([50, 40, 50, 55], [0, 42, 84, 126]) == [S, S, U, C]  # 6 weeks after iUPD


def test_further_increase_below_5_mm_stays_iupd() -> None:
    assert states([50, 40, 50, 54], [0, 42, 84, 126]) == [S, S, U, U]


def test_confirmation_window_too_early_and_too_late() -> None:
    # 3 weeks after iUPD: before the window, cannot confirm
    assert states([50, 40, 50, 60], [0, 42, 84, 105]) == [S, S, U, U]
    # 10 weeks after: outside the window; confirmed only when late confirmation is accepted
    assert states([50, 40, 50, 60], [0, 42, 84, 154]) == [S, S, U, C]
    late = states([50, 40, 50, 60], [0, 42, 84, 154], accept_late_confirmation=False)
    assert late == [S, S, U, U]


def test_icpd_by_new_lesion() -> None:
    assert states([50, 40, 50, 51], [0, 42, 84, 126], [0, 0, 0, 1]) == [S, S, U, C]


def test_new_lesion_alone_is_iupd_then_more_new_lesions_confirm() -> None:
    assert states([50, 45, 45, 45], [0, 42, 84, 126], [0, 1, 1, 2]) == [S, U, U, C]


def test_reset_after_isd() -> None:
    # iUPD at 50, back to 44 (< 20% over nadir 40): iSD, the machine resets; a later rise is a
    # new iUPD, not a confirmation
    assert states([50, 40, 50, 44, 55], [0, 42, 84, 126, 168]) == [S, S, U, S, U]


def test_reset_after_ipr() -> None:
    assert states([50, 30, 40, 34, 41], [0, 42, 84, 126, 168]) == [S, P, U, P, U]


def test_icpd_is_final() -> None:
    assert states([50, 40, 50, 56, 30], [0, 42, 84, 126, 168]) == [S, S, U, C, C]


def test_predict_reports_the_confirmed_iupd_as_the_change() -> None:
    m = Irecist().fit([50, 40, 50, 56], [0, 42, 84, 126])
    r = m.predict()
    assert r.detected and r.index == 2 and r.strength == 1.0 and r.time == 84
    open_iupd = Irecist().fit([50, 40, 50], [0, 42, 84]).predict()
    assert not open_iupd.detected and open_iupd.index == 2 and open_iupd.strength == 0.5


def test_state_codes_match_the_app() -> None:
    assert [s.code for s in IRecistState] == [0, 1, 2, 3, 4, 5]


def test_datetimes_work_as_times() -> None:
    from datetime import UTC, datetime, timedelta

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    days = [t0 + timedelta(days=d) for d in (0, 42, 84, 126)]
    assert states([50, 40, 50, 56], days)[-1] is C


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="confirm_window_weeks"):
        IrecistConfig(confirm_window_weeks=(8, 4))
    with pytest.raises(ValueError, match="times"):
        Irecist().fit([1, 2], [0])


def test_the_state_machine_speaks_the_stored_vocabulary() -> None:
    """The machine's states are the one vocabulary (schemas.enums.IRecistState): the code the
    alerting stores as an ``irecist_state`` score reads back as the same state in the app and
    the FHIR export."""
    machine = Irecist().fit([50, 40, 61, 70], [0, 56, 112, 154])
    states = [a.state for a in machine.assessments_]
    assert all(type(s) is IRecistState for s in states)
    assert [IRecistState.from_value(float(s.code)) for s in states] == states
    assert [s.label for s in IRecistState] == ["iCR", "iPR", "iSD", "iUPD", "iCPD", "iNE"]
