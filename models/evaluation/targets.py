"""When is a target met? Only when the whole interval clears it.

For an "at least" target the interval's lower bound must reach it; for an "at most" target
the upper bound must stay within it. An interval wholly on the wrong side is "not met";
one that contains the target shows nothing either way. One function, :func:`judge`, for
every report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from models.evaluation.estimate import Estimate


class Direction(StrEnum):
    """Which side of the target is good."""

    AT_LEAST = "at least"
    AT_MOST = "at most"


class Verdict(StrEnum):
    """A target's outcome, as a report prints it."""

    MET = "met"
    NOT_MET = "not met"
    NOT_SHOWN = "not shown: interval includes the target"
    NO_INTERVAL = "not shown: no interval"


@dataclass(frozen=True)
class Target:
    """``metric`` must be ``direction`` ``value`` (e.g. ``auc_fu1`` at least 0.85)."""

    metric: str
    direction: Direction
    value: float

    def describe(self) -> str:
        sign = "≥" if self.direction is Direction.AT_LEAST else "≤"
        return f"{self.metric} {sign} {self.value:g}"


def judge(target: Target, estimate: Estimate | None) -> Verdict:
    """The verdict of ``estimate`` (with its interval) against ``target``. An estimate
    without a usable interval (missing bounds, or flagged ``degenerate``: a DeLong interval
    of zero width) shows nothing."""
    if estimate is None or not estimate.has_interval or estimate.details.get("degenerate"):
        return Verdict.NO_INTERVAL
    lo, hi = estimate.lower, estimate.upper
    if math.isnan(target.value):
        raise ValueError(f"target {target.metric} has no value")
    if target.direction is Direction.AT_LEAST:
        if lo >= target.value:
            return Verdict.MET
        return Verdict.NOT_MET if hi < target.value else Verdict.NOT_SHOWN
    if hi <= target.value:
        return Verdict.MET
    return Verdict.NOT_MET if lo > target.value else Verdict.NOT_SHOWN


def render(target: Target, estimate: Estimate | None, spec: str = ".3f") -> str:
    """One line: ``auc_fu1 ≥ 0.85: 0.887 [0.861, 0.912] (95 % DeLong): met``."""
    if estimate is None:
        return f"{target.describe()}: no estimate: {Verdict.NO_INTERVAL}"
    return (
        f"{target.describe()}: {estimate.format(spec)} "
        f"({estimate.level:.0%} {estimate.method}): {judge(target, estimate)}"
    )
