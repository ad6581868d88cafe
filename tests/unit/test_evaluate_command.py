"""``irtmon evaluate`` end to end, on tiny story-v2 cohorts and a throwaway declaration
committed in a temporary git repository.

The protocol's refusals (uncommitted declaration, changed frozen code, a test cohort generated
before the declaration's commit, a training cohort that is not the declared one), a look
logged before any test data is read (an analysis that fails on the test cohort leaves its look
in the log, and the next attempt needs a reason), then the one analysis: trained on the
training cohort, calibrated on the tuning cohort, evaluated on the test cohort, with results
that cite the declaration and carry intervals; a second evaluation is refused.

Test size (128 x 128 x 40): trained on the story-v2 training cohort of
``test_response_cohort_v2.py`` (14 patients, 3 scans each; built once per session with its
feature cache and teacher, :mod:`tests.unit.story_v2_cohort`), tuned and tested on 6 and 6
patients with 2 scans each (seeds of this test only, chosen so that each cohort has both
outcomes; plumbing, no accuracy is asserted). Several minutes on two cores: marked slow.
"""

from __future__ import annotations

import json
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clinic import generate_cohort
from models.exceptions import ProtocolError
from tests.unit import story_v2_cohort
from tests.unit.story_v2_cohort import TrainingCohort
from tests.unit.test_protocol import _commit, protocol_repo

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]  # 12-16 min on a loaded 2-core machine

TIMEPOINTS = 2  # of the tuning and test cohorts
TRAIN = (story_v2_cohort.SEED, story_v2_cohort.PATIENTS, story_v2_cohort.TIMEPOINTS)
TUNE, TEST = (22905, 6), (22907, 6)
METRICS = [
    "response.full.auc_planning",
    "response.full.auc_fu1",
    "response.full.auc_fu1_minus_burden_all",
    "response.full.auc_fu1_minus_recist",
    "response.full.calibration_slope_fu1",
    "response.full.ece_fu1",
    "ct_signature.balanced_accuracy_vs_teacher",
    "response.full.auc_fu1@variant:reader-noisier",
]
DECLARATION = """\
id = "tiny-v2"
date = 2026-12-01
story_version = "v2"
written_at_commit = "{commit}"
analysis = "irtmon evaluate docs/evaluation/declarations/tiny-v2.toml --cohort train=c/train \
--cohort tune=c/tune --cohort test=c/test"
interval_method = "DeLong for AUCs and paired AUC differences; patient bootstrap otherwise"
frozen_paths = ["models"]
metrics = {metrics}

[bootstrap]
resamples = 1000
seed = 5
method = "patient bootstrap, percentile"

[[cohorts]]
role = "training"
name = "train-x"
seed = {train[0]}
patients = {train[1]}
size = "test"
timepoints = {train[2]}

[[cohorts]]
role = "tuning"
name = "tune-x"
seed = {tune[0]}
patients = {tune[1]}
size = "test"
timepoints = 2

[[cohorts]]
role = "test"
name = "test-x"
seed = {test[0]}
patients = {test[1]}
size = "test"
timepoints = 2

[[cohorts]]
role = "test"
name = "test-y"
seed = {test[0]}
patients = {test[1]}
size = "test"
timepoints = 2
variant = "reader-noisier"

[[models]]
name = "response"
command = "irtmon evaluate (trained by the analysis)"
version = "tiny-r"

[[models]]
name = "ct-signature"
command = "irtmon evaluate (trained by the analysis)"
version = "tiny-s"

[[targets]]
metric = "response.full.auc_fu1"
direction = "at least"
value = 0.5

[[targets]]
metric = "ct_signature.balanced_accuracy_vs_teacher"
direction = "at least"
value = 0.99
"""


def _generate(folder: Path, seed_size: tuple[int, int], variant: str = "base") -> Path:
    seed, n = seed_size
    return generate_cohort(
        folder, n, seed, "test", n_timepoints=TIMEPOINTS, story="v2", variant=variant
    )


def _looks(repo: Path) -> list[dict]:
    log = repo / "docs" / "evaluation" / "looks.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def world(
    story_v2_training_cohort: TrainingCohort, tmp_path_factory: pytest.TempPathFactory
) -> dict:
    from models.response.nets import MlpConfig
    from models.response.response import ResponseConfig
    from models.response.signature import SignatureConfig

    root = tmp_path_factory.mktemp("evaluate")
    repo = root / "repo"
    code = protocol_repo(repo, datetime.now(UTC) - timedelta(hours=2))
    cohorts = root / "c"
    tune = _generate(cohorts / "tune", TUNE)
    fast = MlpConfig(hidden=8, dropout=0.0, max_epochs=40, patience=10)
    return {
        "root": root,
        "repo": repo,
        "code": code,
        "train": story_v2_training_cohort.cohort,  # read only
        "tune": tune,
        "test": cohorts / "test",
        "test-y": cohorts / "test-y",  # the test cohort's patients, read by a noisier reader
        "cache": story_v2_training_cohort.cache,  # the training cohort's features are there
        "teacher": story_v2_training_cohort.teacher,
        "configs": {
            "signature_config": SignatureConfig(members=2, mlp=fast),
            "response_config": ResponseConfig(members=2, calibration_folds=2, mlp=fast),
        },
    }


def _run(world: dict, declaration: Path, **changes: object):
    from irtmon.cli_evaluate import run_evaluation

    cohorts = {
        "train": world["train"],
        "tune": world["tune"],
        "test": world["test"],
        "test-y": world["test-y"],
    }
    cohorts.update(changes.pop("cohorts", {}))  # type: ignore[arg-type]
    options = {
        "out": world["root"] / "runs",
        "models_dir": world["root"] / "models",
        "cache_dir": world["cache"],
        "pathology": world["teacher"],
        "who": "test",
        "command": "irtmon evaluate tiny-v2",
        **world["configs"],
        **changes,
    }
    return run_evaluation(declaration, cohorts, **options)


def test_refusals_then_one_declared_analysis(world: dict) -> None:
    repo = world["repo"]
    declaration = repo / "docs" / "evaluation" / "declarations" / "tiny-v2.toml"
    declaration.write_text(
        DECLARATION.format(
            commit=world["code"],
            metrics=json.dumps(METRICS),
            train=TRAIN,
            tune=TUNE,
            test=TEST,
        )
    )
    # a test cohort generated before the declaration is committed
    _generate(world["test"], TEST)

    # 1. not committed
    with pytest.raises(ProtocolError, match="not committed"):
        _run(world, declaration)
    declared = _commit(repo, "declare tiny-v2")
    time.sleep(1.1)  # the stamps have whole seconds

    # 2. the test cohort predates the declaration's commit
    with pytest.raises(ProtocolError, match="not after the declaration was committed"):
        _run(world, declaration)

    # a test cohort generated after the declaration (same seed: same patients, new stamp),
    # and its story variant (the same patients again, a noisier reader)
    _generate(world["test"], TEST)
    _generate(world["test-y"], TEST, "reader-noisier")

    # 3. frozen code changed since written_at_commit
    science = repo / "models" / "science.py"
    science.write_text("X = 2\n")
    with pytest.raises(ProtocolError, match="frozen paths changed"):
        _run(world, declaration)
    science.write_text("X = 1\n")

    # 4. a training cohort that is not the declared one (the tuning cohort's seed and size)
    with pytest.raises(ProtocolError, match="training cohort train-x: generated with seed"):
        _run(world, declaration, cohorts={"train": world["tune"]})
    assert _looks(repo) == []  # nothing refused was logged

    # 5. the look is logged before the test data is read: a test cohort that cannot be read
    #    fails the analysis after the look; the next attempt needs a reason
    manifest = world["test"] / "manifest.csv"
    parquet = world["test"] / "manifest.parquet"
    shutil.move(manifest, manifest.with_suffix(".away"))
    shutil.move(parquet, parquet.with_suffix(".away2"))
    with pytest.raises((FileNotFoundError, ValueError)):
        _run(world, declaration)
    shutil.move(manifest.with_suffix(".away"), manifest)
    shutil.move(parquet.with_suffix(".away2"), parquet)
    looks = _looks(repo)
    assert len(looks) == 1 and looks[0]["declaration"] == "tiny-v2"
    assert looks[0]["test_cohorts"] == ["test-x", "test-y"] and looks[0]["reason"] == ""
    with pytest.raises(ProtocolError, match="look\\(s\\) logged already"):
        _run(world, declaration)

    # 6. the one analysis, with the reason logged
    done = _run(world, declaration, repeat_reason="first run failed: test manifest unreadable")
    looks = _looks(repo)
    assert len(looks) == 2 and looks[1]["reason"].startswith("first run failed")
    md, js = done.results
    payload = json.loads(js.read_text())
    assert payload["declaration"]["id"] == "tiny-v2"
    assert payload["declaration"]["path"] == "docs/evaluation/declarations/tiny-v2.toml"
    assert payload["declaration"]["commit"] == declared
    assert payload["declaration"]["written_at_commit"] == world["code"]
    assert payload["test_cohorts"] == [
        {"name": "test-x", "seed": TEST[0], "patients": TEST[1]},
        {"name": "test-y", "seed": TEST[0], "patients": TEST[1], "variant": "reader-noisier"},
    ]
    assert datetime.fromisoformat(looks[1]["at"]) <= datetime.fromisoformat(payload["evaluated_at"])
    est = payload["estimates"]
    assert set(METRICS) <= set(est)
    with_interval = [k for k in METRICS if est[k]["lower"] is not None]
    # AUCs by DeLong, the rest by the declared patient bootstrap, at the declared level
    for key in with_interval:
        e = est[key]
        assert e["lower"] <= e["value"] <= e["upper"] and e["level"] == 0.95, key
    assert est["response.full.auc_fu1"]["method"] == "DeLong"
    assert est["response.full.auc_fu1"]["n"] == TEST[1]
    assert est["ct_signature.balanced_accuracy_vs_teacher"]["method"] == (
        "patient bootstrap, percentile"
    )
    assert "response.full.auc_fu1" in with_interval
    assert "ct_signature.balanced_accuracy_vs_teacher" in with_interval
    assert {t["metric"] for t in payload["targets"]} == {
        "response.full.auc_fu1",
        "ct_signature.balanced_accuracy_vs_teacher",
    }
    extra = payload["extra"]
    assert extra["n_train_patients"] == TRAIN[1] and extra["n_tuning_patients"] == TUNE[1]
    assert extra["calibration"].startswith("tuning cohort")
    assert extra["story_versions"] == ["v2"]
    text = md.read_text()
    assert f"committed in `{declared}`" in text
    assert "`docs/evaluation/declarations/tiny-v2.toml`" in text
    assert "## Targets" in text and "[" in text  # intervals printed
    assert (done.run_folder / "response" / "report.md").is_file()
    # the same frozen models on the variant's cohort: its estimates, and the robustness table
    noisy = est["response.full.auc_fu1@variant:reader-noisier"]
    assert noisy["method"] == "DeLong" and noisy["n"] == TEST[1]
    assert "## Robustness across story variants" in text
    table = text.split("## Robustness across story variants")[1]
    assert "reader-noisier" in table and "response.full.auc_fu1" in table
    assert (world["root"] / "models" / "response" / "tiny-r").is_dir()
    # the models it trained carry the evaluation on their cards, read from the results
    from models.evaluation.evidence import evidence_note
    from models.registry import load_artifact

    for name, version in (("response", "tiny-r"), ("ct-signature", "tiny-s")):
        card = load_artifact(world["root"] / "models" / name / version).card
        assert card.endswith(evidence_note(name, payload, instance=True)), name
        assert "evaluated once under declaration tiny-v2" in card

    # 7. evaluated once: the CLI refuses a second evaluation, and logs nothing
    from irtmon.cli import app

    res = CliRunner().invoke(
        app,
        [
            "evaluate", str(declaration),
            "--cohort", f"train={world['train']}",
            "--cohort", f"tune={world['tune']}",
            "--cohort", f"test={world['test']}",
            "--cohort", f"test-y={world['test-y']}",
            "--pathology-model", str(world["teacher"]),
            "--repeat-reason", "again",
        ],
    )  # fmt: skip
    assert res.exit_code == 1
    assert "already" in res.output and "results" in res.output
    assert len(_looks(repo)) == 2


def test_the_recorded_command_names_every_option_given() -> None:
    from irtmon.cli_evaluate import recorded_command

    decl = Path("docs/evaluation/declarations/x.toml")
    cohorts = {"train": Path("c/train"), "test": Path("c/my test")}
    plain = recorded_command(decl, cohorts)
    assert plain == (
        "irtmon evaluate docs/evaluation/declarations/x.toml "
        "--cohort train=c/train --cohort 'test=c/my test'"
    )
    full = recorded_command(decl, cohorts, workers=2, pathology_model="v2-d", device="cpu")
    assert full == plain + " --workers 2 --pathology-model v2-d --device cpu"
