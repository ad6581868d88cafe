"""Time of the pathology inference on one slide, against the time to just read its tiles.

Measured on one virtual-clinic slide (default: the clinic's default 2048 x 2048 px at
0.5 µm/px; ``--size realistic`` for 8192 x 8192):

- **baseline**: :func:`models.pathology.read_tiles` alone (open, tissue mask, decode the tissue
  tiles), the floor of any slide pipeline;
- **irtmon**: :func:`models.pathology.analyse_slide` (read, encode, gated attention MIL with
  16 MC-dropout passes, heat map), first call in the process (model load included) and warm.

Reports medians over ``--repeats`` and the ratio warm inference / read. With no ``--model``,
the benchmark writes an untrained artefact of the same architecture (inference time does not
depend on the weights' values); pass a trained ``pathology-mil`` folder to time that one.

Run: ``python -m bench.pathology_inference [--size realistic] [--model FOLDER]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def make_slide(folder: Path, size: int, seed: int) -> Path:
    """Render and write one inflamed virtual-clinic slide."""
    from clinic.slides import render_slide, write_pyramid
    from schemas.enums import ImmunePhenotype

    image, tiles, _ = render_slide(
        np.random.default_rng(seed), ImmunePhenotype.INFLAMED, 900.0, 500.0, size
    )
    path = folder / "slide.tiff"
    write_pyramid(path, image, description="irtmon benchmark slide, synthetic")
    tiles.to_parquet(folder / "slide.tiles.parquet", index=False)
    return path


def untrained_artifact(models_dir: Path, slide: Path) -> Path:
    """An untrained model (normalised on the slide's own features) saved as an artefact."""
    from models.pathology import GatedAttentionMIL, HandcraftedEncoder, MILConfig, TileSpec
    from models.pathology.slide import read_tiles
    from models.pathology.train import MODEL_NAME, WEIGHTS_FILE, save_checkpoint
    from models.registry import save_artifact

    encoder, spec = HandcraftedEncoder(), TileSpec()
    feats = encoder.encode(read_tiles(slide, spec).tiles, spec.mpp)
    model = GatedAttentionMIL(MILConfig(in_dim=encoder.dim))
    model.set_normalisation(feats.mean(0), feats.std(0), 5.0, 2.0)
    weights = save_checkpoint(models_dir / WEIGHTS_FILE, model, encoder, spec)
    return save_artifact(models_dir, MODEL_NAME, "bench-untrained", weights).folder  # type: ignore[return-value]


def main() -> None:
    """Run the benchmark and print a JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["test", "realistic"], default="test")
    parser.add_argument("--model", type=Path, default=None, help="pathology-mil artefact folder")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    from clinic.cohort import SIZES
    from models.pathology import analyse_slide, read_tiles
    from models.pathology.inference import load_pipeline

    with tempfile.TemporaryDirectory(prefix="irtmon-bench-patho-") as tmp:
        tmp_path = Path(tmp)
        size = SIZES[args.size].slide_px
        slide = make_slide(tmp_path, size, args.seed)
        model = args.model or untrained_artifact(tmp_path / "models", slide)
        spec = load_pipeline(model).tile_spec

        t0 = time.perf_counter()
        first = analyse_slide(slide, model)
        cold = time.perf_counter() - t0

        reads, warms, parts = [], [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            tiles = read_tiles(slide, spec)
            reads.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            res = analyse_slide(slide, model)
            warms.append(time.perf_counter() - t0)
            parts.append(res.seconds)
        read_s, warm_s = statistics.median(reads), statistics.median(warms)
        report = {
            "slide_px": size,
            "tiles": tiles.n_tiles,
            "model": str(model) if args.model else "untrained (same architecture)",
            "encoder": first.provenance.encoder,
            "read_tiles_s": round(read_s, 3),
            "inference_cold_s": round(cold, 3),
            "inference_warm_s": round(warm_s, 3),
            "ratio_inference_over_read": round(warm_s / read_s, 2),
            "steps_median_s": {
                k: round(statistics.median(p[k] for p in parts), 4) for k in parts[0]
            },
            "repeats": args.repeats,
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
