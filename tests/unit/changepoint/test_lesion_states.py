"""The decision rule over a series whose iRECIST states were assessed over every lesion: the
states are the series' own (one source), not re-assessed from the sum of diameters; and the
alert summary speaks of lesions."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from core import alerts
from core.alerts import describe
from models.changepoint import DecisionRule, PatientSeries
from models.changepoint.decision import features
from models.changepoint.irecist import progression_start
from schemas.enums import IRecistState

I = IRecistState  # noqa: E741


def _t(d: int) -> datetime:
    return datetime(2026, 3, 1, tzinfo=UTC) + timedelta(days=d)


def lesion_series(states, sums=(60, 58, 57, 59), new=(0, 1, 2, 2)) -> PatientSeries:
    n = len(states)
    return PatientSeries(
        times=tuple(_t(49 * i) for i in range(n)),
        sum_diameters_mm=np.asarray(sums[:n], float),
        volume_ml=np.asarray([20.0, 19.0, 18.5, 19.5][:n]),
        new_lesions=np.asarray(new[:n]),
        irecist_states=tuple(states),
        in_field_sum_mm=np.asarray([30.0, 24.0, 20.0, 18.0][:n]),
        out_of_field_sum_mm=np.asarray([30.0, 34.0, 45.0, 52.0][:n]),
    )


def test_the_series_states_govern_not_the_sum() -> None:
    # the target sum is flat (iSD by the sum alone) but new lesions made iUPD then iCPD
    s = lesion_series([I.ISD, I.IUPD, I.ICPD, I.ICPD])
    d = DecisionRule().fit(s).predict()
    assert d.states == (I.ISD, I.IUPD, I.ICPD, I.ICPD)
    flag = d.flag("confirmed_progression")
    assert flag is not None and flag.index == 2 and flag.change_index == 1
    assert d.detectors["irecist"].detected and d.detectors["irecist"].index == 1
    f = features(s)
    col = {"iupd": 9, "icpd": 10}
    assert list(f[:, col["iupd"]]) == [0, 1, 0, 0] and list(f[:, col["icpd"]]) == [0, 0, 1, 1]
    # without the states the rule assesses the series itself (a count of new lesions)
    plain = (
        DecisionRule()
        .fit(
            PatientSeries(
                times=s.times, sum_diameters_mm=s.sum_diameters_mm, new_lesions=s.new_lesions
            )
        )
        .predict()
    )
    assert plain.states[1] is I.IUPD


def test_states_must_match_the_assessments() -> None:
    with pytest.raises(ValueError, match="3 iRECIST states for 4"):
        PatientSeries(times=(0, 1, 2, 3), sum_diameters_mm=np.ones(4), irecist_states=(I.ISD,) * 3)
    s = lesion_series([I.ISD, I.IUPD, I.ICPD, I.ICPD])
    assert s.head(2).irecist_states == (I.ISD, I.IUPD)
    assert list(s.head(2).out_of_field_sum_mm) == [30.0, 34.0]


def test_progression_start() -> None:
    assert progression_start([I.ISD, I.IUPD, I.INE, I.ICPD]) == (1, 1.0)
    assert progression_start([I.ISD, I.IPR, I.IUPD, I.IUPD]) == (2, 0.5)
    assert progression_start([I.ISD, I.IPR]) == (None, 0.0)


def test_the_summary_names_the_new_lesions_and_the_fields() -> None:
    s = lesion_series([I.ISD, I.IUPD, I.ICPD, I.ICPD])
    d = DecisionRule().fit(s).predict()
    flag = d.flag("confirmed_progression")
    assert flag is not None
    new = [(_t(49), "L6", "liver"), (_t(98), "L7", "adrenal")]
    text = describe(s, d, flag, new)
    assert "sum of target-lesion diameters" in text
    assert "2 new lesions since the baseline of 2026-03-01" in text
    assert "L6 liver (first seen 2026-04-19)" in text and "L7 adrenal" in text
    assert "out-of-field lesions 45 mm (+50% from their nadir of 30 mm)" in text
    assert "in-field lesions 20 mm (-17% from their nadir of 24 mm)" in text
    assert "target lesion " not in text  # never "the target lesion" alone
    assert "iCPD" in text
    assert "radiotherapy field alone" not in text  # the growth is outside the field
    # a burden series without lesions keeps the words of a single sum
    plain = PatientSeries(times=s.times, sum_diameters_mm=np.asarray([50.0, 40, 50, 56]))
    dp = DecisionRule().fit(plain).predict()
    fp = dp.flag("confirmed_progression")
    assert fp is not None
    assert "sum of longest diameters" in describe(plain, dp, fp)


def test_growth_in_the_radiotherapy_field_alone_is_called_into_question() -> None:
    # the irradiated lesion's outline takes in radiation change at the third scan (6.9 mm of
    # tumour outlined as 32 mm): RECIST 1.1 progression of the target sum, driven by it alone
    s = PatientSeries(
        times=tuple(_t(49 * i) for i in range(4)),
        sum_diameters_mm=np.asarray([60.0, 40.0, 62.0, 63.0]),
        new_lesions=np.asarray([0, 0, 0, 0]),
        irecist_states=(I.ISD, I.IPR, I.IUPD, I.ICPD),
        in_field_sum_mm=np.asarray([30.0, 10.0, 32.0, 33.0]),
        out_of_field_sum_mm=np.asarray([30.0, 30.0, 30.0, 30.0]),
    )
    assert not alerts.in_field_only(s, 1) and alerts.in_field_only(s, 2)
    d = DecisionRule().fit(s).predict()
    flag = d.flag("confirmed_progression")
    assert flag is not None
    text = describe(s, d, flag)
    assert "in-field lesions 33 mm (+230% from their nadir of 10 mm)" in text
    assert "radiotherapy field alone" in text and "check its outline" in text
    # a new lesion makes it progression whatever the outline: no such caution
    new = [(_t(98), "L4", "liver")]
    assert "radiotherapy field alone" not in describe(s, d, flag, new)
    # the lesions outside the field grew by RECIST's 20 % and 5 mm too: no caution either
    both = replace(s, out_of_field_sum_mm=np.asarray([30.0, 30.0, 36.0, 37.0]))
    assert not alerts.in_field_only(both, 3)
    # 4 mm of growth outside the field is not RECIST progression (5 mm at least)
    small = PatientSeries(
        times=s.times,
        sum_diameters_mm=s.sum_diameters_mm,
        in_field_sum_mm=s.in_field_sum_mm,
        out_of_field_sum_mm=np.asarray([20.0, 18.0, 22.0, 22.0]),
    )
    assert alerts.in_field_only(small, 3)
