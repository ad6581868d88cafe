"""Sign-in throttling: an exponential back-off per user name and per client address.

Each failed sign-in is an audit row (``login_failed``, :func:`core.db.users.record_login`) with
the client's address; the throttle reads them back, so it holds across app server restarts and
across several app servers on one database. Before a password is checked (argon2id, 64 MiB per
try), :func:`check` counts the recent failures of the user name (since its last successful
sign-in) and of the address. Past ``free`` failures the next try must wait
``base_s * 2 ** (failures - free)`` seconds after the last failure (at most ``max_s``); a try
made sooner is refused without checking the password and audited (``login_throttled``). Refused
tries do not count as failures: waiting out the back-off is enough.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import psycopg

from core.db import users
from core.settings import Settings
from schemas import RefusedError

__all__ = ["LoginPolicy", "LoginThrottledError", "backoff_s", "refusal"]


class LoginThrottledError(RefusedError):
    """Too many failed sign-ins: wait ``retry_after_s`` seconds and try again."""

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, kw_only=True)
class LoginPolicy:
    """How many failures are free and how the wait grows after them."""

    user_free: int = 5
    address_free: int = 20
    base_s: float = 2.0
    max_s: float = 900.0
    window_s: float = 3600.0

    @classmethod
    def from_settings(cls, settings: Settings) -> LoginPolicy:
        return cls(
            user_free=settings.app_login_free_attempts,
            address_free=settings.app_login_address_free_attempts,
            base_s=settings.app_login_backoff_s,
            max_s=settings.app_login_backoff_max_s,
            window_s=settings.app_login_window_s,
        )


def backoff_s(failures: int, *, free: int, base_s: float, max_s: float) -> float:
    """Seconds a new try must wait after the last of ``failures`` failed tries (0 while fewer
    than ``free`` failed): ``base_s``, doubling with each further failure, at most ``max_s``."""
    if failures < free:
        return 0.0
    exponent = failures - free
    if exponent > 64:  # 2**64 * base is past any cap
        return max_s
    return min(max_s, base_s * 2.0**exponent)


def refusal(
    conn: psycopg.Connection, username: str, address: str | None, policy: LoginPolicy
) -> LoginThrottledError | None:
    """The refusal of a sign-in of ``username`` from ``address`` that comes before its back-off
    has passed (already written to the audit log), or None when it may go on to the password
    check.

    The refusal is returned, not raised, so that the caller commits its audit row first and
    then raises it.
    """
    keys: list[tuple[str, int, str | None, str | None]] = [
        ("user name", policy.user_free, username, None)
    ]
    if address:
        keys.append(("address", policy.address_free, None, address))
    for what, free, user_key, address_key in keys:
        failures, since = users.recent_failures(
            conn, window_s=policy.window_s, username=user_key, address=address_key
        )
        wait = backoff_s(failures, free=free, base_s=policy.base_s, max_s=policy.max_s)
        remaining = wait - (since or 0.0)
        if wait > 0 and remaining > 0:
            seconds = math.ceil(remaining)
            reason = f"{failures} failed sign-ins for this {what}; wait {seconds} s"
            users.record_throttled(conn, username, address, reason, remaining)
            return LoginThrottledError(
                f"Too many failed sign-ins for this {what}. Try again in {seconds} s.",
                retry_after_s=remaining,
            )
    return None
