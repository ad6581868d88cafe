"""Sign in: single sign-on when configured, else the local user name and password."""

from __future__ import annotations

import streamlit as st

from core.logins import LoginThrottledError
from monitoring_app import auth

_, centre, _ = st.columns([1, 1.2, 1])
with centre:
    st.title("irtmon")
    st.caption("Immuno-radiotherapy response monitor · pseudonymised data only")
    if error := st.session_state.pop(auth.LOGIN_ERROR_KEY, None):
        st.error(error)
    if auth.oidc_configured():
        st.button(
            "Sign in with single sign-on",
            on_click=st.login,
            type="primary",
            icon=":material/key:",
            key="sso",
        )
        st.divider()
        st.caption("Or with a local account")
    with st.form("login"):
        username = st.text_input("User name", key="login_user")
        password = st.text_input("Password", type="password", key="login_password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        try:
            user = auth.authenticate(username, password, auth.client_address())
        except LoginThrottledError as err:
            st.error(str(err))
            st.stop()
        if user is None:
            st.error("Unknown user name or wrong password.")
        else:
            auth.sign_in(user)
            st.rerun()
