"""Registration error against a story-v2 cohort's truth, per sample count of a rigid stage.

Run ``python -m bench.registration_accuracy --cohort DIR`` (``--help`` for options) on a
training or tuning cohort written by ``irtmon clinic generate --story v2`` (never a test cohort:
this is for choosing settings). For each patient the planning study is read with its annotation
(as the worker reads it), and each follow-up's series is registered to it
(:func:`models.imaging.registration.register`, around every baseline lesion) once per sample
count (``--samples``) of the local rigid stage, or of the global one (``--stage global``). The
virtual clinic moves the patient rigidly between scans and records where each lesion lies on the
scan (``centre_*_mm``) and in the body, which is the planning scan's frame (``body_*_mm``); a
registration maps the follow-up's points to the baseline's, so each lesion's error is the
distance between its follow-up centre carried by the transform and its true place. Reported per
sample count: the largest error per follow-up (median and maximum over follow-ups), every
lesion's error (median, 95th percentile), how far the transform lies from the last sample
count's at the lesions, and the CPU seconds of a registration (the baseline's half made once
before). New lesions are left out (not on
the baseline scan).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.lesion_accuracy import _patient_events
from models.imaging import registration
from models.imaging.pipeline import load_acquisition
from models.imaging.study import analyse_study
from streams.scoring import study_annotations


def _points(truth: dict[str, Any], timepoint: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each lesion's centre on the follow-up and its true place on the baseline (mm)."""
    return [
        (
            np.array([r["centre_x_mm"], r["centre_y_mm"], r["centre_z_mm"]], float),
            np.array([r["body_x_mm"], r["body_y_mm"], r["body_z_mm"]], float),
        )
        for r in truth["timepoints"][timepoint]["lesions"]
        if not r["new"]
    ]


def _carried(transform: Any, point: np.ndarray) -> np.ndarray:
    return np.array(transform.TransformPoint(tuple(float(v) for v in point)))


_STAGES = {"local": "_LOCAL_SAMPLES", "global": "_GLOBAL_SAMPLES"}
"""The stage whose sample count varies, and the setting that holds it."""


def measure(
    cohort: Path, limit: int | None, counts: list[int], stage: str = "local"
) -> dict[str, Any]:
    """The errors per sample count of ``stage`` (see the module docstring)."""
    setting = _STAGES[stage]
    events = _patient_events(cohort)
    worst: dict[int, list[float]] = {c: [] for c in counts}
    every: dict[int, list[float]] = {c: [] for c in counts}
    apart: dict[int, list[float]] = {c: [] for c in counts}
    cpu: dict[int, list[float]] = {c: [] for c in counts}
    unregistered: list[float] = []
    default = getattr(registration, setting)
    try:
        for patient in sorted(events)[:limit]:
            evs = events[patient]
            truth = json.loads((cohort / "ground_truth" / f"{patient}.json").read_text())
            first = Path(evs[0]["path"])
            annotation = Path(evs[0]["lesion"]) if evs[0]["lesion"] else None
            baseline = analyse_study(
                first,
                study_uid=evs[0]["study_uid"],
                series_uid=evs[0]["series_uid"],
                lesion_paths=study_annotations(annotation, first),
                time=evs[0]["at"],
                radiomics=False,
                peritumoural=False,
                enhancement=False,
            ).as_baseline()
            masks = [lesion.mask for lesion in baseline.lesions]
            # made once, before any timing: every count's CPU seconds are those of the stages
            side = registration.prepare_baseline(baseline.volume, masks)
            for i, ev in enumerate(evs[1:], start=1):
                series = sorted(d for d in Path(ev["path"]).iterdir() if d.is_dir())
                volume = load_acquisition(
                    series, study_uid=ev["study_uid"], series_uid=ev["series_uid"]
                ).ref.volume
                points = _points(truth, i)
                unregistered.append(max(float(np.linalg.norm(a - b)) for a, b in points))
                transforms = {}
                for c in counts:
                    setattr(registration, setting, c)
                    started = time.process_time()
                    result = registration.register(volume, baseline.volume, masks, baseline=side)
                    cpu[c].append(time.process_time() - started)
                    errors = [
                        float(np.linalg.norm(_carried(result.transform, a) - b)) for a, b in points
                    ]
                    worst[c].append(max(errors))
                    every[c].extend(errors)
                    transforms[c] = result.transform
                last = transforms[counts[-1]]
                for c in counts:
                    apart[c].append(
                        max(
                            float(np.linalg.norm(_carried(transforms[c], a) - _carried(last, a)))
                            for a, _ in points
                        )
                    )
    finally:
        setattr(registration, setting, default)
    return {
        "cohort": str(cohort),
        "stage": stage,
        "follow_ups": len(unregistered),
        "unregistered_worst_mm_median": round(statistics.median(unregistered), 3),
        "by_samples": {
            str(c): {
                "worst_mm_median": round(statistics.median(worst[c]), 3),
                "worst_mm_max": round(max(worst[c]), 3),
                "lesion_mm_median": round(statistics.median(every[c]), 3),
                "lesion_mm_p95": round(float(np.percentile(every[c], 95)), 3),
                f"from_{counts[-1]}_mm_median": round(statistics.median(apart[c]), 3),
                f"from_{counts[-1]}_mm_max": round(max(apart[c]), 3),
                "cpu_s_median": round(statistics.median(cpu[c]), 3),
            }
            for c in counts
        },
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cohort", type=Path, required=True, help="A story-v2 cohort folder.")
    parser.add_argument("--limit", type=int, default=None, help="First N patients only.")
    parser.add_argument(
        "--samples",
        default="5000,10000,20000,60000",
        help="Local-stage sample counts, comma-separated; the last is the one the others are "
        "compared with (default 5000,10000,20000,60000).",
    )
    parser.add_argument(
        "--stage", choices=sorted(_STAGES), default="local", help="The stage (default local)."
    )
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    args = parser.parse_args(argv)
    counts = [int(v) for v in args.samples.split(",")]
    results = measure(args.cohort.resolve(), args.limit, counts, args.stage)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
