"""Password hashes of local app accounts: argon2id (argon2-cffi), salted, default cost."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher()
_DUMMY_HASH = _HASHER.hash("irtmon-no-such-user")
MIN_LENGTH = 8


def hash_password(password: str) -> str:
    """argon2id hash of a password; refuses one shorter than :data:`MIN_LENGTH`."""
    if len(password) < MIN_LENGTH:
        raise ValueError(f"a password needs at least {MIN_LENGTH} characters")
    return _HASHER.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; an unknown user (None) costs the same time and fails."""
    try:
        return _HASHER.verify(password_hash or _DUMMY_HASH, password) and bool(password_hash)
    except (VerificationError, InvalidHashError):
        return False
