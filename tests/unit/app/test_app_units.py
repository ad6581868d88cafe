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


def test_the_immune_panel_shows_only_immune_signatures() -> None:
    """The lesion scores a worker stores per scan (sums in mm, the new-lesion count) are not
    drawn on the immune panel's 0-1 axis (they were, beside the virtual biopsy, one line
    leaving the panel); the burden and lesion panels draw them from the lesion tables."""
    from schemas.results import LESION_SCORES

    names = ["ct_immune_score", *LESION_SCORES]
    n = len(names)
    scores = pd.DataFrame(
        {
            "observed_at": [_t(0)] * n,
            "score_name": names,
            "value": [0.6, 75.0, 38.0, 37.0, 2.0],
            "lower": [None] * n,
            "upper": [None] * n,
            "model_name": ["ct-signature", *["irtmon-lesions"] * (n - 1)],
            "model_version": ["1"] * n,
            "source_kind": ["imaging"] * n,
            "source_modality": ["CT"] * n,
            "source_series": [["1.2.3"]] * n,
            "specimen_id": [None] * n,
            "inputs": [[]] * n,
        }
    )
    empty = pd.DataFrame()
    data = {"scores": scores, "burden": empty, "treatments": empty, "alerts": empty}
    names_drawn = {t.name for t in charts.timeline_figure({**data, "actions": empty}).data}
    assert "ct immune score (ct-signature 1)" in names_drawn
    # the panel says the virtual biopsy has not been shown to work (response-v2-d)
    titles = [a.text for a in charts.timeline_figure({**data, "actions": empty}).layout.annotations]
    assert any("CT virtual biopsy" in t and "not shown to work" in t for t in titles), titles
    for name in LESION_SCORES:
        assert not any(name.replace("_", " ") in drawn for drawn in names_drawn), name


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


def _lesion_rows() -> pd.DataFrame:
    """Three scans of a patient: L1 in field (shrinking), L2 a node, L3 gone, L4 new."""
    rows = []

    def add(d, src, tid, organ, role, status, long=None, short=None, node=False, field=False):
        rows.append(
            {
                "source_event_id": src,
                "observed_at": _t(d),
                "tracking_uid": f"1.2.{tid[1:]}",
                "tracking_id": tid,
                "label": tid,
                "organ": organ,
                "is_node": node,
                "in_field": field,
                "role": role,
                "status": status,
                "match": "matched",
                "long_axis_mm": long,
                "short_axis_mm": short,
                "volume_ml": None if long is None else long / 10,
                "origin": None if status != "seen" else "annotated",
                "mask_source": None if status != "seen" else "seg",
                "failure": None,
            }
        )

    add(0, "a", "L1", "lung", "target", "seen", 40.0, 30.0, field=True)
    add(0, "a", "L2", "lymph_node", "target", "seen", 25.0, 20.0, node=True)
    add(0, "a", "L3", "liver", "non_target", "seen", 8.0, 6.0)
    add(50, "b", "L1", "lung", "target", "seen", 30.0, 22.0, field=True)
    add(50, "b", "L2", "lymph_node", "target", "seen", 27.0, 24.0, node=True)
    add(50, "b", "L3", "liver", "non_target", "not_seen")
    add(100, "c", "L1", "lung", "target", "seen", 32.0, 23.0, field=True)
    add(100, "c", "L2", "lymph_node", "target", "seen", 28.0, 26.0, node=True)
    add(100, "c", "L3", "liver", "non_target", "not_seen")
    add(100, "c", "L4", "adrenal", "new_target", "seen", 14.0, 11.0)
    return pd.DataFrame(rows)


def _assessments() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "source_event_id": ["a", "b", "c"],
            "observed_at": [_t(0), _t(50), _t(100)],
            "timepoint": [0, 1, 2],
            "irecist_state": [2, 2, 3],
            "recist": [None, "SD", "PD"],
            "target_response": [None, "SD", "SD"],
            "nontarget_response": [None, "CR", "CR"],
            "reason": ["baseline", "iSD", "iUPD: new lesions"],
            "sum_diameters_mm": [60.0, 54.0, 58.0],
            "in_field_sum_mm": [40.0, 30.0, 32.0],
            "out_of_field_sum_mm": [28.0, 24.0, 40.0],
            "new_lesions": [0, 0, 1],
            "lesions_seen": [3, 2, 3],
            "lesions_not_evaluable": [0, 0, 0],
            "model_name": ["irtmon-lesions"] * 3,
            "model_version": ["1.0"] * 3,
        }
    )


def test_lesion_sums_and_labels() -> None:
    a = charts.lesion_sums(_assessments())
    assert list(a["label"]) == ["baseline", "SD · iSD", "PD · iUPD"]
    assert list(a["pct_from_baseline"].round(1)) == [0.0, -10.0, -3.3]
    assert list(a["pct_from_nadir"].round(1)) == [0.0, -10.0, 7.4]
    assert list(a["out_of_field_pct"].round(1)) == [0.0, -14.3, 42.9]


def _with_a_not_evaluable_scan() -> pd.DataFrame:
    """The three scans above with a not-evaluable one between the first two: two of its three
    lesions seen, so its stored sum (20 mm) counts only those."""
    a = _assessments()
    ne = a.iloc[[1]].copy()
    ne["source_event_id"], ne["observed_at"], ne["irecist_state"] = "ne", _t(25), 5
    ne["recist"], ne["target_response"], ne["reason"] = "NE", "NE", "iNE: not evaluable"
    ne["sum_diameters_mm"], ne["in_field_sum_mm"], ne["out_of_field_sum_mm"] = 20.0, 5.0, 15.0
    ne["lesions_seen"], ne["lesions_not_evaluable"] = 2, 1
    return pd.concat([a, ne]).sort_values("observed_at").reset_index(drop=True)


def test_a_not_evaluable_scan_has_no_sums_and_is_no_nadir() -> None:
    a = charts.lesion_sums(_with_a_not_evaluable_scan())
    assert list(a["label"]) == ["baseline", "NE · iNE", "SD · iSD", "PD · iUPD"]
    assert list(a["evaluable"]) == [True, False, True, True]
    assert a["sum_diameters_mm"].isna().tolist() == [False, True, False, False]
    # the scans after it as without it: the partial 20 mm is no nadir
    assert list(a["pct_from_nadir"].round(1).dropna()) == [0.0, -10.0, 7.4]
    assert list(a["pct_from_baseline"].round(1).dropna()) == [0.0, -10.0, -3.3]
    assert list(a["out_of_field_pct"].round(1).dropna()) == [0.0, -14.3, 42.9]
    fig = charts.timeline_figure(
        {
            "scores": pd.DataFrame(),
            "burden": pd.DataFrame(),
            "treatments": pd.DataFrame(),
            "alerts": pd.DataFrame(),
            "actions": pd.DataFrame(),
            "lesions": _lesion_rows(),
            "assessments": _with_a_not_evaluable_scan(),
        }
    )
    (ne,) = [t for t in fig.data if t.name == "not evaluable (NE)"]
    assert list(ne.text) == ["NE · iNE"] and list(ne.y) == [0.0]  # on the last known value
    assert "not evaluable: no sum of diameters" in ne.hovertext[0]


def test_lesion_table_reads_as_a_radiologist_would() -> None:
    table = charts.lesion_table(_lesion_rows(), "c")
    assert list(table["Lesion"]) == ["L1", "L2", "L3", "L4"]  # targets, non-target, new
    by = table.set_index("Lesion")
    assert by.loc["L1", "Field"] == "in field" and by.loc["L2", "Field"] == "out of field"
    assert by.loc["L1", "vs baseline"] == "-20 %" and by.loc["L1", "vs nadir"] == "+7 %"
    assert by.loc["L2", "vs baseline"] == "+30 %"  # a node: its short axis, 20 -> 26 mm
    assert "short axis" in by.loc["L2", "Note"]
    assert by.loc["L3", "Note"] == "not seen (0 mm)" and by.loc["L3", "Obtained"] == "—"
    assert (
        by.loc["L4", "RECIST role"] == "new target" and by.loc["L4", "Note"] == "new at this scan"
    )
    assert by.loc["L1", "Obtained"] == "annotated (seg)"


def test_timeline_draws_one_curve_per_lesion() -> None:
    empty = pd.DataFrame()
    data = {
        "scores": empty,
        "burden": empty,
        "treatments": empty,
        "alerts": empty,
        "actions": empty,
        "lesions": _lesion_rows(),
        "assessments": _assessments(),
    }
    fig = charts.timeline_figure(data)
    traces = {t.name: t for t in fig.data}
    for name in (
        "L1 lung (target)",
        "L2 lymph node (target)",
        "L3 liver (non-target)",
        "L4 adrenal (new target)",
        "target sum, % from baseline",
        "in-field sum, % from baseline",
        "out-of-field sum, % from baseline",
    ):
        assert name in traces, name
    assert traces["L1 lung (target)"].line.dash == "solid"  # in field
    assert traces["L3 liver (non-target)"].line.dash == "dash"  # out of field
    assert list(traces["L3 liver (non-target)"].y) == [8.0, 0.0, 0.0]  # gone: 0 mm
    assert list(traces["L2 lymph node (target)"].y) == [20.0, 24.0, 26.0]  # short axis
    assert list(traces["L4 adrenal (new target)"].marker.symbol) == ["star"]
    assert any(a.text == "new L4" for a in fig.layout.annotations)
    assert list(traces["target sum, % from baseline"].text) == ["baseline", "SD · iSD", "PD · iUPD"]
    assert len(fig.layout.annotations) >= 5  # five panel titles and the marks


def test_outlines_are_named_and_coloured_by_field() -> None:
    hu = np.zeros((40, 40), np.float32)
    labels = np.zeros((40, 40), np.int32)
    labels[5:12, 5:12] = 1
    labels[25:35, 20:30] = 2
    colours = dict(enumerate(imaging.lesion_colours([True, False]), start=1))
    plain = imaging.render_slice(hu, (40, 400), labels, colours=colours)
    named = imaging.render_slice(hu, (40, 400), labels, colours=colours, names={1: "L1", 2: "L7"})
    assert plain.shape == named.shape
    assert (named != plain).any()  # the names are written
    assert colours[1] in imaging.IN_FIELD_RGB and colours[2] in imaging.OUT_FIELD_RGB
    mask = np.zeros((5, 8, 8), bool)
    mask[3, 2:6, 2:6] = True
    mask[1, 3, 3] = True
    assert imaging.lesion_slice_of(mask) == 3


def test_a_seen_lesion_without_a_short_axis_is_drawn_with_its_long_axis() -> None:
    rows = _lesion_rows()
    rows.loc[(rows["tracking_id"] == "L1") & (rows["source_event_id"] == "a"), "short_axis_mm"] = (
        None
    )
    empty = pd.DataFrame()
    data = {
        "scores": empty,
        "burden": empty,
        "treatments": empty,
        "alerts": empty,
        "actions": empty,
        "lesions": rows,
        "assessments": _assessments(),
    }
    traces = {t.name: t for t in charts.timeline_figure(data).data}
    l1 = traces["L1 lung (target)"]
    assert l1.y[0] == 40.0
    assert "short n/a" in str(l1.hovertext)


def test_the_last_scan_filter_left_at_its_full_range_keeps_every_patient() -> None:
    from datetime import date

    from monitoring_app.ui import last_scan_between

    frame = pd.DataFrame(
        {
            "patient": ["a", "b", "new", "none"],
            "last_scan": [_t(0), _t(30), _t(90), pd.NaT],  # "new" scanned after the page drew
        }
    )
    full = (_t(0).date(), _t(30).date())
    assert list(last_scan_between(frame, full, full)["patient"]) == ["a", "b", "new", "none"]
    assert list(last_scan_between(frame, (full[0],), full)["patient"]) == list(frame["patient"])
    narrowed = (date(2026, 1, 20), _t(30).date())
    assert list(last_scan_between(frame, narrowed, full)["patient"]) == ["b"]


def test_a_card_is_split_into_its_description_and_its_evidence() -> None:
    from monitoring_app.ui import card_parts

    assert card_parts(None) == ("", "")
    assert card_parts("A model. ") == ("A model.", "")
    body, evidence = card_parts("A model. Evidence: evaluated once under declaration x-1.")
    assert body == "A model." and evidence == "Evidence: evaluated once under declaration x-1."
