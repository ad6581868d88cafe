"""The response model's comparators: baselines a clinician would accept, and subgroups.

Every learned baseline is the full model's learner (:func:`models.response.response.
fit_response`: the same ensemble, the same calibration, the same training patients) fitted on a
subset of the inputs of :func:`models.response.history.response_inputs`, so a difference in
AUC is a difference in what the model sees, not in how it learns:

* ``recist``, RECIST 1.1 over all target lesions: the overall response as an ordinal score
  (CR 0, PR 1, SD 2, PD 3) and the target sum's change from baseline and from the nadir;
* ``burden_all``, the burden trajectory of every lesion: every burden input (the primary
  lesion, RECIST 1.1, sum and total volume of every lesion, new lesions, iRECIST state, in-field
  and out-of-field trajectories);
* ``burden``, the primary (irradiated) lesion's trajectory alone (the baseline of earlier
  reports);
* ``in_field`` and ``out_of_field``: the trajectory of the irradiated lesions' sum, and of every
  other lesion's (new lesions included);
* ``pd_l1``: PD-L1 TPS at baseline;
* ``pathology``: the first biopsy's signature (pathology model).

Besides them, the RECIST 1.1 category as a plain score (``recist_rule``: PD 1, SD 0.5, PR or
CR 0), which ranks no one within a category (at the first follow-up most patients are SD), and
two counterfactuals of the full model on the same patients: its biopsy signatures withheld
(``full_no_biopsy``; PD-L1 stays, a clinical value) and the spectral features of PCCT withheld
from the virtual biopsy (``full_no_spectral``).

Subgroups (:data:`SUBGROUPS`): rows split by whether a biopsy is known at the scan and whether
the scan is a PCCT, each reported with the same DeLong intervals.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.evaluation.estimate import Estimate
from models.evaluation.plan import EvaluationPlan
from models.response import evaluate as ev
from models.response.history import (
    ALL_BURDEN_INPUTS,
    ALL_INPUTS,
    BIOPSY_INPUTS,
    BURDEN_INPUTS,
    IN_FIELD_INPUTS,
    OUT_OF_FIELD_INPUTS,
    PD_L1_INPUTS,
    RECIST_INPUTS,
    History,
    recist_category,
)
from schemas.enums import RecistResponse

FULL = ev.REFERENCE_MODEL
RULE = "RECIST 1.1 category rule"
NO_BIOPSY = "full model, biopsy withheld"
NO_SPECTRAL = "full model, spectral withheld"
COUNTERFACTUALS = (NO_BIOPSY, NO_SPECTRAL)


@dataclass(frozen=True)
class ModelSpec:
    """One learned model: its name, inputs and what it is, for the report."""

    name: str
    inputs: tuple[str, ...]
    what: str
    first_biopsy_only: bool = False


MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(FULL, ALL_INPUTS, "every input"),
    ModelSpec(
        "RECIST 1.1, all target lesions",
        RECIST_INPUTS,
        "overall RECIST 1.1 response as an ordinal score (CR 0, PR 1, SD 2, PD 3) and the "
        "target sum's change from baseline and from the nadir",
    ),
    ModelSpec(
        "burden trajectory, all lesions",
        ALL_BURDEN_INPUTS,
        "every burden input: primary lesion, RECIST 1.1, sum and total volume of every lesion, "
        "new lesions, iRECIST state, in-field and out-of-field trajectories",
    ),
    ModelSpec(
        "burden trajectory, primary lesion",
        BURDEN_INPUTS,
        "the primary (irradiated) lesion's volume and diameter against baseline and nadir",
    ),
    ModelSpec(
        "in-field burden alone",
        IN_FIELD_INPUTS,
        "sum of the irradiated lesions' diameters against baseline and nadir, its slope",
    ),
    ModelSpec(
        "out-of-field burden alone",
        OUT_OF_FIELD_INPUTS,
        "sum of every other lesion's diameters (new lesions included) against baseline and "
        "nadir, its slope",
    ),
    ModelSpec("PD-L1 TPS alone", PD_L1_INPUTS, "PD-L1 TPS at baseline (1 % and 50 % cut-offs)"),
    ModelSpec(
        "pathology at baseline alone",
        BIOPSY_INPUTS,
        "the first biopsy's immune signature (pathology model)",
        first_biopsy_only=True,
    ),
)
"""The full model first, then the learned baselines."""

RULE_SCORE = {
    RecistResponse.PD: 1.0,
    RecistResponse.SD: 0.5,
    RecistResponse.NON_CR_NON_PD: 0.5,
    RecistResponse.NE: 0.5,
    RecistResponse.PR: 0.0,
    RecistResponse.CR: 0.0,
}


def rule_scores(histories: Mapping[str, History]) -> list[float]:
    """The RECIST 1.1 category at each scan as a score (PD 1, SD 0.5, PR or CR 0; baseline
    0.5), patients sorted, scans in time order: from the lesion readout where the scan has one,
    else from the primary lesion's diameters."""
    out = []
    for p in sorted(histories):
        scans = sorted(histories[p].scans, key=lambda s: s.at)
        for i, s in enumerate(scans):
            if s.lesions is not None and scans[0].lesions is not None:
                category = s.lesions.recist
                out.append(0.5 if category is None else RULE_SCORE[category])
            else:
                label = recist_category([x.diameter_mm for x in scans[: i + 1]])
                out.append({"PD": 1.0, "PR": 0.0}.get(label, 0.5))
    return out


@dataclass(frozen=True)
class Subgroup:
    """A split of the test rows by what was known at the scan (one input of the row)."""

    family: str
    title: str
    test: Callable[[Mapping[str, float]], bool]
    yes: tuple[str, str]  # (key suffix, words) where ``test`` holds
    no: tuple[str, str]


SUBGROUPS = (
    Subgroup(
        "biopsy",
        "a biopsy known at the scan",
        lambda row: row["has_biopsy"] > 0.5,
        ("biopsy", "with a biopsy"),
        ("no_biopsy", "without a biopsy"),
    ),
    Subgroup(
        "pcct",
        "the scan is a PCCT",
        lambda row: row["is_pcct"] > 0.5,
        ("pcct", "PCCT"),
        ("ct", "conventional CT"),
    ),
)


def subgroup_estimates(
    rows: Sequence[Mapping[str, float]],
    y: Sequence[bool],
    labels: Sequence[str],
    patients: Sequence[str],
    scores: Mapping[str, np.ndarray],
    *,
    plan: EvaluationPlan | None = None,
) -> tuple[dict[str, Estimate], dict[str, dict[str, int]]]:
    """The estimates of every model within each subgroup (keys end ``@<subgroup>``, e.g.
    ``response.full.auc_fu1@pcct``): AUCs and the full model's paired differences (DeLong),
    the full model's calibration at the first follow-up; and the patients at the first
    follow-up in each subgroup (``{"pcct": {"patients_fu1": n, "non_responders_fu1": k}}``)."""
    out: dict[str, Estimate] = {}
    counts: dict[str, dict[str, int]] = {}
    yy = np.asarray(y, dtype=bool)
    lab = np.asarray(labels)
    for group in SUBGROUPS:
        inside = np.array([group.test(r) for r in rows], dtype=bool)
        for (suffix, _), mask in ((group.yes, inside), (group.no, ~inside)):
            idx = np.flatnonzero(mask)
            fu1 = idx[lab[idx] == "fu1"]
            counts[suffix] = {
                "patients_fu1": len(fu1),
                "non_responders_fu1": int(yy[fu1].sum()),
            }
            if idx.size == 0:
                continue
            est, _ = ev.response_estimates(
                yy[idx],
                lab[idx],
                np.asarray(patients)[idx],
                {name: np.asarray(s)[idx] for name, s in scores.items()},
                probabilities={FULL},
                plan=plan,
                pooled=False,
                suffix=f"@{suffix}",
            )
            out.update(est)
    return out, counts


def _p_value(e: Mapping[str, Any] | None) -> str:
    p = ((e or {}).get("details") or {}).get("p_value")
    return "n/a" if p is None else ("< 0.001" if p < 0.001 else f"{p:.3f}")


def baselines_table(names: Sequence[str]) -> str:
    """The report's table of the models compared: name, key, what it sees."""
    what = {m.name: m.what for m in MODELS}
    what[RULE] = (
        "the RECIST 1.1 category itself as a score (PD 1, SD 0.5, PR/CR 0): no learner; it "
        "cannot rank patients within a category"
    )
    what[NO_BIOPSY] = "the full model, scored with the biopsy signatures withheld (PD-L1 kept)"
    what[NO_SPECTRAL] = "the full model, its virtual biopsy scored without the spectral features"
    return ev.markdown_table(
        ["model", "key", "what it sees"],
        [[n, f"`{ev.model_key(n)}`", what.get(n, "")] for n in names],
    )


def subgroup_tables(
    est: Mapping[str, Mapping[str, Any]], names: Sequence[str], counts: Mapping[str, Any]
) -> list[str]:
    """Markdown sections of the subgroup results: per split, the AUC at the first follow-up of
    every model in each half and the full model's difference against it (DeLong)."""
    sections = []
    for group in SUBGROUPS:
        (a, words_a), (b, words_b) = group.yes, group.no
        na, nb = counts.get(a, {}), counts.get(b, {})
        head = [
            "model",
            f"AUC fu1, {words_a}",
            f"AUC fu1, {words_b}",
            f"full minus it, {words_a}",
            f"full minus it, {words_b}",
            f"p, {words_b}",
        ]
        rows = []
        for name in names:
            key = ev.model_key(name)
            diff_a = est.get(f"response.full.auc_fu1_minus_{key}@{a}")
            diff_b = est.get(f"response.full.auc_fu1_minus_{key}@{b}")
            rows.append(
                [
                    name,
                    ev.fmt_ci(est.get(f"response.{key}.auc_fu1@{a}")),
                    ev.fmt_ci(est.get(f"response.{key}.auc_fu1@{b}")),
                    "" if name == FULL else ev.fmt_ci(diff_a, "+.3f"),
                    "" if name == FULL else ev.fmt_ci(diff_b, "+.3f"),
                    "" if name == FULL else _p_value(diff_b),
                ]
            )
        cal = [
            f"{words}: ECE {ev.fmt_ci(est.get(f'response.full.ece_fu1@{s}'))}, calibration "
            f"slope {ev.fmt_ci(est.get(f'response.full.calibration_slope_fu1@{s}'))}"
            for s, words in ((a, words_a), (b, words_b))
        ]
        sections.append(
            f"### By whether {group.title}\n\n"
            f"First follow-up: {na.get('patients_fu1', 0)} patients {words_a} "
            f"({na.get('non_responders_fu1', 0)} non-responders), {nb.get('patients_fu1', 0)} "
            f"{words_b} ({nb.get('non_responders_fu1', 0)} non-responders). An AUC needs two of "
            "each class; n/a otherwise.\n\n"
            + ev.markdown_table(head, rows)
            + "\n\nFull model, "
            + "; ".join(cal)
            + "."
        )
    return sections
