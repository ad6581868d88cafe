"""Patient timeline: burden (every lesion, when tracked), response probability, immune
signatures, treatment and alerts; the lesions of each scan as a table."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from monitoring_app import charts, data, ui
from monitoring_app.vocab import IRECIST_STATE, NO_VALUE, RESPONSE_PROBABILITY
from schemas import percent

user = ui.user()
st.title("Patient timeline")
top = st.columns([1.4, 2.6])
with top[0]:
    patient = ui.pick_patient(user, key="timeline_patient")
if patient is None:
    st.stop()
info = data.patient(data.dsn(), patient, user.cohorts)
if info is None:
    st.error("This patient is outside your cohorts.")
    st.stop()

first = data.timeline(data.dsn(), patient, user.cohorts)
rp = first["scores"]
rp = rp[rp["score_name"] == RESPONSE_PROBABILITY] if not rp.empty else rp
keys = sorted({(r.model_name, r.model_version) for r in rp.itertuples()}) if not rp.empty else []
labels = [f"{n} {v}" for n, v in keys]
with top[1]:
    chosen = st.multiselect(
        "Response model versions",
        labels,
        default=labels,
        key="timeline_versions",
        help="After a re-score the versions are kept side by side; compare them here.",
    )


@st.fragment(run_every=data.REFRESH_S)
def _formatted(value: object, spec: str) -> str:
    """``spec`` of a number, or the no-value mark where there is none (a not-evaluable scan
    has no sums)."""
    if value is None or pd.isna(value):  # type: ignore[call-overload]
        return NO_VALUE
    return spec.format(float(value))  # type: ignore[arg-type]


def timeline(patient: str, chosen: list[str]) -> None:
    live = ui.live_user()  # a disabled user or a changed cohort stops the live refresh
    d = data.timeline(data.dsn(), patient, live.cohorts)
    scores, alerts = d["scores"], d["alerts"]
    burden = charts.burden_table(d["burden"])
    assessments = charts.lesion_sums(d.get("assessments", pd.DataFrame()))
    rp = scores[scores["score_name"] == RESPONSE_PROBABILITY] if not scores.empty else scores
    latest = rp.sort_values("observed_at").iloc[-1] if not rp.empty else None
    state = scores[scores["score_name"] == IRECIST_STATE] if not scores.empty else scores
    active = alerts[alerts["status"].isin(["open", "acknowledged"])] if not alerts.empty else alerts

    m = st.columns(6)
    m[0].metric(
        "P(response)",
        ui.prob(latest["value"]) if latest is not None else NO_VALUE,
        help=None
        if latest is None
        else f"band {ui.band(latest['value'], latest['lower'], latest['upper'])} · "
        f"{latest['model_name']} {latest['model_version']}",
    )
    if not assessments.empty:
        last = assessments.iloc[-1]
        m[1].metric(
            "RECIST 1.1 · iRECIST",
            last["label"],
            help="At the latest scan, over every tracked lesion: " + str(last["reason"]),
        )
        m[2].metric(
            "Target sum",
            _formatted(last["sum_diameters_mm"], "{:.0f} mm"),
            help="RECIST 1.1 sum of diameters of the target lesions (short axis for lymph "
            "nodes); the in-field and out-of-field sums below cover every lesion",
        )
        m[3].metric("vs baseline", _formatted(last["pct_from_baseline"], "{:+.0f} %"))
        m[4].metric("vs nadir", _formatted(last["pct_from_nadir"], "{:+.0f} %"))
    elif not burden.empty:
        m[1].metric("iRECIST", ui.irecist(state.iloc[-1]["value"]) if not state.empty else NO_VALUE)
        last = burden.iloc[-1]
        m[2].metric("Target sum", f"{last['sum_diameters_mm']:.0f} mm")
        m[3].metric("vs baseline", f"{last['pct_from_baseline']:+.0f} %")
        m[4].metric("vs nadir", f"{last['pct_from_nadir']:+.0f} %")
    else:
        m[1].metric("iRECIST", ui.irecist(state.iloc[-1]["value"]) if not state.empty else NO_VALUE)
        for i, label in ((2, "Target sum"), (3, "vs baseline"), (4, "vs nadir")):
            m[i].metric(label, NO_VALUE)
    m[5].metric("Active alerts", len(active))
    if not assessments.empty:
        last = assessments.iloc[-1]
        n = st.columns(6)
        n[0].metric(
            "In-field sum",
            _formatted(last["in_field_sum_mm"], "{:.0f} mm"),
            help="Every lesion in the radiotherapy field, target or not",
        )
        n[1].metric(
            "Out-of-field sum",
            _formatted(last["out_of_field_sum_mm"], "{:.0f} mm"),
            help="Every lesion outside the radiotherapy field, target or not (the abscopal "
            "response)",
        )
        n[2].metric("New lesions", int(last["new_lesions"]))
        n[3].metric("Lesions seen", int(last["lesions_seen"]))
        if int(last["lesions_not_evaluable"]):
            n[4].metric("Not evaluable", int(last["lesions_not_evaluable"]))
    st.caption(
        f"{patient} · cohort {info['cohort']} · arm {info['arm'] or NO_VALUE} · "
        f"refreshes every {data.REFRESH_S:g} s"
    )
    versions = [tuple(label.rsplit(" ", 1)) for label in chosen]
    fig = charts.timeline_figure(d, versions)  # type: ignore[arg-type]
    st.plotly_chart(fig, width="stretch", key="timeline_chart", config={"displaylogo": False})
    checks = d.get("slide_checks", pd.DataFrame())
    if not checks.empty:
        st.subheader("Immune signature: slide checks")
        for warning in ui.slide_check_warnings(checks):
            st.warning(warning, icon=":material/warning:")
        st.dataframe(
            ui.slide_checks_table(checks),
            hide_index=True,
            width="stretch",
            key="timeline_slide_checks",
        )
        st.caption(
            "Stain: the model reads H&E only. Distribution: how far each slide lies from the "
            "slides the model was trained on; a shifted or out-of-distribution slide widens "
            "the signature's band towards the training average."
        )
    if not assessments.empty:
        lesion_table(d["lesions"], assessments)
    if not alerts.empty:
        st.subheader("Alerts of this patient")
        st.dataframe(
            pd.DataFrame(
                {
                    "Opened": [ui.when(t) for t in alerts["opened_at"]],
                    "Kind": alerts["kind"].map(ui.KIND_LABEL),
                    "Status": alerts["status"],
                    "Confidence": [percent(p) for p in alerts["probability"]],
                    "Change at": [ui.day(t) for t in alerts["change_at"]],
                    "Acknowledged": [
                        f"{b} {ui.when(t)}" if isinstance(b, str) else NO_VALUE
                        for b, t in zip(
                            alerts["acknowledged_by"], alerts["acknowledged_at"], strict=True
                        )
                    ],
                    "Closed": [
                        f"{b} {ui.when(t)}: {r}" if isinstance(b, str) else NO_VALUE
                        for b, t, r in zip(
                            alerts["closed_by"],
                            alerts["closed_at"],
                            alerts["close_reason"],
                            strict=True,
                        )
                    ],
                    "Summary": alerts["summary"],
                }
            ),
            hide_index=True,
            width="stretch",
            key="timeline_alerts",
        )


def lesion_table(lesions: pd.DataFrame, assessments: pd.DataFrame) -> None:
    """The lesions of one scan (the latest by default), with the scan's RECIST 1.1 and
    iRECIST assessment."""
    st.subheader("Lesions per scan")
    scans = list(assessments.itertuples())
    i = st.selectbox(
        "Scan",
        range(len(scans)),
        index=len(scans) - 1,
        format_func=lambda k: f"{ui.day(scans[k].observed_at)} · {scans[k].label}",
        key="timeline_lesion_scan",
    )
    a = scans[i]
    parts = [f"**{a.label}**"]
    if a.timepoint > 0:
        parts.append(
            f"target {a.target_response or NO_VALUE} · non-target "
            f"{a.nontarget_response or NO_VALUE} · new lesions {a.new_lesions}"
        )
    if a.evaluable:
        parts.append(
            f"sum of target diameters {a.sum_diameters_mm:.1f} mm · in field "
            f"{a.in_field_sum_mm:.1f} mm · out of field {a.out_of_field_sum_mm:.1f} mm"
        )
    else:
        parts.append("not evaluable: no sum of diameters (the lesions not measured are below)")
    st.markdown(" — ".join(parts))
    st.caption(f"{a.reason} · {a.model_name} {a.model_version}")
    table = charts.lesion_table(lesions, a.source_event_id)
    st.dataframe(table, hide_index=True, width="stretch", key="timeline_lesions")
    failures = a.failures if isinstance(a.failures, list) else []
    for f in failures:
        st.warning(f"Not measured: {f.get('message')}")


timeline(patient, chosen)
