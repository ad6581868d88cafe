"""Cohort: one row per patient, riskiest first, with filters and a live refresh."""

from __future__ import annotations

from datetime import date

import pandas as pd
import streamlit as st

from monitoring_app import data, ui
from monitoring_app.vocab import NO_VALUE, IRecistState

user = ui.user()
st.title("Cohort")

frame = data.cohort(data.dsn(), user.cohorts)
if frame.empty:
    st.info("No patient in your cohorts yet. Scores appear here as the workers store them.")
    st.stop()

with st.container(border=True):
    c1, c2, c3, c4, c5 = st.columns([1.3, 1, 1, 1.2, 1.2])
    search = c1.text_input("Search pseudonym", placeholder="psn-…", key="f_search")
    states = c2.multiselect(
        "iRECIST status", [s.label for s in IRecistState] + [NO_VALUE], key="f_status"
    )
    alert_filter = c3.selectbox(
        "Alerts",
        ["All patients", "With active alert", "Open (unacknowledged)", "No alert"],
        key="f_alert",
    )
    arms = c4.multiselect("Treatment arm", sorted(frame["arm"].dropna().unique()), key="f_arm")
    scans = pd.to_datetime(frame["last_scan"]).dropna()
    lo = scans.min().date() if not scans.empty else date.today()
    hi = scans.max().date() if not scans.empty else date.today()
    # keyed by its bounds: a new range of scans draws the filter afresh at the full range
    period = c5.date_input("Last scan between", (lo, hi), key=f"f_date_{lo}_{hi}")


@st.fragment(run_every=data.REFRESH_S)
def table(search: str, states: list[str], alert_filter: str, arms: list[str], period, full) -> None:
    live = ui.live_user()  # a disabled user or a changed cohort stops the live refresh
    df = data.cohort(data.dsn(), live.cohorts).copy()
    df["iRECIST"] = df["irecist_code"].map(ui.irecist)
    df["active"] = df["open_alerts"] + df["acknowledged_alerts"]
    shown = df
    if search.strip():
        shown = shown[shown["patient"].str.contains(search.strip().lower(), regex=False)]
    if states:
        shown = shown[shown["iRECIST"].isin(states)]
    if alert_filter == "With active alert":
        shown = shown[shown["active"] > 0]
    elif alert_filter == "Open (unacknowledged)":
        shown = shown[shown["open_alerts"] > 0]
    elif alert_filter == "No alert":
        shown = shown[shown["active"] == 0]
    if arms:
        shown = shown[shown["arm"].isin(arms)]
    shown = ui.last_scan_between(shown, period, full)

    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Patients shown", f"{len(shown)} / {len(df)}")
    m2.metric("Open alerts", int(shown["open_alerts"].sum()))
    m3.metric("P(response) < 0.3", int((shown["response_probability"] < 0.3).sum()))
    median = shown["response_probability"].median()
    m4.metric("Median P(response)", ui.prob(median))

    view = pd.DataFrame(
        {
            "Patient": shown["patient"],
            "Cohort": shown["cohort"],
            "Arm": shown["arm"].fillna(NO_VALUE),
            "Last scan": pd.to_datetime(shown["last_scan"])
            .dt.strftime("%Y-%m-%d")
            .fillna(NO_VALUE),
            "P(response)": shown["response_probability"],
            "Band": [
                ui.band(v, lo_, hi_)
                for v, lo_, hi_ in zip(
                    shown["response_probability"], shown["lower"], shown["upper"], strict=True
                )
            ],
            "iRECIST": shown["iRECIST"],
            "Open alerts": shown["open_alerts"].astype(int),
            "Ack'd": shown["acknowledged_alerts"].astype(int),
            "Trend": shown["trend"],
            "Model": (shown["model_name"].fillna("") + " " + shown["model_version"].fillna(""))
            .str.strip()
            .replace("", NO_VALUE),
        }
    )
    event = st.dataframe(
        view,
        hide_index=True,
        width="stretch",
        height=min(38 + 35 * len(view), 640),
        on_select="rerun",
        selection_mode="single-row",
        key="cohort_table",
        column_config={
            "P(response)": st.column_config.ProgressColumn(
                "P(response)",
                min_value=0.0,
                max_value=1.0,
                format="%.2f",
                help="Current response probability (promoted model version); green above "
                "0.5, red below",
                color="auto",
            ),
            "Band": st.column_config.TextColumn("P (lower–upper)"),
            "Trend": st.column_config.LineChartColumn(
                "Trend",
                y_min=0.0,
                y_max=1.0,
                help="Response probability at each scan; green when rising, red when falling",
                color="auto",
            ),
            "Open alerts": st.column_config.NumberColumn("Open alerts", format="%d ⚠"),
        },
    )
    st.caption(
        f"Sorted by risk: patients with an active alert first, then lowest response "
        f"probability. Refreshes every {data.REFRESH_S:g} s. Select a row to open its timeline."
    )
    rows = event.selection.rows if event is not None and hasattr(event, "selection") else []
    if rows:
        st.session_state[ui.PATIENT_KEY] = view.iloc[rows[0]]["Patient"]
        st.switch_page(
            "app_pages/timeline.py", query_params={"patient": view.iloc[rows[0]]["Patient"]}
        )


table(search, states, alert_filter, arms, period, (lo, hi))
