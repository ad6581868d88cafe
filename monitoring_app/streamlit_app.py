"""irtmon monitoring app: the entry file only sets up the page and routes (st.navigation).

Run with ``irtmon app`` (or ``streamlit run monitoring_app/streamlit_app.py``).
"""

from __future__ import annotations

import streamlit as st

from monitoring_app import auth

st.set_page_config(page_title="irtmon · response monitor", page_icon="🩺", layout="wide")

user = auth.current_user(interaction=True)  # re-read from the database on every run
if user is None:
    page = st.navigation(
        [st.Page("app_pages/login.py", title="Sign in", icon=":material/login:", default=True)],
        position="hidden",
    )
else:
    page = st.navigation(
        {
            "Patients": [
                st.Page(
                    "app_pages/cohort.py", title="Cohort", icon=":material/groups:", default=True
                ),
                st.Page(
                    "app_pages/timeline.py", title="Patient timeline", icon=":material/timeline:"
                ),
                st.Page("app_pages/images.py", title="Images", icon=":material/radiology:"),
            ],
            "Review": [
                st.Page(
                    "app_pages/alerts.py", title="Alerts inbox", icon=":material/notifications:"
                ),
                st.Page("app_pages/models.py", title="Models", icon=":material/model_training:"),
            ],
        }
    )
    with st.sidebar:
        st.markdown(f"**{user.username}** · {user.role.value}")
        st.caption(f"Cohorts: {user.scope_label}")
        if st.button("Sign out", icon=":material/logout:", key="sign_out"):
            auth.sign_out()
            st.rerun()
page.run()
