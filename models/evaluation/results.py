"""The results of one declared evaluation: a JSON payload and its Markdown rendering, both
citing the declaration and the commit it was committed in. Pure: writing the files is
:func:`irtmon.protocol.write_results`."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from models.evaluation.declaration import Declaration
from models.evaluation.estimate import Estimate
from models.evaluation.targets import judge, render

RESULTS_FORMAT = "irtmon-evaluation-results/1"


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
            f"{c['name']} (seed {c['seed']}, {c['patients']} patients)"
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
    others = [k for k in estimates if k not in declaration.metrics]
    if others:
        lines += ["", "Also computed (not declared, not judged):", ""]
        lines += [f"- {k}: {estimates[k].format()} ({estimates[k].method})" for k in others]
    if declaration.targets:
        lines += [
            "",
            "## Targets",
            "",
            "A target is met only when its whole interval clears it.",
            "",
        ]
        lines += [f"- {render(t, estimates.get(t.metric))}" for t in declaration.targets]
    return "\n".join(lines) + "\n"
