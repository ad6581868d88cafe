"""Small helpers shared by the pages: the signed-in user, the chosen patient, formatting."""

from __future__ import annotations

import math
from typing import Any

import streamlit as st

from monitoring_app import auth, data
from monitoring_app.vocab import NO_VALUE, IRecistState

PATIENT_KEY = "irtmon_patient"


def user() -> auth.User:
    """The signed-in user; the entry file never routes to a page without one."""
    u = auth.current_user()
    if u is None:
        st.stop()
    return u


def pick_patient(u: auth.User, key: str) -> str | None:
    """Patient selector shared by the patient pages; remembers the choice in the session and
    the URL (``?patient=psn-…``, the pseudonym only)."""
    options = data.patients(data.dsn(), u.cohorts)
    if not options:
        st.info("No patient in your cohorts yet.")
        return None
    wanted = st.query_params.get("patient") or st.session_state.get(PATIENT_KEY)
    index = options.index(wanted) if wanted in options else 0
    chosen = st.selectbox("Patient (pseudonym)", options, index=index, key=key)
    st.session_state[PATIENT_KEY] = chosen
    if st.query_params.get("patient") != chosen:
        st.query_params["patient"] = chosen
    return chosen


def prob(value: Any) -> str:
    return NO_VALUE if _missing(value) else f"{float(value):.2f}"


def band(value: Any, lower: Any, upper: Any) -> str:
    if _missing(value):
        return NO_VALUE
    if _missing(lower) or _missing(upper):
        return f"{float(value):.2f}"
    return f"{float(value):.2f} ({float(lower):.2f}–{float(upper):.2f})"


def irecist(code: Any) -> str:
    state = None if _missing(code) else IRecistState.from_value(float(code))
    return state.label if state else NO_VALUE


def when(ts: Any) -> str:
    return NO_VALUE if _missing(ts) else f"{ts:%Y-%m-%d %H:%M}"


def day(ts: Any) -> str:
    return NO_VALUE if _missing(ts) else f"{ts:%Y-%m-%d}"


def _missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(isinstance(value, float) and math.isnan(value)) or str(value) == "NaT"
    except TypeError:
        return False


KIND_LABEL = {
    "suspected_non_response": "Suspected non-response",
    "confirmed_progression": "Confirmed progression",
}
