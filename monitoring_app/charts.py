"""Plotly figures of the patient timeline. Pure functions of data frames; no Streamlit here."""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from monitoring_app.vocab import (
    IRECIST_STATE,
    NO_VALUE,
    RECIST_PD,
    RECIST_PR,
    RESPONSE_PROBABILITY,
    SPECIAL_SCORES,
    IRecistState,
    carries_burden,
)

VERSION_COLOURS = ["#1f6feb", "#8250df", "#0a7d55", "#bf8700", "#cf222e"]
ALERT_COLOUR = "#d1242f"
CHANGE_COLOUR = "#e16f24"
ACTION_SYMBOL = {"acknowledge": "circle-open", "resolve": "star", "dismiss": "x"}

VIRTUAL_BIOPSY_CAVEAT = "(not shown to work)"
"""Said wherever the CT virtual biopsy is drawn: in the pre-declared evaluations its balanced
accuracy against the pathology model was 0.407 [0.362, 0.452] (response-v2-h) and 0.377
[0.339, 0.413] (response-v2-d), chance 0.333 (docs/clinicians.md)."""


def burden_table(burden: pd.DataFrame) -> pd.DataFrame:
    """Add percentage change from baseline and from the nadir before each scan (RECIST)."""
    if burden.empty:
        return burden
    b = burden.sort_values("observed_at").reset_index(drop=True).copy()
    sums = b["sum_diameters_mm"].astype(float)
    baseline = sums.iloc[0]
    prior_nadir = sums.cummin().shift(1).fillna(baseline)
    b["pct_from_baseline"] = 100.0 * (sums - baseline) / baseline
    b["pct_from_nadir"] = 100.0 * (sums - prior_nadir) / prior_nadir
    b["nadir_mm"] = prior_nadir
    return b


def _series_text(row: pd.Series) -> str:
    series = row.get("source_series")
    if isinstance(series, list | tuple) and series:
        first = str(series[0])
        more = f" +{len(series) - 1}" if len(series) > 1 else ""
        return f"{row.get('source_modality') or ''} …{first[-12:]}{more}"
    return str(row.get("source_modality") or NO_VALUE)


def timeline_figure(
    data: dict[str, pd.DataFrame], versions: list[tuple[str, str]] | None = None
) -> go.Figure:
    """Stacked panels on one time axis: burden change, every lesion (when the patient's lesions
    are tracked), response probability, immune signatures, and treatment with alerts; change
    points and alerts cross all panels.

    With tracked lesions (``data["assessments"]``, ``data["lesions"]``), the burden panel shows
    the RECIST 1.1 sum of the target lesions (labelled with the RECIST 1.1 and iRECIST category
    of each scan) and the in-field and out-of-field sums, and a panel draws one curve per lesion
    (in the radiotherapy field: solid, warm colours; outside it: dashed, cool colours), new
    lesions marked where they appear."""
    scores, treatments = data["scores"], data["treatments"]
    alerts, actions = data["alerts"], data["actions"]
    burden = burden_table(data["burden"])
    assessments = data.get("assessments", pd.DataFrame())
    lesion_mode = assessments is not None and not assessments.empty
    names = (
        ["burden", "lesions", "rp", "immune", "treat"]
        if lesion_mode
        else ["burden", "rp", "immune", "treat"]
    )
    rows = {name: i + 1 for i, name in enumerate(names)}
    titles = {
        "burden": "Tumour burden — sum of target-lesion diameters (RECIST 1.1), % change"
        if lesion_mode
        else "Tumour burden — sum of longest diameters, % change",
        "lesions": "Every lesion — RECIST diameter (mm); in field: solid, out of field: dashed",
        "rp": "Response probability (band: lower–upper)",
        "immune": "Immune signature — pathology at biopsies; CT virtual biopsy at scans "
        + VIRTUAL_BIOPSY_CAVEAT,
        "treat": "Treatment, alerts and actions",
    }
    heights = {"burden": 0.32, "lesions": 0.30, "rp": 0.30, "immune": 0.20, "treat": 0.18}
    fig = make_subplots(
        rows=len(names),
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.05 if not lesion_mode else 0.04,
        row_heights=[heights[n] for n in names],
        subplot_titles=tuple(titles[n] for n in names),
    )
    # 1 burden
    if lesion_mode:
        _lesion_sums(fig, data["assessments"], rows["burden"])
    elif not burden.empty:
        hover = [
            f"{r.sum_diameters_mm:.1f} mm ({r.n_lesions} lesions)<br>"
            f"from baseline {r.pct_from_baseline:+.1f} %, from nadir {r.pct_from_nadir:+.1f} %"
            f"<br>model {r.model_name} {r.model_version}<br>{r.modality or ''} "
            f"masks: {r.mask_sources or NO_VALUE}"
            for r in burden.itertuples()
        ]
        irecist = _irecist_labels(scores, burden["observed_at"])
        _percent_traces(fig, burden, irecist, hover, row=1, what="")
    if lesion_mode:
        _lesion_curves(fig, data.get("lesions", pd.DataFrame()), rows["lesions"])
    # 2 response probability, one trace (and band) per model version
    rp = scores[scores["score_name"] == RESPONSE_PROBABILITY] if not scores.empty else scores
    if not rp.empty:
        keys = sorted({(r.model_name, r.model_version) for r in rp.itertuples()})
        for i, (name, version) in enumerate(keys):
            if versions is not None and (name, version) not in versions:
                continue
            s = rp[(rp["model_name"] == name) & (rp["model_version"] == version)]
            colour = VERSION_COLOURS[i % len(VERSION_COLOURS)]
            label = f"{name} {version}"
            if s["lower"].notna().any():
                fig.add_trace(
                    go.Scatter(
                        x=list(s["observed_at"]) + list(s["observed_at"])[::-1],
                        y=list(s["upper"].fillna(s["value"]))
                        + list(s["lower"].fillna(s["value"]))[::-1],
                        mode="lines",
                        fill="toself",
                        fillcolor=_alpha(colour, 0.15),
                        line={"width": 0},
                        hoverinfo="skip",
                        showlegend=False,
                        legendgroup=label,
                    ),
                    row=rows["rp"],
                    col=1,
                )
            fig.add_trace(
                go.Scatter(
                    x=s["observed_at"],
                    y=s["value"],
                    mode="lines+markers",
                    name=label,
                    legendgroup=label,
                    line={"color": colour, "width": 2},
                    customdata=list(
                        zip(s["lower"], s["upper"], s.apply(_series_text, axis=1), strict=True)
                    ),
                    hovertemplate=(
                        f"<b>P(response) %{{y:.2f}}</b> (%{{customdata[0]:.2f}}–"
                        f"%{{customdata[1]:.2f}})<br>model {name} {version}<br>"
                        "source %{customdata[2]}<extra></extra>"
                    ),
                ),
                row=rows["rp"],
                col=1,
            )
        fig.add_hline(
            y=0.5, line={"color": "#d0d7de", "dash": "dot", "width": 1}, row=rows["rp"], col=1
        )
    # 3 immune signatures
    if not scores.empty:
        other = scores[~scores["score_name"].isin(SPECIAL_SCORES)]
        for (name, kind, model, version), s in other.groupby(
            ["score_name", "source_kind", "model_name", "model_version"], dropna=False
        ):
            biopsy = kind == "biopsy"
            fig.add_trace(
                go.Scatter(
                    x=s["observed_at"],
                    y=s["value"],
                    mode="markers" if biopsy else "lines+markers",
                    name=f"{name.replace('_', ' ')} ({model} {version})",
                    marker={
                        "size": 14 if biopsy else 7,
                        "symbol": "diamond" if biopsy else "circle",
                        "color": "#bf3989" if biopsy else "#0969da",
                    },
                    line={"width": 1, "color": "#0969da"},
                    error_y=_error(s),
                    customdata=s.apply(_series_text, axis=1)
                    if not biopsy
                    else s["specimen_id"].fillna(NO_VALUE),
                    hovertemplate=(
                        f"<b>{name} %{{y:.2f}}</b><br>model {model} {version}<br>"
                        + ("specimen" if biopsy else "source")
                        + " %{customdata}<extra></extra>"
                    ),
                ),
                row=rows["immune"],
                col=1,
            )
    # 4 treatment, alerts and actions on a categorical track
    tracks = ["Actions", "Alerts", "Immunotherapy", "Radiotherapy"]
    if not treatments.empty:
        rt = treatments[treatments["kind"] == "rt_fraction"]
        ici = treatments[treatments["kind"] == "immunotherapy_dose"]
        fig.add_trace(
            go.Scatter(
                x=rt["occurred_at"],
                y=["Radiotherapy"] * len(rt),
                mode="markers",
                name="RT fraction",
                marker={
                    "symbol": "line-ns-open",
                    "size": 12,
                    "color": "#bc4c00",
                    "line": {"width": 2},
                },
                customdata=[_fraction_text(d) for d in rt["detail"]],
                hovertemplate="%{customdata}<extra></extra>",
            ),
            row=rows["treat"],
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=ici["occurred_at"],
                y=["Immunotherapy"] * len(ici),
                mode="markers",
                name="ICI cycle",
                marker={"symbol": "triangle-up", "size": 11, "color": "#0a7d55"},
                customdata=[_ici_text(d) for d in ici["detail"]],
                hovertemplate="%{customdata}<extra></extra>",
            ),
            row=rows["treat"],
            col=1,
        )
    if not alerts.empty:
        fig.add_trace(
            go.Scatter(
                x=alerts["opened_at"],
                y=["Alerts"] * len(alerts),
                mode="markers",
                name="alert opened",
                marker={"symbol": "diamond", "size": 13, "color": ALERT_COLOUR},
                customdata=list(
                    zip(
                        alerts["kind"].str.replace("_", " "),
                        alerts["status"],
                        alerts["probability"],
                        strict=True,
                    )
                ),
                hovertemplate="<b>%{customdata[0]}</b> (%{customdata[1]})<br>"
                "P %{customdata[2]:.2f}<extra></extra>",
            ),
            row=rows["treat"],
            col=1,
        )
        for at in alerts["change_at"].dropna().unique():
            fig.add_vline(
                x=pd.Timestamp(at).to_pydatetime(),
                line={"color": CHANGE_COLOUR, "dash": "dash", "width": 1.5},
            )
        first = alerts["change_at"].dropna()
        if not first.empty:
            fig.add_annotation(
                x=pd.Timestamp(first.min()).to_pydatetime(),
                y=1.0,
                yref="paper",
                text="change point",
                showarrow=False,
                xanchor="left",
                font={"color": CHANGE_COLOUR, "size": 11},
            )
    if not actions.empty:
        fig.add_trace(
            go.Scatter(
                x=actions["at"],
                y=["Actions"] * len(actions),
                mode="markers",
                name="alert action",
                marker={
                    "symbol": [ACTION_SYMBOL.get(a, "circle") for a in actions["action"]],
                    "size": 12,
                    "color": "#24292f",
                    "line": {"width": 2},
                },
                customdata=list(
                    zip(
                        actions["action"],
                        actions["actor"],
                        [(d or {}).get("note") or "" for d in actions["detail"]],
                        strict=True,
                    )
                ),
                hovertemplate="<b>%{customdata[0]}</b> by %{customdata[1]}<br>"
                "%{customdata[2]}<extra></extra>",
            ),
            row=rows["treat"],
            col=1,
        )
    fig.update_yaxes(title_text="% change", ticksuffix="%", row=1, col=1, zeroline=False)
    if lesion_mode:
        fig.update_yaxes(title_text="mm", rangemode="tozero", row=rows["lesions"], col=1)
    fig.update_yaxes(title_text="P(response)", range=[0, 1], row=rows["rp"], col=1)
    fig.update_yaxes(title_text="score", range=[0, 1.05], row=rows["immune"], col=1)
    fig.update_yaxes(
        categoryorder="array", categoryarray=tracks, type="category", row=rows["treat"], col=1
    )
    fig.update_layout(
        height=1180 if lesion_mode else 860,
        margin={"l": 70, "r": 20, "t": 40, "b": 30},
        template="plotly_white",
        legend={"orientation": "h", "y": -0.04, "x": 0, "font": {"size": 11}},
        hovermode="closest",
    )
    for ann in fig.layout.annotations[: len(names)]:
        ann.update(font={"size": 13, "color": "#24292f"}, x=0, xanchor="left")
    return fig


# ----------------------------------------------------------------------------- lesions

IN_FIELD_COLOURS = ["#d4580b", "#b3261e", "#e8a317", "#8a4b08"]
"""Lesions in the radiotherapy field: warm colours, solid lines."""
OUT_FIELD_COLOURS = ["#0969da", "#1a7f37", "#8250df", "#0598bc", "#3b4cc0", "#2da44e", "#6639ba"]
"""Lesions outside the field (or not known to be in it): cool colours, dashed lines."""
ROLE_LABEL = {
    "target": "target",
    "non_target": "non-target",
    "new_target": "new target",
    "new_non_target": "new non-target",
    "normal_node": "normal node",
}
ROLE_ORDER = {"target": 0, "non_target": 1, "new_target": 2, "new_non_target": 3, "normal_node": 4}


def _organ(organ: object) -> str:
    return str(organ or "").replace("_", " ")


def _number(tracking_id: str) -> int:
    digits = "".join(c for c in str(tracking_id) if c.isdigit())
    return int(digits) if digits else 0


def assessment_label(row: pd.Series | dict) -> str:
    """``PD · iUPD`` (RECIST 1.1 overall response and iRECIST state) of one scan, ``baseline``
    at the first."""
    if int(row["timepoint"]) == 0:
        return "baseline"
    state = IRecistState.from_value(float(row["irecist_state"]))
    recist = row.get("recist") or NO_VALUE
    return f"{recist} · {state.label if state else NO_VALUE}"


SUM_COLUMNS = ("sum_diameters_mm", "in_field_sum_mm", "out_of_field_sum_mm")


def lesion_sums(assessments: pd.DataFrame) -> pd.DataFrame:
    """Per scan: the target sum's change from baseline and from the nadir before it (RECIST),
    and the in-field and out-of-field sums' change from their own baseline.

    A not-evaluable scan (iNE, ``evaluable`` False) has no sums (NaN): those stored count only
    the lesions seen (:func:`schemas.enums.carries_burden`); the nadir passes over it."""
    if assessments.empty:
        return assessments
    a = assessments.sort_values("observed_at").reset_index(drop=True).copy()
    a["evaluable"] = [carries_burden(IRecistState.from_value(float(v))) for v in a["irecist_state"]]
    for col in SUM_COLUMNS:
        a[col] = a[col].astype(float).where(a["evaluable"])
    sums = a["sum_diameters_mm"]
    baseline = sums.iloc[0]
    nadir = sums.cummin().ffill().shift(1).fillna(baseline)
    a["pct_from_baseline"] = 100.0 * (sums - baseline) / baseline if baseline else 0.0
    a["pct_from_nadir"] = [
        100.0 * (v - n) / n if n else 0.0 for v, n in zip(sums, nadir, strict=True)
    ]
    a.loc[~a["evaluable"], ["pct_from_baseline", "pct_from_nadir"]] = math.nan
    a["nadir_before_mm"] = nadir
    for col in ("in_field_sum_mm", "out_of_field_sum_mm"):
        first = float(a[col].iloc[0])
        a[col.replace("_sum_mm", "_pct")] = (
            100.0 * (a[col].astype(float) - first) / first if first else float("nan")
        )
    a["label"] = [assessment_label(r) for _, r in a.iterrows()]
    return a


def _percent_traces(
    fig: go.Figure,
    frame: pd.DataFrame,
    labels: object,
    hover: list[str],
    *,
    row: int,
    what: str,
    lines: bool = True,
) -> None:
    """The burden panel's two curves: ``pct_from_baseline`` (labelled with each scan's
    assessment) and ``pct_from_nadir``, named ``what`` + "% from ..."; with ``lines``, the
    RECIST lines too."""
    fig.add_trace(
        go.Scatter(
            x=frame["observed_at"],
            y=frame["pct_from_baseline"],
            mode="lines+markers+text",
            connectgaps=True,  # over a not-evaluable scan
            name=f"{what}% from baseline",
            line={"color": "#1f2328", "width": 2.5},
            marker={"size": 8},
            text=labels,
            textposition="top center",
            textfont={"size": 11, "color": "#57606a"},
            hovertext=hover,
            hoverinfo="text+x",
        ),
        row=row,
        col=1,
    )
    fig.add_trace(
        go.Scatter(
            x=frame["observed_at"],
            y=frame["pct_from_nadir"],
            mode="lines+markers",
            connectgaps=True,
            name=f"{what}% from nadir",
            line={"color": "#6e7781", "dash": "dot"},
            marker={"size": 6, "symbol": "square"},
            hovertext=hover,
            hoverinfo="text+x",
        ),
        row=row,
        col=1,
    )
    if lines:
        _recist_lines(fig, row)


def _recist_lines(fig: go.Figure, row: int) -> None:
    """RECIST 1.1's thresholds on a panel of % change: +20 % from nadir, −30 % from
    baseline, and zero."""
    fig.add_hline(
        y=RECIST_PD,
        line={"color": ALERT_COLOUR, "dash": "dash", "width": 1},
        annotation_text="+20 % from nadir (PD)",
        annotation_position="top left",
        annotation_font_color=ALERT_COLOUR,
        row=row,
        col=1,
    )
    fig.add_hline(
        y=RECIST_PR,
        line={"color": "#0a7d55", "dash": "dash", "width": 1},
        annotation_text="−30 % from baseline (PR)",
        annotation_position="bottom left",
        annotation_font_color="#0a7d55",
        row=row,
        col=1,
    )
    fig.add_hline(y=0, line={"color": "#d0d7de", "width": 1}, row=row, col=1)


def _lesion_sums(fig: go.Figure, assessments: pd.DataFrame, row: int) -> None:
    a = lesion_sums(assessments)
    hover = [
        (
            f"<b>{r.label}</b><br>target sum {r.sum_diameters_mm:.1f} mm: "
            f"{r.pct_from_baseline:+.1f} % from baseline, {r.pct_from_nadir:+.1f} % from nadir<br>"
            f"in field {r.in_field_sum_mm:.1f} mm · out of field {r.out_of_field_sum_mm:.1f} mm<br>"
            if r.evaluable
            else f"<b>{r.label}</b><br>not evaluable: no sum of diameters<br>"
        )
        + f"new lesions {r.new_lesions} · seen {r.lesions_seen}"
        + (f" · not evaluable {r.lesions_not_evaluable}" if r.lesions_not_evaluable else "")
        + f"<br>{r.reason}"
        for r in a.itertuples()
    ]
    _percent_traces(fig, a, a["label"], hover, row=row, what="target sum, ", lines=False)
    ne = a[~a["evaluable"]]
    if not ne.empty:  # on the last known value's line, labelled, so the scan is not lost
        at = a["pct_from_baseline"].ffill().fillna(0.0)[ne.index]
        fig.add_trace(
            go.Scatter(
                x=ne["observed_at"],
                y=at,
                mode="markers+text",
                name="not evaluable (NE)",
                marker={"size": 11, "symbol": "x-open", "color": "#57606a"},
                text=ne["label"],
                textposition="top center",
                textfont={"size": 11, "color": "#57606a"},
                hovertext=[hover[i] for i in ne.index],
                hoverinfo="text+x",
            ),
            row=row,
            col=1,
        )
    for col, name, colour, dash in (
        ("in_field_pct", "in-field sum, % from baseline", IN_FIELD_COLOURS[0], "solid"),
        ("out_of_field_pct", "out-of-field sum, % from baseline", OUT_FIELD_COLOURS[0], "dash"),
    ):
        if a[col].notna().any():
            fig.add_trace(
                go.Scatter(
                    x=a["observed_at"],
                    y=a[col],
                    mode="lines+markers",
                    connectgaps=True,
                    name=name,
                    line={"color": colour, "dash": dash, "width": 1.5},
                    marker={"size": 6, "symbol": "diamond"},
                    hovertext=hover,
                    hoverinfo="text+x",
                ),
                row=row,
                col=1,
            )
    _recist_lines(fig, row)


def _mm(value: object) -> str:
    """A length for a hover text: ``12.3 mm``, or ``n/a`` where none was measured."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{float(value):.1f} mm"


def lesion_diameter(row: pd.Series | dict) -> float | None:
    """A lesion row's RECIST diameter: short axis of a node, long axis otherwise; 0 when not
    seen; None when not evaluable."""
    if row["status"] == "not_evaluable":
        return None
    if row["status"] == "not_seen":
        return 0.0
    value = row["short_axis_mm"] if row["is_node"] else row["long_axis_mm"]
    return None if value is None or pd.isna(value) else float(value)


def _lesion_curves(fig: go.Figure, lesions: pd.DataFrame, row: int) -> None:
    if lesions.empty:
        return
    firsts = lesions.groupby("tracking_uid")["observed_at"].min()
    order = sorted(
        lesions["tracking_uid"].unique(),
        key=lambda u: _number(lesions[lesions["tracking_uid"] == u]["tracking_id"].iloc[-1]),
    )
    warm = cool = 0
    for uid in order:
        ls = lesions[lesions["tracking_uid"] == uid].sort_values("observed_at")
        last = ls.iloc[-1]
        in_field = last["in_field"] is True or last["in_field"] == True  # noqa: E712
        if in_field:
            colour, dash = IN_FIELD_COLOURS[warm % len(IN_FIELD_COLOURS)], "solid"
            warm += 1
        else:
            colour, dash = OUT_FIELD_COLOURS[cool % len(OUT_FIELD_COLOURS)], "dash"
            cool += 1
        role = ROLE_LABEL.get(str(last["role"]), str(last["role"]))
        name = f"{last['tracking_id']} {_organ(last['organ'])} ({role})"
        ys = [lesion_diameter(r) for _, r in ls.iterrows()]
        is_new = str(last["role"]).startswith("new")
        symbols = [
            "star"
            if is_new and t == firsts[uid]
            else ("circle-open" if r["status"] != "seen" else "circle")
            for t, (_, r) in zip(ls["observed_at"], ls.iterrows(), strict=True)
        ]
        hover = [
            f"<b>{r['tracking_id']}</b> {_organ(r['organ'])} · {role} · "
            f"{'in field' if in_field else 'out of field'}<br>"
            + (
                f"long {_mm(r['long_axis_mm'])}, short {_mm(r['short_axis_mm'])}, "
                f"{r['volume_ml']:.2f} ml<br>{r['origin']} ({r['mask_source']})"
                if r["status"] == "seen"
                else ("not seen" if r["status"] == "not_seen" else f"not evaluable: {r['failure']}")
            )
            for _, r in ls.iterrows()
        ]
        fig.add_trace(
            go.Scatter(
                x=ls["observed_at"],
                y=ys,
                mode="lines+markers",
                name=name,
                legendgroup="lesions",
                line={"color": colour, "dash": dash, "width": 2},
                marker={
                    "size": [15 if s == "star" else 7 for s in symbols],
                    "symbol": symbols,
                    "color": colour,
                    "line": {"width": 1, "color": colour},
                },
                hovertext=hover,
                hoverinfo="text+x",
                connectgaps=False,
            ),
            row=row,
            col=1,
        )
        if is_new:
            first = ls[ls["observed_at"] == firsts[uid]].iloc[0]
            fig.add_annotation(
                x=first["observed_at"],
                y=lesion_diameter(first) or 0.0,
                text=f"new {first['tracking_id']}",
                showarrow=True,
                arrowhead=2,
                ax=0,
                ay=-28,
                font={"size": 11, "color": colour},
                row=row,
                col=1,
            )


def lesion_table(lesions: pd.DataFrame, source_event_id: object) -> pd.DataFrame:
    """The lesions of one scan as a radiologist reads them: tracking id, site, field, RECIST
    role, long and short axis, volume, change of the RECIST diameter from the lesion's
    baseline (its first measurement) and from its nadir before this scan, how it was obtained,
    and a note (not seen, not evaluable and why, new)."""
    if lesions.empty:
        return pd.DataFrame()
    at = lesions[lesions["source_event_id"] == source_event_id]
    if at.empty:
        return pd.DataFrame()
    when = at["observed_at"].iloc[0]
    out = []
    for _, r in at.iterrows():
        history = lesions[
            (lesions["tracking_uid"] == r["tracking_uid"]) & (lesions["observed_at"] < when)
        ].sort_values("observed_at")
        earlier = [d for d in (lesion_diameter(h) for _, h in history.iterrows()) if d is not None]
        d = lesion_diameter(r)
        base = earlier[0] if earlier else None
        nadir = min(earlier) if earlier else None

        def change(ref: float | None, d: float | None = d) -> str:
            if d is None or ref is None:
                return NO_VALUE
            if ref == 0:
                return "new since 0 mm" if d > 0 else "0 mm"
            return f"{100.0 * (d - ref) / ref:+.0f} %"

        role = str(r["role"])
        if r["status"] == "not_seen":
            note = "not seen (0 mm)"
        elif r["status"] == "not_evaluable":
            note = f"not evaluable: {r['failure'] or 'unreadable'}"
        elif role.startswith("new") and history.empty:
            note = "new at this scan"
        else:
            note = ""
        if r["is_node"] and r["status"] == "seen":
            note = (note + "; " if note else "") + "node: short axis counts"
        out.append(
            {
                "Lesion": r["tracking_id"],
                "Site": _organ(r["organ"]),
                "Field": "in field" if r["in_field"] is True else "out of field",
                "RECIST role": ROLE_LABEL.get(role, role),
                "Long axis (mm)": _round(r["long_axis_mm"], 1),
                "Short axis (mm)": _round(r["short_axis_mm"], 1),
                "Volume (ml)": _round(r["volume_ml"], 2),
                "vs baseline": change(base),
                "vs nadir": change(nadir),
                "Obtained": (
                    f"{r['origin']} ({r['mask_source']})" if r["status"] == "seen" else NO_VALUE
                ),
                "Note": note,
                "_order": (ROLE_ORDER.get(role, 9), _number(r["tracking_id"])),
            }
        )
    table = pd.DataFrame(out).sort_values("_order").drop(columns="_order")
    return table.reset_index(drop=True)


def _round(value: object, digits: int) -> float | None:
    if value is None or pd.isna(value):  # type: ignore[arg-type]
        return None
    return round(float(value), digits)  # type: ignore[arg-type]


def _irecist_labels(scores: pd.DataFrame, times: pd.Series) -> list[str]:
    if scores.empty:
        return [""] * len(times)
    st_rows = scores[scores["score_name"] == IRECIST_STATE]
    by_time = {pd.Timestamp(r.observed_at): r.value for r in st_rows.itertuples()}
    out = []
    for t in times:
        state = IRecistState.from_value(by_time.get(pd.Timestamp(t)))
        out.append(state.label if state else "")
    return out


def _error(s: pd.DataFrame) -> dict | None:
    if s["lower"].isna().all():
        return None
    return {
        "type": "data",
        "symmetric": False,
        "array": (s["upper"] - s["value"]).fillna(0),
        "arrayminus": (s["value"] - s["lower"]).fillna(0),
        "thickness": 1,
        "width": 3,
    }


def _fraction_text(d: dict) -> str:
    return f"RT fraction {d.get('fraction_number', '?')} · {d.get('dose_gy', 0):.2f} Gy"


def _ici_text(d: dict) -> str:
    return f"{d.get('agent', 'ICI')} cycle {d.get('cycle', '?')} · {d.get('dose_mg', 0):g} mg"


def _alpha(hex_colour: str, a: float) -> str:
    h = hex_colour.lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{a})"
