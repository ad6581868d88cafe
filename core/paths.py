"""Checks on the files an event points at, before any reader opens them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from models.exceptions import UnreadableInputError


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
