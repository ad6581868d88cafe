"""Small helpers shared by the pages: the signed-in user, the chosen patient, formatting."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import streamlit as st

from models.evaluation.evidence import SECTION as EVIDENCE
from monitoring_app import auth, data
from monitoring_app.vocab import NO_VALUE, IRecistState

PATIENT_KEY = "irtmon_patient"


def user() -> auth.User:
    """The signed-in user, read again from the database; the entry file never routes to a
    page without one (a page opened directly stops here)."""
    u = auth.current_user()
    if u is None:
        st.stop()
    return u


def live_user() -> auth.User:
    """The signed-in user for a live fragment's re-run: read again (active flag, role,
    cohorts) without counting the refresh as activity; when the session has ended (idle,
    disabled) the whole app re-runs, which shows the sign-in page."""
    u = auth.current_user()
    if u is None:
        st.rerun(scope="app")
    return u  # type: ignore[return-value]


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


def card_parts(card: str | None) -> tuple[str, str]:
    """A model card split into its description and its evidence (the declared evaluation
    behind the model, :mod:`models.evaluation.evidence`; "" when the card has none)."""
    text = card or ""
    body, found, evidence = text.partition(EVIDENCE)
    return body.strip(), (f"{EVIDENCE} {evidence.strip()}" if found else "")


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


OOD_LABEL = {
    "in-distribution": "in distribution",
    "shifted": "shifted: uncertainty widened",
    "out-of-distribution": "OUT OF DISTRIBUTION: signature unreliable",
    "unknown": "not measured (model without a reference)",
}
"""How the app words a slide's out-of-distribution status (models.pathology.ood.OodStatus)."""
STAIN_LABEL = {
    "h&e": "H&E",
    "doubtful": "doubtful H&E (flagged)",
    "not h&e": "NOT H&E: signature unreliable",
}
"""How the app words a slide's stain check (models.pathology.stain.StainOutcome)."""


def _field(value: Any, key: str) -> Any:
    return value.get(key) if isinstance(value, dict) else None


def slide_checks_table(checks: pd.DataFrame) -> pd.DataFrame:
    """One row per slide behind an immune signature: stain check and out-of-distribution
    measure (distance from the training slides and its percentile among them), and how far
    the signature's uncertainty was widened for it."""
    rows = []
    for c in checks.itertuples():
        ood_status = _field(c.ood, "status") or "unknown"
        stain = _field(c.stain, "outcome")
        distance = _field(c.ood, "distance")
        pct = _field(c.ood, "percentile")
        rows.append(
            {
                "Biopsy": day(c.observed_at),
                "Slide": c.slide,
                "Model": f"{c.model_name} {c.model_version}",
                "Stain": STAIN_LABEL.get(stain, stain or NO_VALUE),
                "Distribution": OOD_LABEL.get(ood_status, ood_status),
                "Distance": NO_VALUE if distance is None else f"{float(distance):.1f}",
                "Farther than training slides": NO_VALUE if pct is None else f"{float(pct):.0f} %",
                "Uncertainty widened": prob(c.uncertainty_weight),
            }
        )
    return pd.DataFrame(rows)


def slide_check_warnings(checks: pd.DataFrame) -> list[str]:
    """One sentence per slide whose signature a clinician should not take at face value."""
    out = []
    for c in checks.itertuples():
        ood_status = _field(c.ood, "status")
        stain = _field(c.stain, "outcome")
        if ood_status in ("shifted", "out-of-distribution"):
            out.append(
                f"Slide {c.slide} ({day(c.observed_at)}) is {OOD_LABEL[ood_status]}: it lies "
                "outside the slides the model was trained on."
            )
        if stain in ("doubtful", "not h&e"):
            out.append(
                f"Slide {c.slide} ({day(c.observed_at)}): stain {STAIN_LABEL[stain]} "
                f"({_field(c.stain, 'reason') or 'see the stain check'})."
            )
    return out


def last_scan_between(frame: pd.DataFrame, period: Any, full: tuple[Any, Any]) -> pd.DataFrame:
    """The rows whose ``last_scan`` falls in ``period`` (two dates, inclusive).

    ``full`` is the range the filter offered when it was drawn. Left at it, the filter keeps
    every row: a patient without a scan yet, or whose new scan arrived after the page was
    drawn (the table refreshes on its own), must never drop out of a cohort view nobody
    narrowed. A half-chosen range (one date) filters nothing either.
    """
    if not isinstance(period, tuple | list) or len(period) != 2 or tuple(period) == tuple(full):
        return frame
    last = pd.to_datetime(frame["last_scan"]).dt.date
    return frame[(last >= period[0]) & (last <= period[1])]
