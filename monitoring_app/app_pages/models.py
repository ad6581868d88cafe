"""Models: registered versions, their metrics and model cards, and which one is promoted."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from monitoring_app import data, ui

ui.user()
st.title("Models")
rows = data.models(data.dsn())
if not rows:
    st.info("No model registered yet (`irtmon models register`).")
    st.stop()

frame = pd.DataFrame(rows)
for name, versions in frame.groupby("name", sort=True):
    promoted = versions[versions["promoted"]]
    with st.container(border=True):
        head = f"### {name}"
        if not promoted.empty:
            head += f"  \n:green-badge[:material/verified: promoted {promoted.iloc[0]['version']}]"
        else:
            head += "  \n:orange-badge[no promoted version]"
        st.markdown(head)
        metrics = pd.json_normalize(list(versions["metrics"])).add_prefix("metric: ")
        table = pd.concat(
            [
                pd.DataFrame(
                    {
                        "Version": versions["version"].values,
                        "Promoted": versions["promoted"].values,
                        "Registered": [ui.day(t) for t in versions["created_at"]],
                        "Promoted at": [ui.day(t) for t in versions["promoted_at"]],
                        "SHA-256": [s[:12] + "…" for s in versions["sha256"]],
                    }
                ),
                metrics.reset_index(drop=True),
            ],
            axis=1,
        )
        st.dataframe(table, hide_index=True, width="stretch", key=f"models_{name}")
        options = list(versions["version"])
        default = options.index(promoted.iloc[0]["version"]) if not promoted.empty else 0
        chosen = st.selectbox("Model card of version", options, index=default, key=f"card_{name}")
        body, evidence = ui.card_parts(versions[versions["version"] == chosen].iloc[0]["card"])
        if evidence:  # what the model is shown to do, on view without opening the card
            st.info(evidence, icon=":material/science:")
        with st.expander(f"Model card — {name} {chosen}", expanded=False):
            st.markdown(body or "_No model card._")
