"""One tiny story-v2 training cohort for the tests that train the response models on it.

``test_response_cohort_v2.py`` (every lesion extracted, the models trained with every baseline)
and ``test_evaluate_command.py`` (the declared analysis, trained on it) need the same thing: a
generated cohort, its features extracted by ``irtmon cohort features`` into a cache, and a
pathology teacher fitted on its slides. Built once per test session by the ``story_v2_cohort``
fixture (``tests/unit/conftest.py``); a parallel run gives both modules to one worker
(``SAME_WORKER`` in ``tests/conftest.py``), which builds it once too. The tests only read it:
each writes its models and runs elsewhere.

Test size (128 x 128 x 40), 14 patients, 3 scans each (seed 4242, a seed of these tests only:
plumbing, no accuracy is asserted of the models). About five minutes on two idle cores, most
of it the extraction (the follow-ups' registration).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner

from clinic import generate_cohort

PATIENTS = 14
TIMEPOINTS = 3
SEED = 4242


@dataclass(frozen=True)
class TrainingCohort:
    """The cohort, the extraction's feature cache and throughput report, and the teacher."""

    root: Path
    cohort: Path
    cache: Path
    throughput: dict
    teacher: Path


def teacher(cohort: Path, models_dir: Path) -> Path:
    """A pathology-mil artefact fitted for a few epochs on the cohort's own slides (the teacher
    of the virtual biopsy; its accuracy is not the point here)."""
    from models.pathology import HandcraftedEncoder, TileSpec, TrainConfig, fit_mil
    from models.pathology.train import (
        MODEL_NAME,
        WEIGHTS_FILE,
        class_prior,
        encode_slide,
        ood_reference,
        save_checkpoint,
        slides_from_manifest,
    )
    from models.registry import save_artifact

    spec = HandcraftedEncoder().spec()
    bags = [encode_slide(r, spec, TileSpec()) for r in slides_from_manifest(cohort)]
    fit = fit_mil(bags, bags[::3], TrainConfig(seed=3, max_epochs=6, patience=6))
    folder = models_dir / "teacher"
    weights = save_checkpoint(
        folder / WEIGHTS_FILE,
        fit.model,
        HandcraftedEncoder(),
        TileSpec(),
        ood=ood_reference(bags),
        prior=class_prior(bags),
    )
    artifact = save_artifact(folder, MODEL_NAME, "0.0.1-test", weights)
    assert artifact.folder is not None
    return artifact.folder


def build(root: Path) -> TrainingCohort:
    """Generate the cohort into ``root``, extract its features through the CLI (the report
    counts the studies computed here: the cache starts empty) and fit the teacher."""
    from irtmon.cli import app

    cohort = generate_cohort(
        root / "cohort", PATIENTS, SEED, "test", n_timepoints=TIMEPOINTS, workers=2, story="v2"
    )
    cache = root / "cache"
    res = CliRunner().invoke(
        app,
        [
            "cohort",
            "features",
            "--cohort", str(cohort),
            "--workers", "2",
            "--no-radiomics",
            "--cache-dir", str(cache),
            "--report", str(root / "throughput.json"),
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    return TrainingCohort(
        root=root,
        cohort=cohort,
        cache=cache,
        throughput=json.loads((root / "throughput.json").read_text()),
        teacher=teacher(cohort, root / "teacher-models"),
    )
