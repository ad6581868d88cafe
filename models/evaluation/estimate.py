"""A point estimate with its confidence interval, and the vocabulary of interval methods."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class IntervalMethod(StrEnum):
    """How an interval was computed (written into metrics files and declarations)."""

    DELONG = "DeLong"
    BOOTSTRAP_PERCENTILE = "patient bootstrap, percentile"
    BOOTSTRAP_BCA = "patient bootstrap, BCa"
    WILSON = "Wilson score"
    POISSON_EXACT = "Poisson exact (Garwood)"


@dataclass(frozen=True)
class Estimate:
    """A point estimate with a two-sided confidence interval.

    Attributes
    ----------
    value
        The estimate on the data as observed.
    lower, upper
        The interval's bounds (``nan`` when the interval cannot be computed, for example a
        class absent from the sample).
    level
        Coverage of the interval, e.g. 0.95.
    method
        How the interval was computed.
    n
        Number of independent units behind it (patients, unless said otherwise).
    details
        Anything method-specific worth keeping (standard error, resamples, p-value...).
    """

    value: float
    lower: float
    upper: float
    level: float
    method: IntervalMethod
    n: int
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def has_interval(self) -> bool:
        """True when both bounds are finite numbers."""
        return math.isfinite(self.lower) and math.isfinite(self.upper)

    def format(self, spec: str = ".3f") -> str:
        """``0.887 [0.861, 0.912]``; ``n/a`` parts where a number is missing."""

        def f(v: float) -> str:
            return format(v, spec) if math.isfinite(v) else "n/a"

        return f"{f(self.value)} [{f(self.lower)}, {f(self.upper)}]"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (``nan`` becomes ``None``)."""
        out = asdict(self)
        out["method"] = str(self.method)
        for key in ("value", "lower", "upper"):
            v = out[key]
            out[key] = None if v is None or not math.isfinite(v) else float(v)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Estimate:
        """Inverse of :meth:`to_dict`."""

        def num(v: Any) -> float:
            return float("nan") if v is None else float(v)

        return cls(
            value=num(data["value"]),
            lower=num(data["lower"]),
            upper=num(data["upper"]),
            level=float(data["level"]),
            method=IntervalMethod(data["method"]),
            n=int(data["n"]),
            details=dict(data.get("details") or {}),
        )
