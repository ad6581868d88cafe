"""Checks on what an event points at (files, DICOMweb servers), before anything is read."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from core.settings import url_origin
from models.exceptions import UnreadableInputError
from schemas.errors import DeadLetterError


class UntrustedLocationError(DeadLetterError, ValueError):
    """An event names a server irtmon is not configured to read from or write to: the event
    is dead-lettered, nothing is fetched from or sent to that server."""


def resolve_under_roots(path: str | Path, roots: Sequence[Path]) -> Path:
    """Resolve ``path`` and require it inside one of the data ``roots`` and to exist.

    Refuses path traversal (``..``, symlinks leading out) with an error naming the path.
    """
    resolved = Path(path).resolve()
    allowed = [Path(r).resolve() for r in roots]
    if not any(resolved == r or resolved.is_relative_to(r) for r in allowed):
        raise UnreadableInputError(
            f"{path} is outside the configured data roots "
            f"({', '.join(str(r) for r in allowed)}); set IRTMON_DATA_ROOTS to allow it"
        )
    if not resolved.exists():
        raise UnreadableInputError(f"{path} does not exist")
    return resolved


def check_dicomweb_url(url: str, allowed: Sequence[str]) -> str:
    """Return ``url`` when it is one of the ``allowed`` DICOMweb roots (scheme, host, port and
    path compared, case and trailing slash aside); refuse any other.

    Raises
    ------
    UntrustedLocationError
        ``url`` names another server (or another path on it), or nothing is allowed.
    """
    try:
        origin = url_origin(str(url))
    except ValueError:
        origin = None
    trusted = []
    for root in allowed:
        try:
            trusted.append(url_origin(root))
        except ValueError:
            continue
    if origin is None or origin not in trusted:
        shown = ", ".join(allowed) or "none"
        raise UntrustedLocationError(
            f"DICOMweb location {url} is not a configured PACS (allowed: {shown}); nothing "
            "was fetched from it or stored to it. Set IRTMON_PACS_URL/IRTMON_PACS_PUBLIC_URL "
            "or add it to IRTMON_PACS_ALLOWED_URLS if it is one of yours"
        )
    return str(url)
