"""How large a held-out test must be to show a proportion target, before it is declared.

Run ``python -m bench.target_power --rate 5/374 --target 0.02 --sizes 1000,2000,3000
--rows-per-patient 257/1200`` (``--help`` for options). For each rate (a fraction such as
``5/374``, the count seen in earlier tests, or a decimal) and each test size (rows: for the
false-new target, lesions called new) it prints the probability that the test's Wilson
interval clears the target (:func:`models.evaluation.power.proportion_power`, exact) and, with
``--rows-per-patient``, the patients such a test needs. The declared analyses' intervals are
never narrower than Wilson's, so these are upper bounds on the chance of showing the target.
"""

from __future__ import annotations

import argparse
from fractions import Fraction

from models.evaluation import Direction, proportion_power


def fraction(text: str) -> float:
    """``5/374`` or ``0.0134``."""
    try:
        return float(Fraction(text))
    except (ValueError, ZeroDivisionError) as exc:
        raise argparse.ArgumentTypeError(f"not a rate: {text!r}") from exc


def sizes(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a list of sizes: {text!r}") from exc
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"sizes are positive integers: {text!r}")
    return values


def table(
    rates: list[tuple[str, float]],
    test_sizes: list[int],
    target: float,
    direction: Direction,
    rows_per_patient: float | None,
) -> str:
    head = "| rate | " + " | ".join(
        f"{n:,} rows" + (f" ({n / rows_per_patient:,.0f} patients)" if rows_per_patient else "")
        for n in test_sizes
    )
    lines = [head + " |", "|---" * (len(test_sizes) + 1) + "|"]
    for label, rate in rates:
        cells = [f"{proportion_power(rate, n, target, direction):.2f}" for n in test_sizes]
        lines.append(f"| {label} ({rate:.2%}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=str, action="append", required=True, help="e.g. 5/374")
    parser.add_argument("--target", type=float, required=True, help="e.g. 0.02")
    parser.add_argument(
        "--direction", choices=[d.value for d in Direction], default=Direction.AT_MOST.value
    )
    parser.add_argument("--sizes", type=sizes, default=[250, 500, 1000, 2000, 3000])
    parser.add_argument("--rows-per-patient", type=fraction, default=None)
    args = parser.parse_args(argv)
    rates = [(r, fraction(r)) for r in args.rate]
    print(
        f"P(the Wilson 95 % interval shows the proportion {args.direction} {args.target:g}), "
        "exact binomial"
    )
    print(table(rates, args.sizes, args.target, Direction(args.direction), args.rows_per_patient))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
