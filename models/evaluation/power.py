"""How likely a test of a given size is to show a proportion target, before it is declared.

A target is met only when its whole interval clears it (:mod:`models.evaluation.targets`), so a
test too small to show a target at the rate the pipeline really has is a test whose "not shown"
was known in advance. :func:`proportion_power` says how often a test of ``total`` rows shows an
"at most" or "at least" target when the true rate is ``rate``: the exact binomial sum over the
counts whose Wilson score interval (:func:`models.evaluation.alerts.wilson`) clears the target.

The declared analyses widen a proportion's patient bootstrap interval to at least the Wilson
interval (``bench.lesion_accuracy``), so their interval is never narrower than Wilson's and the
probability here is an upper bound on theirs: a plan that fails here fails there too.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import binom

from models.evaluation.alerts import wilson
from models.evaluation.resampling import DEFAULT_LEVEL
from models.evaluation.targets import Direction, Target, Verdict, judge


def showing_counts(
    total: int, target: float, direction: Direction, *, level: float = DEFAULT_LEVEL
) -> np.ndarray:
    """The counts ``x`` of ``0..total`` whose Wilson interval of ``x / total`` meets the target."""
    if total < 1:
        raise ValueError(f"need at least one row, got {total}")
    goal = Target("proportion", direction, target)
    return np.array(
        [x for x in range(total + 1) if judge(goal, wilson(x, total, level=level)) is Verdict.MET],
        dtype=int,
    )


def proportion_power(
    rate: float,
    total: int,
    target: float,
    direction: Direction = Direction.AT_MOST,
    *,
    level: float = DEFAULT_LEVEL,
) -> float:
    """P(a test of ``total`` independent rows meets the target) when the true rate is ``rate``."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"a rate is within [0, 1], got {rate}")
    counts = showing_counts(total, target, direction, level=level)
    if counts.size == 0:
        return 0.0
    return float(binom.pmf(counts, total, rate).sum())
