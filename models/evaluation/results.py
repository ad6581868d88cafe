"""The results of one declared evaluation: a JSON payload and its Markdown rendering, both
citing the declaration and the commit it was committed in. Pure: writing the files is
:func:`irtmon.protocol.write_results`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from models.evaluation.declaration import (
    BASE_VARIANT,
    VARIANT_KEY,
    Declaration,
    split_variant_key,
    variant_key,
)
from models.evaluation.estimate import Estimate
from models.evaluation.targets import judge, render

RESULTS_FORMAT = "irtmon-evaluation-results/1"

ROBUSTNESS_METRICS = (
    "response.full.auc_planning",
    "response.full.auc_fu1",
    "response.full.auc_fu1_minus_burden_all",
    "response.full.auc_fu1_minus_recist",
    "response.full.ece_fu1",
    "response.full.calibration_slope_fu1",
    "response.full_no_biopsy.auc_fu1",
    "response.full_no_spectral.auc_fu1",
    "ct_signature.balanced_accuracy_vs_teacher",
)
"""The headline metrics of the robustness table (issue #22 item 6), in its row order."""


def results_payload(
    declaration: Declaration,
    estimates: Mapping[str, Estimate],
    *,
    declaration_commit: str,
    declared_at: datetime,
    evaluated_at_commit: str,
    evaluated_at: datetime,
    command: str,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Machine-readable results: every estimate with its interval, every target's verdict.

    Raises
    ------
    ValueError
        A declared metric without an estimate: the declared analysis must compute them all
        (report a metric that cannot be computed as an estimate with ``nan`` bounds).
    """
    missing = [m for m in declaration.metrics if m not in estimates]
    if missing:
        raise ValueError(f"declared metrics without an estimate: {missing}")
    return {
        "format": RESULTS_FORMAT,
        "declaration": {
            "id": declaration.id,
            "path": str(declaration.path) if declaration.path else None,
            "commit": declaration_commit,
            "committed_at": declared_at.isoformat(),
            "written_at_commit": declaration.written_at_commit,
            "story_version": declaration.story_version,
        },
        "evaluated_at": evaluated_at.isoformat(),
        "evaluated_at_commit": evaluated_at_commit,
        "command": command,
        "test_cohorts": [
            {"name": c.name, "seed": c.seed, "patients": c.patients}
            | ({"variant": c.variant} if c.variant != BASE_VARIANT else {})
            for c in declaration.test_cohorts
        ],
        "estimates": {k: v.to_dict() for k, v in estimates.items()},
        "targets": [
            {
                "metric": t.metric,
                "direction": str(t.direction),
                "value": t.value,
                "verdict": str(judge(t, estimates.get(t.metric))),
            }
            for t in declaration.targets
        ],
        "extra": dict(extra or {}),
    }


def results_markdown(
    declaration: Declaration, estimates: Mapping[str, Estimate], payload: Mapping[str, Any]
) -> str:
    """The human-readable results file (``docs/evaluation/results/<id>.md``)."""
    d = payload["declaration"]
    lines = [
        f"# Results of declaration `{declaration.id}`",
        "",
        f"- Declaration: `{d['path']}`, committed in `{d['commit']}` at {d['committed_at']} "
        f"(written at `{d['written_at_commit']}`); story version {d['story_version']}.",
        f"- Evaluated once, at {payload['evaluated_at']}, on commit "
        f"`{payload['evaluated_at_commit']}`, by `{payload['command']}`.",
        "- Test cohorts: "
        + ", ".join(
            f"{c['name']} (seed {c['seed']}, {c['patients']} patients"
            + (f", story variant {c['variant']}" if c.get("variant") else "")
            + ")"
            for c in payload["test_cohorts"]
        )
        + ".",
        f"- Intervals: {declaration.interval_method} ({declaration.level:.0%}).",
        "",
        "## Estimates",
        "",
        "| metric | estimate [interval] | method | patients |",
        "|---|---|---|---|",
    ]
    for key in declaration.metrics:
        e = estimates[key]
        lines.append(f"| {key} | {e.format()} | {e.method} | {e.n} |")
    others = [k for k in estimates if k not in declaration.metrics and VARIANT_KEY not in k]
    if others:
        lines += ["", "Also computed (not declared, not judged):", ""]
        lines += [f"- {k}: {estimates[k].format()} ({estimates[k].method})" for k in others]
    on_variants = sum(k not in declaration.metrics and VARIANT_KEY in k for k in estimates)
    if on_variants:
        lines += [
            "",
            f"Also computed on the story variants' test cohorts (not declared, not judged): "
            f"{on_variants} estimates, in the JSON results.",
        ]
    if declaration.targets:
        lines += [
            "",
            "## Targets",
            "",
            "A target is met only when its whole interval clears it.",
            "",
        ]
        lines += [f"- {render(t, estimates.get(t.metric))}" for t in declaration.targets]
    if any(VARIANT_KEY in k for k in estimates):
        variants = [BASE_VARIANT] + [c.variant for c in declaration.variant_test_cohorts]
        header, rows = robustness_table(estimates, variants)
        lines += [
            "",
            "## Robustness across story variants",
            "",
            "The same frozen models (trained and tuned once, on the base story) on one test "
            "cohort per story variant of the virtual clinic; each cell is the estimate with its "
            "interval on that variant's test cohort (keys `<metric>@variant:<name>`; the base "
            "story's carry no suffix).",
            "",
            _markdown_table(header, rows),
        ]
    return "\n".join(lines) + "\n"


def robustness_table(
    estimates: Mapping[str, Estimate],
    variants: Sequence[str] | None = None,
    metrics: Sequence[str] = ROBUSTNESS_METRICS,
) -> tuple[list[str], list[list[str]]]:
    """The robustness table: one row per headline metric present (for any variant), one
    column per story variant, base first, each cell ``estimate [lo, hi]`` (``n/a`` where a
    variant has no estimate of it).

    Parameters
    ----------
    estimates
        Metric key -> estimate; a non-base variant's keys end ``@variant:<name>``.
    variants
        The columns after ``base`` in this order (default: the variants found in
        ``estimates``, in the order of their first key); ``base`` is always first.
    metrics
        The rows, in order (default :data:`ROBUSTNESS_METRICS`).

    Returns
    -------
    header, rows
        ``["metric", "base", <variant>...]`` and one list of cells per row.
    """
    found = [split_variant_key(k)[1] for k in estimates]
    columns = [BASE_VARIANT] + [
        v for v in dict.fromkeys(list(variants or []) + found) if v != BASE_VARIANT
    ]
    rows = []
    for metric in metrics:
        cells = [estimates.get(variant_key(metric, v)) for v in columns]
        if any(e is not None for e in cells):
            rows.append([metric] + [e.format() if e is not None else "n/a" for e in cells])
    return ["metric", *columns], rows


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
