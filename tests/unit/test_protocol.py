"""The evaluation protocol on a temporary git repository: a declaration committed before its
test cohort is evaluated once, every look is logged, and each broken rule is refused."""

from __future__ import annotations

import json
import math
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from irtmon import protocol
from models.evaluation.declaration import CohortRole, load_declaration, parse_declaration
from models.evaluation.estimate import Estimate, IntervalMethod
from models.exceptions import DeclarationError, ProtocolError

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)

DECLARATION = """\
id = "{id}"
date = 2026-12-01
story_version = "2"
written_at_commit = "{commit}"
analysis = "irtmon evaluate --declaration docs/evaluation/declarations/{id}.toml"
interval_method = "DeLong for AUCs; patient bootstrap (BCa) otherwise"
frozen_paths = ["models"]
metrics = ["response.full.auc_fu1", "response.full.ece_fu1"]

[bootstrap]
resamples = 2000
seed = 7
method = "patient bootstrap, BCa"

[[cohorts]]
role = "training"
name = "train"
seed = 101
patients = 450

[[cohorts]]
role = "test"
name = "test"
seed = {test_seed}
patients = 400

[[models]]
name = "response"
command = "irtmon train response --cohort c/train"

[[targets]]
metric = "response.full.auc_fu1"
direction = "at least"
value = 0.85

[[targets]]
metric = "response.full.ece_fu1"
direction = "at most"
value = 0.05
"""


def _git(repo: Path, *args: str, when: datetime | None = None) -> str:
    env = dict(os.environ)
    if when is not None:
        env["GIT_COMMITTER_DATE"] = env["GIT_AUTHOR_DATE"] = when.isoformat()
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout


def _commit(repo: Path, message: str, when: datetime | None = None) -> str:
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", message, when=when)
    return _git(repo, "rev-parse", "HEAD").strip()


def protocol_repo(repo: Path, when: datetime) -> str:
    """A throwaway repository at ``repo`` with frozen code (``models/``) and the evaluation
    folders, its code committed at ``when``; returns that commit."""
    (repo / "models").mkdir(parents=True)
    (repo / "models" / "science.py").write_text("X = 1\n")
    (repo / "docs" / "evaluation" / "declarations").mkdir(parents=True)
    (repo / "docs" / "evaluation" / "looks.jsonl").write_text("")
    _git(repo, "init", "-q")
    return _commit(repo, "code", when)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    protocol_repo(repo, T0 - timedelta(days=1))
    return repo


def _declare(repo: Path, ident: str = "resp-a", test_seed: int = 9001, when: datetime = T0) -> Path:
    code = _git(repo, "rev-parse", "HEAD").strip()
    path = repo / "docs" / "evaluation" / "declarations" / f"{ident}.toml"
    path.write_text(DECLARATION.format(id=ident, commit=code, test_seed=test_seed))
    _commit(repo, f"declare {ident}", when)
    return path


def _cohort(tmp: Path, seed: int = 9001, patients: int = 400, at: datetime | None = None) -> Path:
    folder = tmp / f"cohort-{seed}-{patients}"
    folder.mkdir(exist_ok=True)
    meta = {"seed": seed, "n_patients": patients, "story_version": "2"}
    if at is not None:
        meta["generated_at"] = at.isoformat()
    (folder / "cohort.json").write_text(json.dumps(meta))
    return folder


def _estimates() -> dict[str, Estimate]:
    return {
        "response.full.auc_fu1": Estimate(0.88, 0.86, 0.90, 0.95, IntervalMethod.DELONG, 400),
        "response.full.ece_fu1": Estimate(
            0.03, 0.02, 0.06, 0.95, IntervalMethod.BOOTSTRAP_BCA, 400
        ),
    }


def test_a_declared_evaluation_runs_once_and_is_logged(repo: Path, tmp_path: Path) -> None:
    path = _declare(repo)
    cohort = _cohort(tmp_path, at=T0 + timedelta(hours=1))
    clearance = protocol.open_evaluation(repo, path, {"test": cohort})
    assert clearance.declaration.id == "resp-a"
    assert clearance.declaration_commit.committed_at == T0
    look = protocol.record_look(
        clearance, who="lead", command="irtmon evaluate ...", computed="declared metrics"
    )
    logged = protocol.read_looks(repo / protocol.LOOKS_LOG)
    assert logged == [look] and look.commit == clearance.head.sha
    md, js = protocol.write_results(clearance, _estimates(), command="irtmon evaluate ...")
    payload = json.loads(js.read_text())
    assert payload["declaration"]["commit"] == clearance.declaration_commit.sha
    assert payload["declaration"]["path"] == "docs/evaluation/declarations/resp-a.toml"
    assert [t["verdict"] for t in payload["targets"]] == [
        "met",
        "not shown: interval includes the target",
    ]
    text = md.read_text()
    assert clearance.declaration_commit.sha in text and "0.880 [0.860, 0.900]" in text
    # evaluated once: a second try is refused, for the results and for the earlier look
    with pytest.raises(ProtocolError) as err:
        protocol.open_evaluation(repo, path, {"test": cohort}, repeat_reason="again")
    assert "already has results" in str(err.value)
    with pytest.raises(ProtocolError, match="already exist"):
        protocol.write_results(clearance, _estimates(), command="again")


def test_a_repeated_look_needs_a_reason_that_is_logged(repo: Path, tmp_path: Path) -> None:
    path = _declare(repo)
    cohort = _cohort(tmp_path, at=T0 + timedelta(hours=1))
    first = protocol.open_evaluation(repo, path, {"test": cohort})
    protocol.record_look(first, who="lead", command="c", computed="crashed half-way")
    with pytest.raises(ProtocolError, match="1 look"):
        protocol.open_evaluation(repo, path, {"test": cohort})
    again = protocol.open_evaluation(repo, path, {"test": cohort}, repeat_reason="out of memory")
    protocol.record_look(again, who="lead", command="c", computed="declared metrics")
    assert [lk.reason for lk in protocol.read_looks(repo / protocol.LOOKS_LOG)] == [
        "",
        "out of memory",
    ]


def test_uncommitted_declarations_are_refused(repo: Path, tmp_path: Path) -> None:
    path = repo / "docs" / "evaluation" / "declarations" / "resp-b.toml"
    path.write_text(DECLARATION.format(id="resp-b", commit="abcdef1", test_seed=9001))
    cohort = _cohort(tmp_path, at=T0 + timedelta(hours=1))
    with pytest.raises(ProtocolError) as err:
        protocol.open_evaluation(repo, path, {"test": cohort})
    assert "not committed" in str(err.value) and "uncommitted changes" in str(err.value)
    assert "abcdef1 is not a commit in the history of HEAD" in str(err.value)


def test_a_cohort_generated_before_the_declaration_is_refused(repo: Path, tmp_path: Path) -> None:
    path = _declare(repo)
    early = _cohort(tmp_path, at=T0 - timedelta(minutes=5))
    with pytest.raises(ProtocolError, match="not after the declaration was committed"):
        protocol.open_evaluation(repo, path, {"test": early})
    unstamped = _cohort(tmp_path, seed=9001, patients=400, at=None)
    with pytest.raises(ProtocolError, match="no generated_at stamp"):
        protocol.open_evaluation(repo, path, {"test": unstamped})
    other = _cohort(tmp_path, seed=9002, patients=300, at=T0 + timedelta(hours=1))
    with pytest.raises(ProtocolError, match="declared seed 9001 and 400 patients"):
        protocol.open_evaluation(repo, path, {"test": other})
    with pytest.raises(ProtocolError, match="not the declared"):
        protocol.open_evaluation(repo, path, {"holdout": other})


def test_an_edited_declaration_or_changed_code_is_refused(repo: Path, tmp_path: Path) -> None:
    path = _declare(repo)
    cohort = _cohort(tmp_path, at=T0 + timedelta(hours=2))
    (repo / "models" / "science.py").write_text("X = 2  # tuned after a look\n")
    with pytest.raises(ProtocolError, match="frozen paths changed"):
        protocol.open_evaluation(repo, path, {"test": cohort})
    _commit(repo, "tune", T0 + timedelta(minutes=30))
    with pytest.raises(ProtocolError, match=r"models/science\.py"):
        protocol.open_evaluation(repo, path, {"test": cohort})
    path.write_text(path.read_text().replace("value = 0.85", "value = 0.80"))
    _commit(repo, "lower the target", T0 + timedelta(minutes=40))
    with pytest.raises(ProtocolError, match="changed in 1 commit"):
        protocol.open_evaluation(repo, path, {"test": cohort})


def test_a_test_seed_is_declared_once(repo: Path, tmp_path: Path) -> None:
    _declare(repo, "resp-a", test_seed=9001, when=T0)
    second = _declare(repo, "resp-b", test_seed=9001, when=T0 + timedelta(hours=1))
    cohort = _cohort(tmp_path, at=T0 + timedelta(hours=2))
    with pytest.raises(ProtocolError, match="already declared by resp-a"):
        protocol.open_evaluation(repo, second, {"test": cohort})


def test_a_rewritten_looks_log_is_refused(repo: Path, tmp_path: Path) -> None:
    path = _declare(repo)
    log = repo / protocol.LOOKS_LOG
    log.write_text('{"note": "an old look"}\n')
    _commit(repo, "log", T0 + timedelta(minutes=1))
    log.write_text("")  # someone erased it
    cohort = _cohort(tmp_path, at=T0 + timedelta(hours=1))
    with pytest.raises(ProtocolError, match="does not begin with"):
        protocol.open_evaluation(repo, path, {"test": cohort})


def test_declarations_are_validated(tmp_path: Path) -> None:
    good = DECLARATION.format(id="resp-a", commit="abcdef1", test_seed=9001)
    import tomllib

    decl = parse_declaration(tomllib.loads(good))
    assert decl.test_cohorts[0].seed == 9001 and decl.bootstrap.resamples == 2000
    from models.evaluation import plan_from_declaration

    plan = plan_from_declaration(decl)
    assert (plan.seed, plan.resamples, plan.level) == (7, 2000, 0.95)
    bad = good.replace("seed = 9001", "seed = 101").replace('"at most"', '"below"')
    with pytest.raises(DeclarationError) as err:
        parse_declaration(tomllib.loads(bad))
    assert "reuses seed 101" in str(err.value) and "'at least' or 'at most'" in str(err.value)
    trapped = good + '\nnotes_typo = "a top-level key after a table"\n'
    with pytest.raises(DeclarationError, match="top-level keys go before the first table"):
        parse_declaration(tomllib.loads(trapped))
    wrong_name = tmp_path / "other.toml"
    wrong_name.write_text(good)
    with pytest.raises(DeclarationError, match=r"must be named resp-a\.toml"):
        load_declaration(wrong_name)
    with pytest.raises(DeclarationError, match="no declaration"):
        load_declaration(tmp_path / "absent.toml")


def test_the_template_is_a_valid_declaration() -> None:
    import tomllib

    template = Path(__file__).parents[2] / "docs" / "evaluation" / "declaration-template.toml"
    decl = parse_declaration(tomllib.loads(template.read_text()))
    assert decl.test_cohorts and decl.targets


def test_declared_size_and_timepoints_are_checked() -> None:
    from models.evaluation.declaration import (
        CohortRole,
        CohortSpec,
        CohortStamp,
        cohort_stamp_problems,
    )

    spec = CohortSpec(CohortRole.TRAINING, "train", 5, 30, size="test", timepoints=6)
    stamp = CohortStamp(5, 30, T0, "v2", size="test", timepoints=6)
    assert cohort_stamp_problems(spec, stamp, "v2") == []
    missing = cohort_stamp_problems(spec, None, "v2")
    assert missing == ["training cohort train: no cohort.json found"]
    wrong = CohortStamp(6, 30, T0, "v1", size="small", timepoints=5)
    problems = "\n".join(cohort_stamp_problems(spec, wrong, "v2"))
    for words in ("seed 6", "story version v1", "size small", "5 timepoints, declared 6"):
        assert words in problems
    # a declaration names them in its [[cohorts]] tables
    text = DECLARATION.format(id="shape-a", commit="abc1234", test_seed=9001).replace(
        "seed = 101\npatients = 450", 'seed = 101\npatients = 450\nsize = "test"\ntimepoints = 6'
    )
    import tomllib

    d = parse_declaration(tomllib.loads(text))
    assert (d.cohorts[0].size, d.cohorts[0].timepoints) == ("test", 6)


# ------------------------------------------------------------------------- story variants

VARIANT_COHORT = """
[[cohorts]]
role = "test"
name = "test-immune-none"
seed = 9002
patients = 400
variant = "immune-none"
"""


def _variant_declaration(extra_cohorts: str = VARIANT_COHORT, metrics: str = "") -> str:
    text = DECLARATION.format(id="robust-a", commit="abcdef1", test_seed=9001)
    if metrics:
        text = text.replace(
            'metrics = ["response.full.auc_fu1", "response.full.ece_fu1"]',
            f'metrics = ["response.full.auc_fu1", "response.full.ece_fu1", {metrics}]',
        )
    return text.replace("\n[[models]]", extra_cohorts + "\n[[models]]", 1)


def test_every_declaration_in_the_repository_still_parses() -> None:
    folder = Path(__file__).parents[2] / "docs" / "evaluation" / "declarations"
    paths = sorted(folder.glob("*.toml"))
    assert {p.stem for p in paths} >= {"response-v2-d", "lesions-v2-e", "changepoint-v2-f"}
    variants = {}
    for path in paths:
        d = load_declaration(path)
        assert {c.variant for c in d.cohorts if c.role is CohortRole.TRAINING} <= {"base"}, path
        assert d.primary_test_cohort.variant == "base", path
        variants[d.id] = [c.variant for c in d.variant_test_cohorts]
    assert variants["response-v2-d"] == variants["changepoint-v2-f"] == []
    assert variants["robustness-v2-g"] == [
        "immune-none", "immune-weaker", "immune-stronger", "reader-noisier", "no-pcct"
    ]  # fmt: skip


def test_test_cohorts_of_story_variants_are_declared() -> None:
    import tomllib

    from models.evaluation.declaration import split_variant_key, variant_key

    key = '"response.full.auc_fu1@variant:immune-none"'
    d = parse_declaration(tomllib.loads(_variant_declaration(metrics=key)))
    assert [c.variant for c in d.cohorts] == ["base", "base", "immune-none"]
    assert d.primary_test_cohort.name == "test"
    assert [c.name for c in d.variant_test_cohorts] == ["test-immune-none"]
    assert "response.full.auc_fu1@variant:immune-none" in d.metrics
    # a paired design: the variant drawn from the base test cohort's own seed
    paired = parse_declaration(
        tomllib.loads(_variant_declaration(VARIANT_COHORT.replace("9002", "9001"), key))
    )
    assert {c.seed for c in paired.test_cohorts} == {9001}
    assert variant_key("a.b", "immune-none") == "a.b@variant:immune-none"
    assert variant_key("a.b", "base") == "a.b"
    assert split_variant_key("a.b@pcct@variant:no-pcct") == ("a.b@pcct", "no-pcct")
    assert split_variant_key("a.b@pcct") == ("a.b@pcct", "base")


@pytest.mark.parametrize(
    ("extra", "metrics", "words"),
    [
        # a second base test cohort
        (VARIANT_COHORT.replace('variant = "immune-none"', ""), "", "distinct story variants"),
        # ... with the seed of the first: one seed, one cohort per variant
        (
            VARIANT_COHORT.replace('variant = "immune-none"', "").replace("9002", "9001"),
            "",
            "different story variants of one seed",
        ),
        # two test cohorts of one variant
        (
            VARIANT_COHORT + VARIANT_COHORT.replace("9002", "9003").replace('-none"', '-x"', 1),
            "",
            "distinct story variants",
        ),
        # a variant on the training cohort
        (
            VARIANT_COHORT.replace('role = "test"', 'role = "training"').replace("9002", "102"),
            "",
            "training cohorts must be of the base story",
        ),
        # not a variant name
        (VARIANT_COHORT.replace('"immune-none"', '"Immune None"'), "", "lower-case letters"),
        # a metric of a variant no test cohort has
        ("", '"response.full.auc_fu1@variant:no-pcct"', "no test cohort of that variant"),
        (VARIANT_COHORT, '"response.full.auc_fu1@variant:no-pcct"', "variant 'no-pcct'"),
        # the base story's keys carry no suffix
        (VARIANT_COHORT, '"response.full.auc_fu1@variant:base"', "carry no @variant: suffix"),
    ],
)
def test_bad_variant_declarations_are_refused(extra: str, metrics: str, words: str) -> None:
    import tomllib

    with pytest.raises(DeclarationError, match=words):
        parse_declaration(tomllib.loads(_variant_declaration(extra, metrics)))


def test_a_tuning_cohort_may_be_a_story_variant() -> None:
    import tomllib

    tuning = VARIANT_COHORT.replace('role = "test"', 'role = "tuning"').replace("9002", "103")
    d = parse_declaration(tomllib.loads(_variant_declaration(tuning, "")))
    (tune,) = [c for c in d.cohorts if c.seed == 103]
    assert tune.variant == "immune-none" and str(tune.role) == "tuning"


def test_the_only_test_cohort_is_the_base_story() -> None:
    import tomllib

    text = DECLARATION.format(id="robust-b", commit="abcdef1", test_seed=9001).replace(
        "seed = 9001\npatients = 400", 'seed = 9001\npatients = 400\nvariant = "no-pcct"'
    )
    with pytest.raises(DeclarationError, match="one test cohort must be of the base story"):
        parse_declaration(tomllib.loads(text))


def test_the_stamp_names_the_story_variant(tmp_path: Path) -> None:
    from models.evaluation.declaration import (
        CohortRole,
        CohortSpec,
        CohortStamp,
        cohort_stamp_problems,
    )

    base = _cohort(tmp_path, at=T0)
    assert protocol.read_cohort_stamp(base).story_variant == "base"  # no key: the base story
    variant = _cohort(tmp_path, seed=9002, at=T0)
    meta = json.loads((variant / "cohort.json").read_text())
    (variant / "cohort.json").write_text(json.dumps(meta | {"story_variant": "immune-none"}))
    assert protocol.read_cohort_stamp(variant).story_variant == "immune-none"

    spec = CohortSpec(CohortRole.TEST, "t", 9002, 400, variant="immune-none")
    stamp = CohortStamp(9002, 400, T0, "2", story_variant="immune-none")
    assert cohort_stamp_problems(spec, stamp, "2") == []
    wrong = CohortStamp(9002, 400, T0, "2")
    assert cohort_stamp_problems(spec, wrong, "2") == [
        "test cohort t: story variant base, declared immune-none"
    ]
    train = CohortSpec(CohortRole.TRAINING, "train", 5, 30)
    assert "story variant no-pcct, declared base" in "".join(
        cohort_stamp_problems(train, CohortStamp(5, 30, T0, "2", story_variant="no-pcct"), "2")
    )


def test_variant_test_cohorts_are_cleared_together(repo: Path, tmp_path: Path) -> None:
    code = _git(repo, "rev-parse", "HEAD").strip()
    path = repo / "docs" / "evaluation" / "declarations" / "robust-a.toml"
    text = _variant_declaration().replace("abcdef1", code)
    path.write_text(text)
    _commit(repo, "declare robust-a", T0)
    base = _cohort(tmp_path, at=T0 + timedelta(hours=1))
    variant = _cohort(tmp_path, seed=9002, at=T0 + timedelta(hours=1))
    folders = {"test": base, "test-immune-none": variant}
    # generated without the variant: refused before anything is logged
    with pytest.raises(ProtocolError, match="story variant base, declared immune-none"):
        protocol.open_evaluation(repo, path, folders)
    with pytest.raises(ProtocolError, match="not the declared"):
        protocol.open_evaluation(repo, path, {"test": base})
    meta = json.loads((variant / "cohort.json").read_text())
    (variant / "cohort.json").write_text(json.dumps(meta | {"story_variant": "immune-none"}))
    clearance = protocol.open_evaluation(repo, path, folders)
    look = protocol.record_look(clearance, who="lead", command="c", computed="declared")
    assert look.test_cohorts == ["test", "test-immune-none"]
    estimates = _estimates() | {
        f"{k}@variant:immune-none": Estimate(0.61, 0.55, 0.67, 0.95, IntervalMethod.DELONG, 400)
        for k in _estimates()
    }
    md, js = protocol.write_results(clearance, estimates, command="c")
    payload = json.loads(js.read_text())
    assert payload["test_cohorts"] == [
        {"name": "test", "seed": 9001, "patients": 400},
        {"name": "test-immune-none", "seed": 9002, "patients": 400, "variant": "immune-none"},
    ]
    text = md.read_text()
    assert "## Robustness across story variants" in text
    assert "| metric | base | immune-none |" in text
    assert "| response.full.auc_fu1 | 0.880 [0.860, 0.900] | 0.610 [0.550, 0.670] |" in text
    assert "story variant immune-none" in text
    assert "on the story variants' test cohorts (not declared, not judged): 2 estimates" in text


def test_the_robustness_table() -> None:
    from models.evaluation.results import ROBUSTNESS_METRICS, robustness_table

    def est(v: float) -> Estimate:
        return Estimate(v, v - 0.1, v + 0.1, 0.95, IntervalMethod.DELONG, 50)

    estimates = {
        "response.full.auc_fu1": est(0.8),
        "response.full.auc_fu1@pcct": est(0.9),  # a subgroup: not a headline row
        "response.full.auc_fu1@variant:no-pcct": est(0.7),
        "response.full.auc_fu1@variant:immune-none": est(0.6),
        "ct_signature.balanced_accuracy_vs_teacher@variant:immune-none": est(0.5),
        "response.full.ece_fu1": Estimate(
            0.04, math.nan, math.nan, 0.95, IntervalMethod.BOOTSTRAP_BCA, 50
        ),
        "response.recist.auc_fu1@variant:no-pcct": est(0.65),  # not a headline metric
    }
    header, rows = robustness_table(estimates)
    assert header == ["metric", "base", "no-pcct", "immune-none"]  # base first, then as found
    assert rows == [
        ["response.full.auc_fu1", "0.800 [0.700, 0.900]", "0.700 [0.600, 0.800]",
         "0.600 [0.500, 0.700]"],
        ["response.full.ece_fu1", "0.040 [n/a, n/a]", "n/a", "n/a"],
        ["ct_signature.balanced_accuracy_vs_teacher", "n/a", "n/a", "0.500 [0.400, 0.600]"],
    ]  # fmt: skip
    # the declared order of the variants, a declared variant without estimates too
    header, rows = robustness_table(estimates, ["immune-none", "no-biopsies", "no-pcct"])
    assert header == ["metric", "base", "immune-none", "no-biopsies", "no-pcct"]
    assert rows[0][1:] == ["0.800 [0.700, 0.900]", "0.600 [0.500, 0.700]", "n/a",
                           "0.700 [0.600, 0.800]"]  # fmt: skip
    assert robustness_table({}) == (["metric", "base"], [])
    assert ROBUSTNESS_METRICS[0] == "response.full.auc_planning" and len(ROBUSTNESS_METRICS) == 9


def _parts_declaration(repo: Path, ident: str = "lesions-p", parts: str = "true") -> Path:
    code = _git(repo, "rev-parse", "HEAD").strip()
    text = DECLARATION.format(id=ident, commit=code, test_seed=9001).replace(
        'frozen_paths = ["models"]', f'frozen_paths = ["models"]\nparts = {parts}'
    )
    text += '\n[[cohorts]]\nrole = "test"\nname = "test-b"\nseed = 9002\npatients = 400\n'
    path = repo / "docs" / "evaluation" / "declarations" / f"{ident}.toml"
    path.write_text(text)
    _commit(repo, f"declare {ident}", T0)
    return path


def test_a_declaration_in_parts_reads_each_part_once_and_pools_them(
    repo: Path, tmp_path: Path
) -> None:
    path = _parts_declaration(repo)
    a = _cohort(tmp_path, at=T0 + timedelta(hours=1))
    b = _cohort(tmp_path, seed=9002, at=T0 + timedelta(days=1))
    # read one part at a time, never together, and only as declared
    with pytest.raises(ProtocolError, match="declared in parts"):
        protocol.open_evaluation(repo, path, {"test": a, "test-b": b})
    with pytest.raises(ProtocolError, match="not a test cohort"):
        protocol.open_evaluation(repo, path, {"test-c": a}, part="test-c")
    first = protocol.open_evaluation(repo, path, {"test": a}, part="test")
    look = protocol.record_look(first, who="lead", command="c", computed="part test")
    assert look.test_cohorts == ["test"]
    protocol.write_part(first, "test", [{"patient": "p1"}])
    assert protocol.read_parts(repo, first.declaration) is None  # nothing pooled yet
    with pytest.raises(ProtocolError, match=r"already has results|look"):
        protocol.open_evaluation(repo, path, {"test": a}, part="test")
    with pytest.raises(ProtocolError, match="read already"):
        protocol.write_part(first, "test", [])
    # the other part was not looked at: it may be read, once
    second = protocol.open_evaluation(repo, path, {"test-b": b}, part="test-b")
    protocol.record_look(second, who="lead", command="c", computed="part test-b")
    protocol.write_part(second, "test-b", [{"patient": "p2"}])
    assert protocol.read_parts(repo, second.declaration) == {
        "test": [{"patient": "p1"}],
        "test-b": [{"patient": "p2"}],
    }
    protocol.write_results(second, _estimates(), command="c")
    with pytest.raises(ProtocolError, match="already has results"):
        protocol.open_evaluation(repo, path, {"test-b": b}, part="test-b", repeat_reason="x")


def test_only_a_declaration_in_parts_is_read_in_parts(repo: Path, tmp_path: Path) -> None:
    path = _declare(repo)
    cohort = _cohort(tmp_path, at=T0 + timedelta(hours=1))
    with pytest.raises(ProtocolError, match="not declared in parts"):
        protocol.open_evaluation(repo, path, {"test": cohort}, part="test")
    with pytest.raises(DeclarationError, match="parts must be true or false"):
        load_declaration(_parts_declaration(repo, "lesions-q", parts='"yes"'))
