"""Plotly figures of the patient timeline. Pure functions of data frames; no Streamlit here."""

from __future__ import annotations

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
)

VERSION_COLOURS = ["#1f6feb", "#8250df", "#0a7d55", "#bf8700", "#cf222e"]
ALERT_COLOUR = "#d1242f"
CHANGE_COLOUR = "#e16f24"
ACTION_SYMBOL = {"acknowledge": "circle-open", "resolve": "star", "dismiss": "x"}


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
    """Four stacked panels on one time axis: burden change, response probability, immune
    signatures, and treatment with alerts; change points and alerts cross all panels."""
    scores, treatments = data["scores"], data["treatments"]
    alerts, actions = data["alerts"], data["actions"]
    burden = burden_table(data["burden"])
    fig = make_subplots(
        rows=4,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.05,
        row_heights=[0.32, 0.30, 0.20, 0.18],
        subplot_titles=(
            "Tumour burden — sum of longest diameters, % change",
            "Response probability (band: lower–upper)",
            "Immune signature — pathology at biopsies, CT virtual biopsy at scans",
            "Treatment, alerts and actions",
        ),
    )
    # 1 burden
    if not burden.empty:
        hover = [
            f"{r.sum_diameters_mm:.1f} mm ({r.n_lesions} lesions)<br>"
            f"from baseline {r.pct_from_baseline:+.1f} %, from nadir {r.pct_from_nadir:+.1f} %"
            f"<br>model {r.model_name} {r.model_version}<br>{r.modality or ''} "
            f"masks: {r.mask_sources or NO_VALUE}"
            for r in burden.itertuples()
        ]
        irecist = _irecist_labels(scores, burden["observed_at"])
        fig.add_trace(
            go.Scatter(
                x=burden["observed_at"],
                y=burden["pct_from_baseline"],
                mode="lines+markers+text",
                name="% from baseline",
                line={"color": "#1f2328", "width": 2.5},
                marker={"size": 8},
                text=irecist,
                textposition="top center",
                textfont={"size": 11, "color": "#57606a"},
                hovertext=hover,
                hoverinfo="text+x",
            ),
            row=1,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=burden["observed_at"],
                y=burden["pct_from_nadir"],
                mode="lines+markers",
                name="% from nadir",
                line={"color": "#6e7781", "dash": "dot"},
                marker={"size": 6, "symbol": "square"},
                hovertext=hover,
                hoverinfo="text+x",
            ),
            row=1,
            col=1,
        )
        fig.add_hline(
            y=RECIST_PD,
            line={"color": ALERT_COLOUR, "dash": "dash", "width": 1},
            annotation_text="+20 % from nadir (PD)",
            annotation_position="top left",
            annotation_font_color=ALERT_COLOUR,
            row=1,
            col=1,
        )
        fig.add_hline(
            y=RECIST_PR,
            line={"color": "#0a7d55", "dash": "dash", "width": 1},
            annotation_text="−30 % from baseline (PR)",
            annotation_position="bottom left",
            annotation_font_color="#0a7d55",
            row=1,
            col=1,
        )
        fig.add_hline(y=0, line={"color": "#d0d7de", "width": 1}, row=1, col=1)
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
                    row=2,
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
                row=2,
                col=1,
            )
        fig.add_hline(y=0.5, line={"color": "#d0d7de", "dash": "dot", "width": 1}, row=2, col=1)
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
                row=3,
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
            row=4,
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
            row=4,
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
            row=4,
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
            row=4,
            col=1,
        )
    fig.update_yaxes(title_text="% change", ticksuffix="%", row=1, col=1, zeroline=False)
    fig.update_yaxes(title_text="P(response)", range=[0, 1], row=2, col=1)
    fig.update_yaxes(title_text="score", range=[0, 1.05], row=3, col=1)
    fig.update_yaxes(categoryorder="array", categoryarray=tracks, type="category", row=4, col=1)
    fig.update_layout(
        height=860,
        margin={"l": 70, "r": 20, "t": 40, "b": 30},
        template="plotly_white",
        legend={"orientation": "h", "y": -0.04, "x": 0, "font": {"size": 11}},
        hovermode="closest",
    )
    for ann in fig.layout.annotations[:4]:
        ann.update(font={"size": 13, "color": "#24292f"}, x=0, xanchor="left")
    return fig


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
