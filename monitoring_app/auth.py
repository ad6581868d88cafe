"""Who is using the app: local login (argon2id hashes) or Streamlit's OIDC login.

Single sign-on is used when ``.streamlit/secrets.toml`` has an ``[auth]`` section (see
``st.login``); the identity provider's e-mail must match a registered user's ``oidc_subject``
(``irtmon users add NAME --role clinician --oidc-subject alice@hospital.org``). Otherwise users
sign in with the password set by ``irtmon users add``. Every attempt writes an audit row.
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from core.db import users
from core.passwords import hash_password, verify_password
from monitoring_app import data
from schemas import Role

__all__ = ["User", "authenticate", "current_user", "hash_password", "sign_in", "sign_out"]

SESSION_KEY = "irtmon_user"


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


def _user(row: dict, method: str) -> User:
    role = Role(row["role"])
    cohorts = None if role.sees_all_cohorts else tuple(row["cohorts"])
    return User(row["username"], role, cohorts, method)


def authenticate(username: str, password: str) -> User | None:
    """Check a local login; audit it either way."""
    username = username.strip()
    row = data.run(users.get_user, username) if username else None
    ok = verify_password(row["password_hash"] if row else None, password)
    if username:
        data.run_write(
            users.record_login,
            username,
            "local",
            ok,
            "" if ok else ("unknown user" if row is None else "wrong password"),
        )
    return _user(row, "local") if ok and row else None


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


def current_user() -> User | None:
    """The signed-in user of this session, or None."""
    user = st.session_state.get(SESSION_KEY)
    if user is not None:
        return user
    if oidc_configured() and st.user.is_logged_in:
        subject = str(st.user.get("email") or st.user.get("sub") or "")
        row = data.run(users.get_user_by_subject, subject) if subject else None
        data.run_write(
            users.record_login,
            row["username"] if row else subject or "unknown",
            "oidc",
            row is not None,
            "" if row else "no irtmon user has this single sign-on subject",
        )
        if row is None:
            st.session_state["irtmon_login_error"] = (
                f"{subject} signed in but has no irtmon account; ask an administrator."
            )
            st.logout()
            return None
        user = _user(row, "oidc")
        st.session_state[SESSION_KEY] = user
        return user
    return None


def sign_in(user: User) -> None:
    st.session_state[SESSION_KEY] = user


def sign_out() -> None:
    user = st.session_state.pop(SESSION_KEY, None)
    if user is not None:
        data.run_write(users.record_logout, user.username)
        if user.method == "oidc":
            st.logout()
