"""How intervals are computed in one evaluation: level, bootstrap resamples, seed, method,
calibration bins. A declaration fixes it (:func:`plan_from_declaration`); training runs
take it as an argument."""

from __future__ import annotations

from dataclasses import dataclass

from models.evaluation.declaration import Declaration
from models.evaluation.estimate import IntervalMethod


@dataclass(frozen=True)
class EvaluationPlan:
    """Interval settings shared by every metric of one evaluation."""

    level: float = 0.95
    resamples: int = 2000
    seed: int = 0
    method: IntervalMethod = IntervalMethod.BOOTSTRAP_BCA
    n_bins: int = 10


def plan_from_declaration(declaration: Declaration) -> EvaluationPlan:
    """The plan a declaration fixes (its level and ``[bootstrap]`` table)."""
    return EvaluationPlan(
        level=declaration.level,
        resamples=declaration.bootstrap.resamples,
        seed=declaration.bootstrap.seed,
        method=declaration.bootstrap.method,
    )
