"""Time to score one timepoint with the virtual biopsy and the response model, features known.

The worker has a scan's features once the imaging pipeline ran; what this measures is the
rest: the leakage-free inputs from the history, the virtual biopsy of every scan so far, the
response ensemble and its calibration (:func:`models.response.inference.score_timepoint`).

- **baseline**: a logistic regression (one numpy dot product) over the same response inputs,
  built by the same :func:`models.response.history.response_inputs` without virtual biopsy:
  the floor of any per-timepoint model;
- **irtmon**: ``score_timepoint`` with the production configurations (5-member virtual biopsy
  over about 180 features, 7-member response ensemble), loaded from verified artefacts.

Histories are synthetic with the imaging pipeline's feature count (timing does not depend on
the values). Pass ``--signature`` and ``--response`` artefact folders to time trained models.

Run: ``python -m bench.response_inference [--scans 6] [--repeats 200]``
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from models.runtime import set_threads


def synthetic_histories(n: int, scans: int, n_features: int, seed: int = 0) -> list:
    from models.response.history import Biopsy, History, Scan, Signature, Treatment

    rng = np.random.default_rng(seed)
    t0 = datetime(2026, 3, 2, tzinfo=UTC)
    names = [f"enh_f{i:03d}" for i in range(n_features - 8)] + [f"spec_f{i}" for i in range(8)]
    out = []
    for i in range(n):
        a = rng.normal()
        ss = []
        for k in range(scans):
            v = 20.0 * (1 + 0.1 * k * rng.normal())
            feats = {nm: float(a + rng.normal()) for nm in names}
            ss.append(
                Scan(
                    t0 + timedelta(days=49 * k),
                    abs(v),
                    2 * (3 * abs(v) * 1000 / (4 * math.pi)) ** (1 / 3),
                    feats,
                    pcct=bool(k % 2),
                    key=f"p{i}/{k}",
                )
            )
        probs = rng.dirichlet([1, 1, 1])
        sig = Signature(*map(float, probs), float(np.exp(6 + a)))
        out.append(
            (
                f"p{i}",
                History(
                    tuple(ss),
                    (Biopsy(t0 - timedelta(days=20), sig),),
                    Treatment(t0, tuple(t0 + timedelta(days=21 * c) for c in range(10))),
                ),
                bool(a < 0),
            )
        )
    return out


def build_artifacts(folder: Path, histories: list, version: str = "bench") -> tuple[Path, Path]:
    from models.registry import save_artifact
    from models.response.history import ALL_INPUTS, response_inputs
    from models.response.response import fit_response, save_response
    from models.response.signature import fit_signature, pair_scans, save_signature

    sig = fit_signature(pair_scans({p: h for p, h, _ in histories}))
    rows = [response_inputs(h, s.at, sig.signature) for _, h, _ in histories for s in h.scans]
    labels = [y for _, h, y in histories for _ in h.scans]
    pats = [p for p, h, _ in histories for _ in h.scans]
    cut = int(len(rows) * 0.7)
    resp = fit_response(rows[:cut], labels[:cut], pats[:cut], ALL_INPUTS, rows[cut:], labels[cut:])
    s = save_artifact(folder, "ct-signature", version, save_signature(sig, folder / "s.pt"))
    r = save_artifact(folder, "response", version, save_response(resp, folder / "r.pt"))
    return s.folder, r.folder  # type: ignore[return-value]


def main() -> None:
    from models.response.history import ALL_INPUTS, response_inputs
    from models.response.inference import load_models, score_timepoint

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=6, help="Scans in the history.")
    parser.add_argument("--features", type=int, default=180, help="CT features per scan.")
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--signature", type=Path, default=None)
    parser.add_argument("--response", type=Path, default=None)
    args = parser.parse_args()
    set_threads(1)

    histories = synthetic_histories(60, args.scans, args.features)
    with tempfile.TemporaryDirectory() as tmp:
        if args.signature is None or args.response is None:
            t0 = time.perf_counter()
            sig_folder, resp_folder = build_artifacts(Path(tmp), histories)
            train_s = time.perf_counter() - t0
        else:
            sig_folder, resp_folder, train_s = args.signature, args.response, None
        t0 = time.perf_counter()
        models = load_models((sig_folder, None, "bench"), (resp_folder, None, "bench"))
        load_s = time.perf_counter() - t0

        _, history, _ = histories[0]
        at = history.scans[-1].at
        rng = np.random.default_rng(1)
        weights = rng.normal(size=len(ALL_INPUTS))

        def baseline() -> float:
            x = response_inputs(history, at)
            z = float(np.dot(weights, [x[k] for k in ALL_INPUTS]))
            return 1 / (1 + math.exp(-z))

        def irtmon() -> object:
            return score_timepoint(history, at, models)

        irtmon()
        timings: dict[str, list[float]] = {"baseline": [], "irtmon": []}
        for _ in range(args.repeats):
            for name, fn in (("baseline", baseline), ("irtmon", irtmon)):
                t = time.perf_counter()
                fn()
                timings[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in timings.items()}
    report = {
        "scans_in_history": args.scans,
        "features_per_scan": args.features,
        "repeats": args.repeats,
        "model_load_s": round(load_s, 3),
        "training_s (synthetic artefacts)": None if train_s is None else round(train_s, 1),
        "baseline_logistic_ms": round(med["baseline"] * 1000, 3),
        "irtmon_score_timepoint_ms": round(med["irtmon"] * 1000, 3),
        "irtmon_p95_ms": round(float(np.percentile(timings["irtmon"], 95)) * 1000, 3),
        "ratio_irtmon_over_baseline": round(med["irtmon"] / med["baseline"], 1),
        "target": "well under 1 s per timepoint",
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
