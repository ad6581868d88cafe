"""Keyed-hash pseudonyms: the only patient identifier that travels in topics, logs and URLs.

A pseudonym is ``psn-`` followed by 16 lower-case hex digits of HMAC-SHA256(key, identifier).
The key comes from configuration (``IRTMON_PSEUDONYM_KEY``), never from the repository, so a
pseudonym cannot be reversed or recomputed without it.
"""

from __future__ import annotations

import hashlib
import hmac
import re

PSEUDONYM_PATTERN = r"^psn-[0-9a-f]{16}$"
_PSEUDONYM_RE = re.compile(PSEUDONYM_PATTERN)


def pseudonymise(identifier: str, key: bytes | str) -> str:
    """Return the pseudonym of a clear patient identifier under ``key``.

    Raises ``ValueError`` for an empty identifier or key: an empty key would make every
    pseudonym guessable from the identifier alone.
    """
    if not identifier or not identifier.strip():
        raise ValueError("cannot pseudonymise an empty patient identifier")
    key_bytes = key.encode() if isinstance(key, str) else key
    if len(key_bytes) < 16:
        raise ValueError(
            "the pseudonym key must be at least 16 bytes; set IRTMON_PSEUDONYM_KEY to a long "
            "random secret (for example `python -c 'import secrets; print(secrets.token_hex(32))'`)"
        )
    digest = hmac.new(key_bytes, identifier.strip().encode(), hashlib.sha256).hexdigest()
    return f"psn-{digest[:16]}"


def is_pseudonym(value: str) -> bool:
    """True when ``value`` has the pseudonym shape (it says nothing of the key used)."""
    return bool(_PSEUDONYM_RE.match(value))
