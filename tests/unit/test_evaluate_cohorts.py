"""``irtmon evaluate``'s pure parts: ``--cohort NAME=PATH`` parsing and matching the folders
given to the declared cohorts, and the wiring of story-variant test cohorts with the analysis
replaced by a stand-in (the command end to end: test_evaluate_command.py)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from irtmon.cli_evaluate import declared_version, match_cohorts, parse_cohort_options
from models.evaluation.declaration import CohortRole, parse_declaration

TEMPLATE = Path(__file__).parents[2] / "docs" / "evaluation" / "declaration-template.toml"


def _declaration(drop_tuning: bool = False):
    data = tomllib.loads(TEMPLATE.read_text())
    if drop_tuning:
        data["cohorts"] = [c for c in data["cohorts"] if c["role"] != "tuning"]
    return parse_declaration(data)


def test_cohort_options_are_name_equals_path() -> None:
    assert parse_cohort_options(["train=c/a", "test=/x/b"]) == {
        "train": Path("c/a"),
        "test": Path("/x/b"),
    }
    for bad in (["train"], ["=c/a"], ["train="]):
        with pytest.raises(ValueError, match="NAME=PATH"):
            parse_cohort_options(bad)
    with pytest.raises(ValueError, match="given twice"):
        parse_cohort_options(["test=a", "test=b"])


def test_cohorts_match_by_name_or_role() -> None:
    d = _declaration()
    by_role = match_cohorts(d, {"train": Path("a"), "tune": Path("b"), "test": Path("c")})
    assert {s.role: f for s, f in by_role.items()} == {
        CohortRole.TRAINING: Path("a"),
        CohortRole.TUNING: Path("b"),
        CohortRole.TEST: Path("c"),
    }
    by_name = match_cohorts(d, {"train-a": Path("a"), "tuning": Path("b"), "test-a": Path("c")})
    assert by_name == by_role
    with pytest.raises(ValueError, match="not a cohort of"):
        match_cohorts(d, {"holdout": Path("c"), "train": Path("a"), "tune": Path("b")})
    with pytest.raises(ValueError, match="no folder given for the declared cohort"):
        match_cohorts(d, {"train": Path("a"), "test": Path("c")})
    with pytest.raises(ValueError, match="given twice"):
        match_cohorts(d, {"train": Path("a"), "train-a": Path("a2"), "test": Path("c")})
    with pytest.raises(ValueError, match="exactly one training, one tuning and one test"):
        match_cohorts(_declaration(drop_tuning=True), {"train": Path("a"), "test": Path("c")})


def test_declared_versions() -> None:
    d = _declaration()
    assert declared_version(d, "response") == "v2-a"
    assert declared_version(d, "pathology-mil") is None


def _with_variant():
    data = tomllib.loads(TEMPLATE.read_text())
    test = next(c for c in data["cohorts"] if c["role"] == "test")
    data["cohorts"].append(
        dict(test, name="test-no-pcct", seed=test["seed"] + 1, variant="no-pcct")
    )
    data["metrics"].append("response.full.auc_fu1@variant:no-pcct")
    return parse_declaration(data)


def test_a_variant_test_cohort_is_given_by_name() -> None:
    from irtmon.cli_evaluate import COMPUTED, computed

    d = _with_variant()
    given = {"train": Path("a"), "tune": Path("b"), "test": Path("c"), "test-no-pcct": Path("v")}
    matched = match_cohorts(d, given)
    assert {(s.name, s.variant): f for s, f in matched.items() if s.role is CohortRole.TEST} == {
        ("test-a", "base"): Path("c"),  # the role names the base story's test cohort
        ("test-no-pcct", "no-pcct"): Path("v"),
    }
    with pytest.raises(ValueError, match=r"no folder given for the declared cohort.*test-no-pcct"):
        match_cohorts(d, {"train": Path("a"), "tune": Path("b"), "test": Path("c")})
    assert computed(_declaration()) == COMPUTED
    assert computed(d).startswith(COMPUTED) and "story variant (no-pcct)" in computed(d)


def test_declared_variant_metrics_are_completed() -> None:
    import math

    from irtmon.cli_evaluate import _complete
    from models.evaluation.estimate import Estimate, IntervalMethod

    d = _with_variant()
    key = "response.full.auc_fu1@variant:no-pcct"
    done = _complete(d, {})
    assert set(d.metrics) <= set(done) and math.isnan(done[key].value)
    assert done[key].method is IntervalMethod.DELONG
    assert "not computed" in done[key].details["reason"]
    there = Estimate(0.7, 0.6, 0.8, 0.95, IntervalMethod.DELONG, 40)
    assert _complete(d, {key: there})[key] is there


def test_variant_test_cohorts_reach_the_analysis_and_the_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """run_evaluation clears every test cohort, logs one look naming them all, hands the
    variants' folders to the analysis and writes the robustness table (the analysis itself is
    a stand-in here; it is tested on fake cohorts in test_response_training.py)."""
    import json
    from datetime import UTC, datetime, timedelta

    from irtmon.cli_evaluate import run_evaluation
    from models.evaluation.estimate import Estimate, IntervalMethod
    from models.response import analysis as analysis_mod
    from tests.unit.test_protocol import DECLARATION, _commit, protocol_repo

    repo = tmp_path / "repo"
    now = datetime.now(UTC).replace(microsecond=0)
    code = protocol_repo(repo, now - timedelta(hours=2))
    metrics = '"response.full.auc_fu1@variant:no-pcct"'
    text = (
        DECLARATION.format(id="robust-c", commit=code, test_seed=9001)
        .replace(
            'metrics = ["response.full.auc_fu1", "response.full.ece_fu1"]',
            f'metrics = ["response.full.auc_fu1", "response.full.ece_fu1", {metrics}]',
        )
        .replace(
            "\n[[models]]",
            '\n[[cohorts]]\nrole = "tuning"\nname = "tune"\nseed = 102\npatients = 50\n'
            '\n[[cohorts]]\nrole = "test"\nname = "test-no-pcct"\nseed = 9002\n'
            'patients = 400\nvariant = "no-pcct"\n\n[[models]]',
            1,
        )
    )
    declaration = repo / "docs" / "evaluation" / "declarations" / "robust-c.toml"
    declaration.write_text(text)
    _commit(repo, "declare robust-c", now - timedelta(hours=1))

    def cohort(name: str, seed: int, patients: int, **extra: str) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        meta = {"seed": seed, "n_patients": patients, "story_version": "2", **extra}
        meta["generated_at"] = now.isoformat()
        (folder / "cohort.json").write_text(json.dumps(meta))
        return folder

    folders = {
        "train": cohort("train", 101, 450),
        "tune": cohort("tune", 102, 50),
        "test": cohort("test", 9001, 400),
        "test-no-pcct": cohort("variant", 9002, 400, story_variant="no-pcct"),
    }
    seen = {}

    def stand_in(cohorts, out, **kw):
        seen["cohorts"] = cohorts
        e = Estimate(0.8, 0.7, 0.9, 0.95, IntervalMethod.DELONG, 400)
        v = Estimate(0.6, 0.5, 0.7, 0.95, IntervalMethod.DELONG, 400)
        return analysis_mod.Analysis(
            estimates={
                "response.full.auc_fu1": e,
                "response.full.auc_fu1@variant:no-pcct": v,
            },
            signature=None,  # type: ignore[arg-type]
            response=None,  # type: ignore[arg-type]
        )

    monkeypatch.setattr(analysis_mod, "declared_analysis", stand_in)
    done = run_evaluation(
        declaration,
        folders,
        out=tmp_path / "runs",
        models_dir=tmp_path / "models",
        pathology=tmp_path / "teacher",
        who="test",
        command="irtmon evaluate robust-c",
    )
    assert seen["cohorts"].test == folders["test"]
    assert dict(seen["cohorts"].variants) == {"no-pcct": folders["test-no-pcct"]}
    assert done.look.test_cohorts == ["test", "test-no-pcct"]
    assert "each story variant (no-pcct)" in done.look.computed
    assert done.estimates["response.full.auc_fu1@variant:no-pcct"].value == 0.6
    assert "not computed" in done.estimates["response.full.ece_fu1"].details["reason"]
    md, js = done.results
    assert "| response.full.auc_fu1 | 0.800 [0.700, 0.900] | 0.600 [0.500, 0.700] |" in (
        md.read_text()
    )
    payload = json.loads(js.read_text())
    assert payload["extra"]["cohorts"]["test-no-pcct"]["variant"] == "no-pcct"
