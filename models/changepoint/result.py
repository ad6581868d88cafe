"""What every change-point detector returns: when, how strong, which signals moved."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ChangeResult:
    """The outcome of one detector on one patient's series.

    Attributes
    ----------
    detector:
        Name of the detector (``bocpd``, ``cusum``, ``irecist``, ``combined``...).
    detected:
        Whether the detector's own alarm rule fired on the series seen so far.
    index:
        Index (0-based, into the series) of the estimated change, or ``None``.
    time:
        The series' time at ``index`` (whatever was passed as ``times``), or ``None``.
    strength:
        Strength of evidence in [0, 1] (a posterior probability, ``1 - p`` of a test, ...).
    signals:
        Names of the signals that moved at the change, adverse direction first.
    shifts:
        Signed shift of each signal across the change (mean after minus mean before, in the
        signal's units).
    detail:
        Detector-specific diagnostics (run-length posterior, test statistic, states...).
    """

    detector: str
    detected: bool
    index: int | None = None
    time: Any = None
    strength: float = 0.0
    signals: tuple[str, ...] = ()
    shifts: dict[str, float] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)


def signal_names(names: list[str] | tuple[str, ...] | None, n: int) -> tuple[str, ...]:
    """Names for ``n`` signals: the given ones (checked) or ``x0, x1, ...``."""
    if names is None:
        return tuple(f"x{i}" for i in range(n))
    if len(names) != n:
        raise ValueError(f"got {len(names)} signal names for {n} signals; pass one per column")
    return tuple(names)
