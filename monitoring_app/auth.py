"""Who is using the app: local login (argon2id hashes) or Streamlit's OIDC login.

Single sign-on is used when ``.streamlit/secrets.toml`` has an ``[auth]`` section (see
``st.login``); the identity provider's e-mail must be verified (``email_verified``) and match a
registered user's ``oidc_subject`` (``irtmon users add NAME --role clinician --oidc-subject
alice@hospital.org``). Otherwise users sign in with the password set by ``irtmon users add``.
Every attempt writes an audit row; local attempts are throttled per user name and per client
address (:mod:`core.logins`).

The session keeps only who signed in and when they last interacted. Every script run reads the
user's active flag, role and cohorts from the database again (:func:`current_user`), so a
disabled account or a changed role or cohort takes effect at the next interaction; a session
idle for ``IRTMON_APP_IDLE_TIMEOUT_S`` is signed out.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import streamlit as st

from core import logins
from core.db import users
from core.passwords import hash_password, verify_password
from monitoring_app import data
from schemas import RefusedError, Role

__all__ = [
    "UnverifiedEmailError",
    "User",
    "authenticate",
    "client_address",
    "current_user",
    "hash_password",
    "oidc_subject",
    "sign_in",
    "sign_out",
]

SESSION_KEY = "irtmon_user"
LOGIN_ERROR_KEY = "irtmon_login_error"


class UnverifiedEmailError(RefusedError):
    """The identity provider did not vouch for the e-mail it returned."""


@dataclass(frozen=True)
class User:
    """A signed-in user. ``cohorts`` is None for admins (every cohort)."""

    username: str
    role: Role
    cohorts: tuple[str, ...] | None
    method: str = "local"

    @property
    def can_act(self) -> bool:
        return self.role.can_act_on_alerts

    @property
    def scope_label(self) -> str:
        return "all cohorts" if self.cohorts is None else ", ".join(self.cohorts) or "no cohort"


@dataclass
class _Session:
    """What the Streamlit session keeps: who signed in, how, and their last interaction."""

    username: str
    method: str
    last_active: float


def _user(row: dict, method: str) -> User:
    role = Role(row["role"])
    cohorts = None if role.sees_all_cohorts else tuple(row["cohorts"])
    return User(row["username"], role, cohorts, method)


def client_address() -> str | None:
    """The client's address: the connection's, or the first X-Forwarded-For hop when
    ``IRTMON_APP_TRUST_FORWARDED_FOR`` is set (behind a reverse proxy); None when unknown."""
    try:
        if data.settings().app_trust_forwarded_for:
            forwarded = st.context.headers.get("X-Forwarded-For")
            first = forwarded.split(",")[0].strip() if isinstance(forwarded, str) else ""
            if first:
                return first
        address = st.context.ip_address
    except (AttributeError, RuntimeError, KeyError):
        return None
    return address if isinstance(address, str) and address else None  # none outside a server


def authenticate(username: str, password: str, address: str | None = None) -> User | None:
    """Check a local login; audit it either way.

    Raises
    ------
    core.logins.LoginThrottledError
        Too many recent failures for this user name or address: the password is not checked
        and the refusal is audited.
    """
    username = username.strip()
    if username:
        policy = logins.LoginPolicy.from_settings(data.settings())
        refused = data.run_write(logins.refusal, username, address, policy, clear=False)
        if refused is not None:
            raise refused
    row = data.run(users.get_user, username) if username else None
    ok = verify_password(row["password_hash"] if row else None, password)
    if username:
        data.run_write(
            users.record_login,
            username,
            "local",
            ok,
            "" if ok else ("unknown user" if row is None else "wrong password"),
            address,
            clear=False,
        )
    return _user(row, "local") if ok and row else None


def oidc_subject(claims: Mapping[str, Any]) -> str:
    """The subject to look an OIDC user up by: the e-mail when the provider says it is
    verified (``email_verified`` true), else the ``sub`` claim when no e-mail was given.

    Raises
    ------
    UnverifiedEmailError
        An e-mail without ``email_verified`` true: anyone may type an address into an account
        at some providers, so it names no one.
    """
    email = str(claims.get("email") or "")
    if email:
        verified = claims.get("email_verified")
        if verified is True or (isinstance(verified, str) and verified.lower() == "true"):
            return email
        raise UnverifiedEmailError(
            f"{email} signed in but the identity provider has not verified that e-mail "
            "(email_verified is not true); verify it with the provider, then sign in again."
        )
    return str(claims.get("sub") or "")


def oidc_configured() -> bool:
    """True when secrets configure Streamlit's OIDC login."""
    try:
        return "auth" in st.secrets
    except (FileNotFoundError, KeyError, AttributeError, RuntimeError):
        return False
    except Exception as err:  # StreamlitSecretNotFoundError differs between releases
        if type(err).__name__.startswith("StreamlitSecret"):
            return False
        raise


def _end(session: _Session, message: str, reason: str) -> None:
    """End a session the app no longer trusts (idle, disabled): audit, say why, sign out."""
    st.session_state.pop(SESSION_KEY, None)
    st.session_state[LOGIN_ERROR_KEY] = message
    data.run_write(users.record_logout, session.username, reason)
    if session.method == "oidc" and oidc_configured() and st.user.is_logged_in:
        st.logout()


def current_user(*, interaction: bool = False) -> User | None:
    """The signed-in user of this session, read again from the database, or None.

    ``interaction=True`` (the entry file, once per full script run) counts this run as the
    user's activity; the live refresh of fragments calls it without, so it never keeps an idle
    session alive. A session idle past ``IRTMON_APP_IDLE_TIMEOUT_S``, or whose account is
    disabled or gone, is ended here (audited) and None returned.
    """
    session = st.session_state.get(SESSION_KEY)
    if isinstance(session, _Session):
        now = time.time()
        idle = now - session.last_active
        timeout = data.settings().app_idle_timeout_s
        if idle > timeout:
            _end(
                session,
                f"Signed out after {timeout / 60:g} minutes without activity; sign in again.",
                "idle timeout",
            )
            return None
        row = data.run(users.get_user, session.username)
        if row is None:
            _end(
                session,
                "Your account has been disabled; ask an administrator.",
                "account disabled",
            )
            return None
        if interaction:
            session.last_active = now
        return _user(row, session.method)
    if oidc_configured() and st.user.is_logged_in:
        try:
            subject = oidc_subject(st.user.to_dict())
            reason = ""
        except UnverifiedEmailError as err:
            subject, reason = "", str(err)
        row = data.run(users.get_user_by_subject, subject) if subject else None
        data.run_write(
            users.record_login,
            row["username"] if row else subject or str(st.user.get("email") or "unknown"),
            "oidc",
            row is not None,
            "" if row else (reason or "no irtmon user has this single sign-on subject"),
            client_address(),
        )
        if row is None:
            st.session_state[LOGIN_ERROR_KEY] = reason or (
                f"{subject} signed in but has no irtmon account; ask an administrator."
            )
            st.logout()
            return None
        st.session_state[SESSION_KEY] = _Session(row["username"], "oidc", time.time())
        return _user(row, "oidc")
    return None


def sign_in(user: User) -> None:
    st.session_state[SESSION_KEY] = _Session(user.username, user.method, time.time())


def sign_out() -> None:
    session = st.session_state.pop(SESSION_KEY, None)
    if isinstance(session, _Session):
        data.run_write(users.record_logout, session.username)
        if session.method == "oidc":
            st.logout()
