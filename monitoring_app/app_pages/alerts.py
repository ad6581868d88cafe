"""Alerts inbox: what changed and why; acknowledge, resolve or dismiss with a note."""

from __future__ import annotations

import streamlit as st

from core import alerts as lifecycle
from monitoring_app import data, ui
from schemas import AlertVerb, percent

user = ui.user()
st.title("Alerts inbox")
statuses = st.pills(
    "Show",
    ["open", "acknowledged", "resolved", "dismissed"],
    selection_mode="multi",
    default=["open", "acknowledged"],
    key="inbox_status",
)
if not user.can_act:
    st.info("Your role can read alerts but not act on them.")


def act(alert_id: str, verb: AlertVerb, patient: str) -> None:
    note = st.session_state.get(f"note_{alert_id}", "")
    st.session_state.pop("inbox_flash", None)
    try:
        alert = data.run(lifecycle.act, alert_id, verb, user.username, note, user.cohorts)
    except ValueError as err:
        st.session_state["inbox_flash_error"] = str(err)
        return
    finally:
        data.clear_cache()
    st.session_state["inbox_flash"] = f"Alert of {patient} {alert.status.value} by {user.username}."


@st.fragment(run_every=data.REFRESH_S)
def inbox(statuses: tuple[str, ...]) -> None:
    live = ui.live_user()  # a disabled user or a changed cohort stops the live refresh
    if error := st.session_state.pop("inbox_flash_error", None):
        st.error(error)
    if flash := st.session_state.get("inbox_flash"):
        st.success(flash)
    alerts = data.inbox(data.dsn(), live.cohorts, statuses)
    st.caption(f"{len(alerts)} alert(s) · refreshes every {data.REFRESH_S:g} s")
    if not alerts:
        st.info("Nothing to review.")
    for a in alerts:
        aid = str(a["alert_id"])
        with st.container(border=True, key=f"alert_{aid}"):
            head, prob = st.columns([5, 1])
            colour = (
                "red"
                if a["status"] == "open"
                else "orange"
                if a["status"] == "acknowledged"
                else "gray"
            )
            head.markdown(
                f"#### {ui.KIND_LABEL.get(a['kind'], a['kind'])} · `{a['patient']}`  \n"
                f":{colour}-badge[{a['status']}] :gray-badge[cohort {a['cohort']}] "
                f":gray-badge[opened {ui.when(a['opened_at'])}] "
                f":gray-badge[change ≈ {ui.day(a['change_at'])}]"
            )
            prob.metric(
                "Confidence",
                percent(a["probability"]),
                help="How sure the decision rule is",
            )
            st.markdown(f"**What changed.** {a['summary']}")
            st.markdown(f"**Recommendation.** {a['recommendation']}")
            versions = ", ".join(f"{k} {v}" for k, v in (a["model_versions"] or {}).items())
            st.caption(f"Signals: {', '.join(a['signals']) or '—'} · models: {versions or '—'}")
            if a["acknowledged_by"]:
                st.caption(
                    f"Acknowledged by {a['acknowledged_by']} at {ui.when(a['acknowledged_at'])}"
                )
            if a["closed_by"]:
                st.caption(
                    f"Closed by {a['closed_by']} at {ui.when(a['closed_at'])}: {a['close_reason']}"
                )
            if live.can_act and a["status"] in ("open", "acknowledged"):
                with st.form(f"form_{aid}", border=False):
                    note_col, b1, b2, b3 = st.columns([3, 1, 1, 1], vertical_alignment="bottom")
                    note_col.text_input(
                        "Note", key=f"note_{aid}", placeholder="why (required to dismiss)"
                    )
                    b1.form_submit_button(
                        "Acknowledge",
                        key=f"ack_{aid}",
                        on_click=act,
                        args=(aid, AlertVerb.ACKNOWLEDGE, a["patient"]),
                        disabled=a["status"] != "open",
                        type="primary",
                    )
                    b2.form_submit_button(
                        "Resolve",
                        key=f"resolve_{aid}",
                        on_click=act,
                        args=(aid, AlertVerb.RESOLVE, a["patient"]),
                    )
                    b3.form_submit_button(
                        "Dismiss",
                        key=f"dismiss_{aid}",
                        on_click=act,
                        args=(aid, AlertVerb.DISMISS, a["patient"]),
                    )
            if st.button("Open timeline", key=f"open_{aid}", icon=":material/timeline:"):
                st.session_state[ui.PATIENT_KEY] = a["patient"]
                st.switch_page("app_pages/timeline.py", query_params={"patient": a["patient"]})


inbox(tuple(statuses or ()))
