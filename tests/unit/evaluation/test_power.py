"""Sizing a declaration: how likely a test of n rows is to show a proportion target."""

from __future__ import annotations

import numpy as np
import pytest

from models.evaluation import Direction, proportion_power, wilson
from models.evaluation.power import showing_counts


def test_at_257_called_new_only_none_false_clears_two_percent() -> None:
    # lesions-v2-n: one false of 257 has a Wilson upper bound of 2.17 %, none of 257 of 1.47 %
    assert wilson(1, 257).upper > 0.02 > wilson(0, 257).upper
    assert showing_counts(257, 0.02, Direction.AT_MOST).tolist() == [0]
    assert proportion_power(3 / 257, 257, 0.02) == pytest.approx((1 - 3 / 257) ** 257)


def test_power_grows_with_size_below_the_target_and_vanishes_above_it() -> None:
    below = [proportion_power(0.012, n, 0.02) for n in (250, 1000, 4000)]
    assert below == sorted(below) and below[-1] > 0.95 and below[0] < 0.1
    assert proportion_power(0.03, 4000, 0.02) < 1e-6


def test_at_least_targets_use_the_lower_bound() -> None:
    counts = showing_counts(100, 0.95, Direction.AT_LEAST)
    assert counts.min() == min(x for x in range(101) if wilson(x, 100).lower >= 0.95)
    assert counts.max() == 100
    assert proportion_power(0.999, 300, 0.95, Direction.AT_LEAST) > 0.99


def test_exact_sum_agrees_with_simulation() -> None:
    rng = np.random.default_rng(7)
    n, rate = 600, 0.01
    draws = rng.binomial(n, rate, 40_000)
    shown = np.isin(draws, showing_counts(n, 0.02, Direction.AT_MOST)).mean()
    assert proportion_power(rate, n, 0.02) == pytest.approx(shown, abs=0.01)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="rate"):
        proportion_power(1.5, 10, 0.02)
    with pytest.raises(ValueError, match="row"):
        proportion_power(0.1, 0, 0.02)


def test_the_sizing_command_prints_one_row_per_rate(capsys: pytest.CaptureFixture[str]) -> None:
    from bench.target_power import main

    assert (
        main(["--rate", "3/257", "--rate", "0.03", "--target", "0.02", "--sizes", "257,2000"]) == 0
    )
    out = capsys.readouterr().out.splitlines()
    rows = [line for line in out if line.startswith(("| 3/257", "| 0.03"))]
    assert rows[0].startswith("| 3/257 (1.17%) | 0.05 | 0.8")
    assert rows[1] == "| 0.03 (3.00%) | 0.00 | 0.00 |"
