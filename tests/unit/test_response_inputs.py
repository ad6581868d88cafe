"""The response model's inputs from every lesion and from PD-L1: hand-built histories, the
values each input must take, and what a history without them gives (story-v1 cohorts, the
worker's histories before every lesion is stored)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from models.response import baselines as bl
from models.response.history import (
    ALL_BURDEN_INPUTS,
    ALL_INPUTS,
    IN_FIELD_INPUTS,
    LESION_INPUTS,
    OUT_OF_FIELD_INPUTS,
    PD_L1_INPUTS,
    RECIST_INPUTS,
    History,
    LabResult,
    LesionReadout,
    Scan,
    response_inputs,
)
from schemas.enums import IRecistState, RecistResponse

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def readout(
    in_field: float | None,
    out_field: float | None,
    *,
    targets: float,
    volume: float,
    new: int = 0,
    recist: RecistResponse | None = None,
    irecist: IRecistState | None = None,
) -> LesionReadout:
    return LesionReadout(
        sum_diameters_mm=targets,
        total_volume_ml=volume,
        new_lesions=new,
        in_field_mm=in_field,
        out_of_field_mm=out_field,
        recist=recist,
        irecist=irecist,
    )


def scan(week: float, diameter: float, lesions: LesionReadout | None) -> Scan:
    return Scan(
        at=T0 + timedelta(weeks=week),
        volume_ml=diameter**3 / 2000.0,
        diameter_mm=diameter,
        key=f"w{week}",
        lesions=lesions,
    )


@pytest.fixture
def history() -> History:
    """Irradiated lesion 20 -> 16 -> 14 mm; the others 30 -> 24 -> 33 mm with a new lesion of
    12 mm at week 14; RECIST target sum 50 -> 40 -> 47 mm (SD), then iUPD."""
    return History(
        scans=(
            scan(0, 20.0, readout(20.0, 30.0, targets=50.0, volume=10.0)),
            scan(
                7,
                16.0,
                readout(
                    16.0,
                    24.0,
                    targets=40.0,
                    volume=7.0,
                    recist=RecistResponse.SD,
                    irecist=IRecistState.ISD,
                ),
            ),
            scan(
                14,
                14.0,
                readout(
                    14.0,
                    45.0,
                    targets=47.0,
                    volume=12.0,
                    new=1,
                    recist=RecistResponse.PD,
                    irecist=IRecistState.IUPD,
                ),
            ),
        ),
        labs=(LabResult(T0 - timedelta(days=30), 55.0), LabResult(T0 + timedelta(weeks=5), 2.0)),
    )


def test_every_lesion_inputs_take_their_defined_values(history: History) -> None:
    at = history.scans[2].at
    x = response_inputs(history, at)
    assert set(x) == set(ALL_INPUTS)
    log = math.log
    # every lesion: RECIST target sum and total volume against baseline, nadir, last scan
    assert x["has_lesion_readout"] == 1.0
    assert x["log_sum_vs_baseline"] == pytest.approx(log(48.0 / 51.0))
    assert x["log_sum_vs_nadir"] == pytest.approx(log(48.0 / 41.0))
    assert x["log_sum_slope_per_week"] == pytest.approx(log(48.0 / 41.0) / 7.0)
    assert x["log_total_volume_vs_baseline"] == pytest.approx(log(12.01 / 10.01))
    assert x["log_total_volume_vs_nadir"] == pytest.approx(log(12.01 / 7.01))
    assert x["new_lesion_count"] == 1.0 and x["new_lesion_any"] == 1.0
    assert x["irecist_ordinal"] == 3.0 and x["irecist_iupd"] == 1.0 and x["irecist_icpd"] == 0.0
    # in field: shrinking; out of field (new lesion included): growing past its nadir
    assert x["has_in_field"] == 1.0 and x["has_out_of_field"] == 1.0
    assert x["log_in_field_vs_baseline"] == pytest.approx(log(15.0 / 21.0))
    assert x["log_in_field_vs_nadir"] == pytest.approx(log(15.0 / 17.0))
    assert x["log_in_field_slope_per_week"] == pytest.approx(log(15.0 / 17.0) / 7.0)
    assert x["log_out_of_field_vs_baseline"] == pytest.approx(log(46.0 / 31.0))
    assert x["log_out_of_field_vs_nadir"] == pytest.approx(log(46.0 / 25.0))
    # RECIST 1.1 as an ordinal score with the target sum's relative change
    assert x["recist_ordinal"] == 3.0
    assert x["recist_sum_change_vs_baseline"] == pytest.approx(-3.0 / 50.0)
    assert x["recist_sum_change_vs_nadir"] == pytest.approx(7.0 / 40.0)
    # PD-L1 at baseline: the first value known (55 %), not the later one
    assert x["pd_l1_tps"] == pytest.approx(0.55)
    assert (x["pd_l1_ge1"], x["pd_l1_ge50"], x["pd_l1_missing"]) == (1.0, 1.0, 0.0)


def test_baseline_and_first_follow_up(history: History) -> None:
    base = response_inputs(history, history.scans[0].at)
    for name in (*LESION_INPUTS[1:], *IN_FIELD_INPUTS[1:], *OUT_OF_FIELD_INPUTS[1:]):
        if name != "irecist_ordinal":
            assert base[name] == 0.0, name
    assert base["irecist_ordinal"] == 2.0 and base["recist_ordinal"] == 2.0
    fu1 = response_inputs(history, history.scans[1].at)
    assert fu1["recist_ordinal"] == 2.0  # SD
    # two SD patients are told apart by how far their sum moved: the RECIST baseline can rank
    assert fu1["recist_sum_change_vs_baseline"] == pytest.approx(-0.2)
    assert fu1["irecist_ordinal"] == 2.0 and fu1["new_lesion_count"] == 0.0


def test_a_history_without_every_lesion_falls_back_with_flags() -> None:
    """Story v1 / no readout: lesion inputs neutral and flagged, RECIST from the one lesion,
    PD-L1 missing and flagged."""
    h = History(scans=(scan(0, 40.0, None), scan(7, 27.0, None), scan(14, 36.0, None)))
    x = response_inputs(h, h.scans[2].at)
    assert x["has_lesion_readout"] == 0.0 and x["has_in_field"] == 0.0
    assert x["has_out_of_field"] == 0.0 and x["new_lesion_count"] == 0.0
    assert x["log_sum_vs_baseline"] == 0.0 and x["irecist_ordinal"] == 2.0
    assert x["recist_ordinal"] == 3.0  # 27 -> 36 mm: +33 % and 9 mm over the nadir
    assert x["recist_sum_change_vs_nadir"] == pytest.approx(9.0 / 27.0)
    assert x["pd_l1_missing"] == 1.0 and x["pd_l1_tps"] == 0.0
    fu1 = response_inputs(h, h.scans[1].at)
    assert fu1["recist_ordinal"] == 1.0  # -32.5 %: PR


def test_unknown_field_split_and_vanished_lesions_stay_finite() -> None:
    """No lesion marked in the field: in/out-of-field inputs missing and flagged. Every target
    lesion gone (sum 0): CR, finite log ratios."""
    h = History(
        scans=(
            scan(0, 20.0, readout(None, None, targets=20.0, volume=3.0)),
            scan(
                8,
                0.0,
                readout(
                    None,
                    None,
                    targets=0.0,
                    volume=0.0,
                    recist=RecistResponse.CR,
                    irecist=IRecistState.ICR,
                ),
            ),
        )
    )
    x = response_inputs(h, h.scans[1].at)
    assert x["has_in_field"] == 0.0 and x["has_out_of_field"] == 0.0
    assert x["recist_ordinal"] == 0.0 and x["irecist_ordinal"] == 0.0
    assert x["recist_sum_change_vs_baseline"] == pytest.approx(-1.0)
    assert all(math.isfinite(v) for v in x.values())


def test_readout_round_trips_and_reads_stored_features() -> None:
    r = readout(
        12.0, 30.0, targets=42.0, volume=5.5, new=2, recist=RecistResponse.PD,
        irecist=IRecistState.ICPD,
    )  # fmt: skip
    assert LesionReadout.from_dict(r.to_dict()) == r
    features = {
        "lesions_sum_diameters_mm": 42.0,
        "lesions_in_field_sum_mm": 12.0,
        "lesions_out_of_field_sum_mm": 30.0,
        "lesions_total_volume_ml": 5.5,
        "lesions_new_count": 2.0,
    }
    assert LesionReadout.from_features(features, recist="PD", irecist=4) == r
    assert LesionReadout.from_features(features, recist="PD", irecist="iCPD") == r
    assert LesionReadout.from_features({"burden_volume_ml": 3.0}) is None


def test_baselines_are_subsets_of_the_full_model() -> None:
    names = [m.name for m in bl.MODELS]
    assert names[0] == bl.FULL and len(set(names)) == len(names)
    for m in bl.MODELS:
        assert set(m.inputs) <= set(ALL_INPUTS), m.name
    by_name = {m.name: set(m.inputs) for m in bl.MODELS}
    assert by_name["RECIST 1.1, all target lesions"] == set(RECIST_INPUTS)
    assert by_name["burden trajectory, all lesions"] == set(ALL_BURDEN_INPUTS)
    assert by_name["PD-L1 TPS alone"] == set(PD_L1_INPUTS)
    # the all-lesion burden sees nothing of the immune system
    assert not any(n.startswith(("ct_", "biopsy_", "pd_l1")) for n in ALL_BURDEN_INPUTS)


def test_rule_scores_follow_the_readout(history: History) -> None:
    assert bl.rule_scores({"p": history}) == [0.5, 0.5, 1.0]
    no_readout = History(scans=(scan(0, 40.0, None), scan(7, 27.0, None)))
    assert bl.rule_scores({"p": no_readout}) == [0.5, 0.0]
