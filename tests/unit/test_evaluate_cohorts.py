"""``irtmon evaluate``'s pure parts: ``--cohort NAME=PATH`` parsing and matching the folders
given to the declared cohorts (the command end to end: test_evaluate_command.py)."""

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
