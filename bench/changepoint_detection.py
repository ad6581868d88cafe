"""Benchmark of the change-point detectors on virtual-clinic trajectories with known changes.

Run ``python -m bench.changepoint_detection`` (``--help`` for options). For every detector
(BOCPD, CUSUM, iRECIST, plain RECIST 1.1, the combined rule, and ruptures' PELT run offline on
the whole series as a reference) it reports, on a cohort disjoint from the calibration cohort:

* detection of true non-response: the share of non-responders whose change falls within
  follow-up that the detector flags at or after the change, and the delay from the change in
  assessments (flag index minus the first assessment on or after the change) and in weeks;
* false alarms per patient-year: the first flag in follow-up without a true change
  (responders, pseudo-progression, and non-responders before their change), over the years of
  such follow-up;
* pseudo-progression alarms: pseudo-progression patients flagged at any time;
* the paired comparison with RECIST 1.1 (flags never raised count as one past the last
  assessment).

The combined rule runs with the shipped coefficients and policy, which
``bench.changepoint_pipeline fit`` fitted on story-v2 outputs of the trained models; the
simulated trajectories here are story v1's. ``--calibrate`` refits the coefficients on this
benchmark's own training cohort and prints them, to compare (they are no longer shipped).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import ruptures as rpt

from bench.changepoint_data import SimulatedPatient, simulate_cohort
from clinic.story import ResponseClass
from models.changepoint.decision import (
    FEATURES,
    Coefficients,
    DecisionConfig,
    DecisionRule,
    calibrate,
    features,
)
from models.changepoint.irecist import Irecist

TRAIN_SEED = 2026
TEST_SEED = 7

AlarmFn = Callable[[SimulatedPatient], np.ndarray]


def labels(sim: SimulatedPatient) -> np.ndarray:
    """1 at assessments on or after the true change of a non-responder, else 0."""
    if sim.change_days is None:
        return np.zeros(len(sim.series), int)
    return (sim.days_from_fraction >= sim.change_days).astype(int)


# ----------------------------------------------------------------------------- detectors
# Each returns a boolean per assessment: is the detector in alarm at t (online: from 0..t only,
# except PELT, which sees the whole series).


def recist11(sim: SimulatedPatient) -> np.ndarray:
    s = sim.series.sum_diameters_mm
    out = np.zeros(len(s), bool)
    for t in range(1, len(s)):
        nadir = s[:t].min()
        out[t] = s[t] >= 1.2 * nadir and s[t] - nadir >= 5.0
    return out


def irecist_cpd(sim: SimulatedPatient) -> np.ndarray:
    m = Irecist().fit(sim.series.sum_diameters_mm, sim.series.days, sim.series.new_lesions)
    return np.array([a.state.value == "iCPD" for a in m.assessments_])


def _feature_alarm(name: str, level: float) -> AlarmFn:
    col = FEATURES.index(name)

    def alarm(sim: SimulatedPatient) -> np.ndarray:
        return features(sim.series)[:, col] >= level

    alarm.__name__ = name
    return alarm


def combined(config: DecisionConfig) -> AlarmFn:
    def alarm(sim: SimulatedPatient) -> np.ndarray:
        rule = DecisionRule(config=config).fit(sim.series)
        d = rule.predict()
        out = np.zeros(len(sim.series), bool)
        for f in d.flags:
            out[f.index :] = True
        return out

    return alarm


def pelt_offline(pen: float = 0.02, min_shift: float = 0.10) -> AlarmFn:
    """ruptures PELT (l2 cost) on log burden relative to baseline, on the whole series; alarm
    from the first upward break of at least ``min_shift`` (log units)."""

    def alarm(sim: SimulatedPatient) -> np.ndarray:
        x = np.log(sim.series.sum_diameters_mm)
        x = (x - x[0])[:, None]
        n = len(x)
        out = np.zeros(n, bool)
        bkps = rpt.Pelt(model="l2", min_size=1, jump=1).fit(x).predict(pen=pen)
        edges = [0, *bkps]
        for a, b, c in zip(edges, edges[1:], edges[2:], strict=False):
            if x[b:c].mean() - x[a:b].mean() >= min_shift:
                out[b:] = True
                break
        return out

    return alarm


# ----------------------------------------------------------------------------- metrics


def evaluate(cohort: list[SimulatedPatient], alarm_fn: AlarmFn) -> dict[str, object]:
    n_detect = n_changes = 0
    delays_tp: list[int] = []
    delays_wk: list[float] = []
    false_alarms = 0
    at_risk_years = 0.0
    pp_alarms = pp_total = 0
    first_detect: dict[int, int] = {}
    for i, sim in enumerate(cohort):
        alarm = alarm_fn(sim)
        days = sim.days_from_fraction
        n = len(days)
        ci = sim.change_index
        quiet_end = ci if ci is not None else n  # assessments without a true change: 0..quiet_end-1
        last_quiet_day = (
            days[quiet_end - 1] if sim.change_days is None else min(sim.change_days, days[-1])
        )
        at_risk_years += max(last_quiet_day - days[0], 0.0) / 365.25
        if alarm[:quiet_end].any():
            false_alarms += 1
        if sim.response is ResponseClass.PSEUDO_PROGRESSION:
            pp_total += 1
            pp_alarms += int(alarm.any())
        if sim.response is ResponseClass.NON_RESPONDER and ci is not None:
            n_changes += 1
            hits = np.nonzero(alarm[ci:])[0]
            if len(hits):
                t = ci + int(hits[0])
                n_detect += 1
                delays_tp.append(t - ci)
                delays_wk.append((days[t] - sim.change_days) / 7.0)
                first_detect[i] = t
            else:
                first_detect[i] = n  # never: one past the last assessment
    return {
        "non_responders_with_change": n_changes,
        "detected": n_detect,
        "detection_rate": n_detect / n_changes if n_changes else math.nan,
        "median_delay_timepoints": float(np.median(delays_tp)) if delays_tp else math.nan,
        "median_delay_weeks": float(np.median(delays_wk)) if delays_wk else math.nan,
        "false_alarms": false_alarms,
        "at_risk_patient_years": at_risk_years,
        "false_alarms_per_patient_year": false_alarms / at_risk_years if at_risk_years else 0.0,
        "pseudo_progression_patients": pp_total,
        "pseudo_progression_alarms": pp_alarms,
        "_first_detect": first_detect,
    }


def calibrate_on(cohort: list[SimulatedPatient], version: str) -> Coefficients:
    rows = [features(s.series) for s in cohort]
    return calibrate(rows, [labels(s) for s in cohort], version=version)


def run(
    n: int, seed: int, train_n: int, train_seed: int, config: DecisionConfig, pelt_pen: float
) -> dict[str, object]:
    cohort = simulate_cohort(n, seed)
    detectors: dict[str, AlarmFn] = {
        "recist_1_1": recist11,
        "irecist_icpd": irecist_cpd,
        "bocpd": _feature_alarm("bocpd", 0.5),
        "cusum": _feature_alarm("cusum", 0.95),
        "combined": combined(config),
        "pelt_offline": pelt_offline(pelt_pen),
    }
    results: dict[str, dict[str, object]] = {}
    timings: dict[str, float] = {}
    for name, fn in detectors.items():
        t0 = time.perf_counter()
        results[name] = evaluate(cohort, fn)
        timings[name] = time.perf_counter() - t0
    ref = results["recist_1_1"].pop("_first_detect")
    comparisons = {}
    for name, r in results.items():
        mine = r.pop("_first_detect", None) if name != "recist_1_1" else ref
        diffs = [ref[i] - mine[i] for i in ref]
        comparisons[name] = {
            "median_timepoints_earlier_than_recist": float(np.median(diffs)) if diffs else 0.0,
            "share_earlier": float(np.mean([d > 0 for d in diffs])) if diffs else 0.0,
            "share_later": float(np.mean([d < 0 for d in diffs])) if diffs else 0.0,
        }
        r.update(comparisons[name])
        r["seconds"] = round(timings[name], 2)
    counts = {c.value: sum(s.response is c for s in cohort) for c in ResponseClass}
    # calibration of the combined probability on the test cohort (assessments 1..n)
    probs = np.concatenate(
        [DecisionRule(config=config).fit(s.series).probabilities_[1:] for s in cohort]
    )
    ys = np.concatenate([labels(s)[1:] for s in cohort])
    ok = np.isfinite(probs)
    probs, ys = probs[ok], ys[ok]
    edges = np.array([0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0])
    bins = []
    for lo, hi in itertools.pairwise(edges):
        m = (probs >= lo) & (probs < hi if hi < 1 else probs <= hi)
        if m.any():
            bins.append(
                {
                    "bin": f"{lo:.1f}-{hi:.1f}",
                    "n": int(m.sum()),
                    "mean_predicted": round(float(probs[m].mean()), 3),
                    "observed": round(float(ys[m].mean()), 3),
                }
            )
    calibration = {
        "brier": round(float(np.mean((probs - ys) ** 2)), 4),
        "base_rate": round(float(ys.mean()), 3),
        "bins": bins,
    }
    return {
        "cohort": {
            "n": n,
            "seed": seed,
            "timepoints": len(cohort[0].series),
            "classes": counts,
            "diameter_cv": 0.06,
            "volume_cv": 0.12,
        },
        "calibration_cohort": {"n": train_n, "seed": train_seed},
        "config": {
            "threshold": config.threshold,
            "min_timepoints": config.min_timepoints,
            "confirm": config.confirm,
            "coefficients": config.coefficients.version,
        },
        "results": results,
        "combined_calibration": calibration,
    }


COLUMNS = [
    ("detection_rate", "detected", "{:.0%}"),
    ("median_delay_timepoints", "delay (tp)", "{:.1f}"),
    ("median_delay_weeks", "delay (wk)", "{:.1f}"),
    ("median_timepoints_earlier_than_recist", "earlier vs RECIST (tp)", "{:+.1f}"),
    ("false_alarms_per_patient_year", "false alarms / pt-yr", "{:.3f}"),
    ("pseudo_progression_alarms", "PP alarms", "{}"),
]


def table(report: dict[str, object]) -> str:
    res = report["results"]
    pp_total = next(iter(res.values()))["pseudo_progression_patients"]
    head = ["detector", *[c[1] for c in COLUMNS]]
    rows = [head]
    for name, r in res.items():
        cells = [name]
        for key, _, fmt in COLUMNS:
            v = r[key]
            cells.append(
                fmt.format(v) + (f"/{pp_total}" if key == "pseudo_progression_alarms" else "")
            )
        rows.append(cells)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.changepoint_detection", description=__doc__.splitlines()[0]
    )
    ap.add_argument("--patients", type=int, default=500)
    ap.add_argument("--seed", type=int, default=TEST_SEED)
    ap.add_argument("--train-patients", type=int, default=1000)
    ap.add_argument("--train-seed", type=int, default=TRAIN_SEED)
    ap.add_argument("--threshold", type=float, default=None)
    ap.add_argument("--confirm", choices=["none", "repeat"], default=None)
    ap.add_argument("--pelt-penalty", type=float, default=0.02)
    ap.add_argument(
        "--calibrate",
        action="store_true",
        help="refit the coefficients on the training cohort and use them",
    )
    ap.add_argument("--json", type=Path, default=None, help="also write the report here")
    args = ap.parse_args(argv)
    config = DecisionConfig()
    if args.calibrate:
        coeffs = calibrate_on(
            simulate_cohort(args.train_patients, args.train_seed),
            version=f"vclinic-seed{args.train_seed}-n{args.train_patients}",
        )
        print(
            "calibrated coefficients:",
            json.dumps(
                {
                    "intercept": coeffs.intercept,
                    "weights": coeffs.weights,
                    "version": coeffs.version,
                },
                indent=1,
            ),
            file=sys.stderr,
        )
        config = replace(config, coefficients=coeffs)
    overrides = {
        k: v for k, v in (("threshold", args.threshold), ("confirm", args.confirm)) if v is not None
    }
    if overrides:
        config = replace(config, **overrides)
    report = run(
        args.patients, args.seed, args.train_patients, args.train_seed, config, args.pelt_penalty
    )
    print(table(report))
    cal = report["combined_calibration"]
    print(
        f"combined probability: Brier {cal['brier']} (base rate {cal['base_rate']}); "
        + "; ".join(
            f"{b['bin']}: predicted {b['mean_predicted']}, observed {b['observed']} (n={b['n']})"
            for b in cal["bins"]
        )
    )
    text = json.dumps(report, indent=1, default=float)
    if args.json:
        args.json.write_text(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
