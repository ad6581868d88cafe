"""``irtmon evaluate DECLARATION --cohort train=PATH --cohort tune=PATH --cohort test=PATH``:
the one declared analysis, run once under the evaluation protocol (``docs/evaluation/``).

The sequence (:func:`run_evaluation`):

1. read the declaration and match the cohorts given to the declared ones (by name, or by
   role: ``train``/``training``, ``tune``/``tuning``, ``test`` for the base story's test
   cohort); the training and tuning cohorts must carry the declared seed, size, story version
   and (base) story variant;
2. :func:`irtmon.protocol.open_evaluation`: refuses an uncommitted or edited declaration, a
   test cohort generated before the declaration's commit (or with another seed or size),
   changed frozen code, a test seed declared before, results already written, a look already
   logged (unless ``--repeat-reason`` says why);
3. :func:`irtmon.protocol.record_look`, before any test data is read;
4. :func:`models.response.analysis.declared_analysis`: train on the training cohort,
   calibrate on the tuning cohort, evaluate on the test cohort, every metric with its
   interval (the declaration's level and bootstrap); with test cohorts of other story
   variants, the same frozen models on each of them too (keys ``...@variant:<name>``);
5. :func:`irtmon.protocol.write_results`: ``docs/evaluation/results/<id>.md`` and ``.json``,
   citing the declaration and its commit.
"""

from __future__ import annotations

import getpass
import json
import math
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from irtmon.common import TorchDevice, console, fail, get_settings, torch_device
from irtmon.protocol import Clearance, Look, git, open_evaluation, read_cohort_stamp, record_look
from irtmon.protocol import write_results as write_results_files
from models.evaluation.declaration import (
    BASE_VARIANT,
    CohortRole,
    CohortSpec,
    Declaration,
    cohort_stamp_problems,
    load_declaration,
)
from models.evaluation.estimate import Estimate, IntervalMethod
from models.evaluation.plan import plan_from_declaration
from models.exceptions import ProtocolError

ROLE_ALIASES = {
    "train": CohortRole.TRAINING,
    "training": CohortRole.TRAINING,
    "tune": CohortRole.TUNING,
    "tuning": CohortRole.TUNING,
    "test": CohortRole.TEST,
}
"""Names a ``--cohort NAME=PATH`` may use instead of the declared cohort name."""

MODEL_NAMES = ("pathology-mil", "ct-signature", "response")
"""Declared ``[[models]]`` names the analysis reads a version from."""

COMPUTED = (
    "the declared analysis: ct-signature and response trained on the training cohort, "
    "the response models calibrated on the tuning cohort, every declared metric on the test "
    "cohort with its interval"
)
COMPUTED_VARIANTS = (
    "; the same frozen models on the test cohort of each story variant ({variants}), every "
    "estimate again with its interval"
)


def computed(declaration: Declaration) -> str:
    """What the analysis computes, for the looks log."""
    variants = [c.variant for c in declaration.variant_test_cohorts]
    if not variants:
        return COMPUTED
    return COMPUTED + COMPUTED_VARIANTS.format(variants=", ".join(variants))


@dataclass(frozen=True)
class Evaluated:
    """What one declared evaluation wrote."""

    clearance: Clearance
    look: Look
    results: tuple[Path, Path]
    run_folder: Path
    estimates: dict[str, Estimate]


def repository_of(path: Path) -> Path:
    """The git work tree holding ``path`` (a declaration lives in its repository).

    Raises
    ------
    ProtocolError
        ``path`` is not inside a git repository.
    """
    return Path(git(Path(path).resolve().parent, "rev-parse", "--show-toplevel").strip())


def parse_cohort_options(values: list[str]) -> dict[str, Path]:
    """``["train=c/train", ...]`` -> ``{"train": Path("c/train"), ...}``.

    Raises
    ------
    ValueError
        A value without ``=``, or a name given twice.
    """
    out: dict[str, Path] = {}
    for value in values:
        name, sep, folder = value.partition("=")
        if not sep or not name or not folder:
            raise ValueError(f"--cohort {value!r}: write NAME=PATH (for example test=c/test)")
        if name in out:
            raise ValueError(f"--cohort {name} given twice")
        out[name] = Path(folder)
    return out


def match_cohorts(declaration: Declaration, given: Mapping[str, Path]) -> dict[CohortSpec, Path]:
    """Each declared cohort with the folder given for it (by its name, or by its role when
    the declaration has one cohort of that role; ``test`` names the base story's test
    cohort).

    Raises
    ------
    ValueError
        A name that is neither a declared cohort nor a role, a declared cohort without a
        folder, or a declaration whose cohorts are not one training, one tuning and one test
        cohort, plus test cohorts of other story variants (the shape of this analysis).
    """
    by_name = {c.name: c for c in declaration.cohorts}
    out: dict[CohortSpec, Path] = {}
    for name, folder in given.items():
        spec = by_name.get(name)
        if spec is None and name in ROLE_ALIASES:
            of_role = [
                c for c in declaration.cohorts_of(ROLE_ALIASES[name]) if c.variant == BASE_VARIANT
            ]
            spec = of_role[0] if len(of_role) == 1 else None
        if spec is None:
            raise ValueError(
                f"--cohort {name}: not a cohort of {declaration.id} "
                f"(declared: {', '.join(sorted(by_name))}; or a role: train, tune, test)"
            )
        if spec in out:
            raise ValueError(f"cohort {spec.name} given twice")
        out[spec] = folder
    missing = [c.name for c in declaration.cohorts if c not in out]
    if missing:
        raise ValueError(f"no folder given for the declared cohort(s) {', '.join(missing)}")
    for role in CohortRole:
        of_role = [c for c in declaration.cohorts_of(role) if c.variant == BASE_VARIANT]
        if len(of_role) != 1:
            raise ValueError(
                f"{declaration.id} declares {len(of_role)} {role} cohorts of the base story; "
                "this analysis takes exactly one training, one tuning and one test (and further "
                "test cohorts only of other story variants)"
            )
    return out


def declared_version(declaration: Declaration, name: str) -> str | None:
    """The version of model ``name`` in the declaration's ``[[models]]``, if given."""
    return next((m.version for m in declaration.models if m.name == name and m.version), None)


def _complete(declaration: Declaration, estimates: Mapping[str, Estimate]) -> dict[str, Estimate]:
    """Every declared metric (a story variant's ``...@variant:<name>`` too): one the analysis
    did not produce is reported as not computed (nan, with the reason), never dropped."""
    out = dict(estimates)
    for key in declaration.metrics:
        if key not in out:
            nan = math.nan
            out[key] = Estimate(
                nan,
                nan,
                nan,
                declaration.level,
                IntervalMethod.DELONG if ".auc_" in key else declaration.bootstrap.method,
                0,
                {"reason": "not computed by the declared analysis (unknown key, or no data)"},
            )
    return out


def run_evaluation(
    declaration_path: Path,
    cohorts: Mapping[str, Path],
    *,
    out: Path,
    models_dir: Path,
    pathology: Path,
    who: str,
    command: str,
    cache_dir: Path | None = None,
    repeat_reason: str | None = None,
    signature_config: Any = None,
    response_config: Any = None,
    workers: int = 1,
    progress: Any = None,
    device: str = "cpu",
) -> Evaluated:
    """Check, log the look, run the declared analysis, write the results (module docstring).

    Raises
    ------
    DeclarationError
        The declaration is invalid.
    ProtocolError
        The protocol refuses this evaluation (every reason listed); nothing was logged.
    ValueError
        Cohorts given do not match the declared ones.
    """
    from models.response.analysis import AnalysisCohorts, declared_analysis

    repo = repository_of(declaration_path)
    declaration = load_declaration(declaration_path)
    matched = match_cohorts(declaration, cohorts)
    problems = [
        problem
        for spec, folder in matched.items()
        if spec.role is not CohortRole.TEST
        for problem in cohort_stamp_problems(
            spec, read_cohort_stamp(folder), declaration.story_version
        )
    ]
    if problems:
        raise ProtocolError(f"evaluation of {declaration.id} refused:\n- " + "\n- ".join(problems))
    folder_of = {
        spec.role: folder for spec, folder in matched.items() if spec.variant == BASE_VARIANT
    }
    variant_folders = {
        spec.variant: folder for spec, folder in matched.items() if spec.variant != BASE_VARIANT
    }
    test_folders = {
        spec.name: folder for spec, folder in matched.items() if spec.role is CohortRole.TEST
    }
    clearance = open_evaluation(repo, declaration_path, test_folders, repeat_reason=repeat_reason)
    look = record_look(clearance, who=who, command=command, computed=computed(declaration))
    run_folder = out / declaration.id
    versions = (
        declared_version(declaration, "ct-signature") or f"{declaration.id}",
        declared_version(declaration, "response") or f"{declaration.id}",
    )
    analysis = declared_analysis(
        AnalysisCohorts(
            training=folder_of[CohortRole.TRAINING],
            tuning=folder_of[CohortRole.TUNING],
            test=folder_of[CohortRole.TEST],
            variants=variant_folders,
        ),
        run_folder,
        pathology=pathology,
        plan=plan_from_declaration(declaration),
        models_dir=models_dir,
        versions=versions,
        cache_dir=cache_dir,
        signature_config=signature_config,
        response_config=response_config,
        workers=workers,
        progress=progress,
        device=device,
    )
    estimates = _complete(declaration, analysis.estimates)
    results = write_results_files(
        clearance,
        estimates,
        command=command,
        extra={
            **analysis.summary,
            "look_logged_at": look.at,
            "pathology_model": str(pathology),
            "cohorts": {
                spec.name: {"role": str(spec.role), "seed": spec.seed, "folder": str(folder)}
                | ({"variant": spec.variant} if spec.variant != BASE_VARIANT else {})
                for spec, folder in matched.items()
            },
        },
    )
    _write_evidence(results[1], analysis)
    return Evaluated(clearance, look, results, run_folder, estimates)


def _write_evidence(results_json: Path, analysis: Any) -> None:
    """Write the evaluation just made into the cards of the models it trained (issue #22
    item 7): each card ends with its declaration and headline numbers with their intervals."""
    from models.evaluation.evidence import SECTION, evidence_note
    from models.registry import amend_card

    payload = json.loads(results_json.read_text(encoding="utf-8"))
    for name, run in (("ct-signature", analysis.signature), ("response", analysis.response)):
        artifact = getattr(run, "artifact", None)  # None: a stand-in analysis saved nothing
        if artifact is not None and artifact.folder is not None:
            note = evidence_note(name, payload, instance=True)
            amend_card(artifact.folder, card_note=note, section=SECTION)


def recorded_command(
    declaration: Path,
    cohorts: dict[str, Path],
    *,
    workers: int = 1,
    pathology_model: str | None = None,
    device: str | None = None,
    out: Path | None = None,
) -> str:
    """The ``irtmon evaluate`` command line as run, for the look log and the results: every
    option given, not only what was read (a rerun from the log then runs the same way)."""
    return shlex.join(
        ["irtmon", "evaluate", str(declaration)]
        + [a for name, folder in cohorts.items() for a in ("--cohort", f"{name}={folder}")]
        + (["--workers", str(workers)] if workers != 1 else [])
        + (["--pathology-model", pathology_model] if pathology_model else [])
        + (["--device", str(device)] if device else [])
        + (["--out", str(out)] if out else [])
    )


def evaluate(
    declaration: Annotated[
        Path, typer.Argument(help="The committed declaration (docs/evaluation/declarations/).")
    ],
    cohort: Annotated[
        list[str],
        typer.Option(
            help="NAME=PATH, once per declared cohort: NAME is the declared cohort name or its "
            "role (train, tune, test: the base story's); a story variant's test cohort by name."
        ),
    ],
    pathology_model: Annotated[
        str | None,
        typer.Option(
            help="Teacher: pathology-mil folder or version (default: the declared "
            "pathology-mil version, else the promoted/latest)."
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Run folder parent (default: IRTMON_DERIVED_DIR/evaluations)."),
    ] = None,
    repeat_reason: Annotated[
        str | None,
        typer.Option(
            help="Why a declaration already looked at is looked at again (a crash); logged."
        ),
    ] = None,
    who: Annotated[str | None, typer.Option(help="Who runs it (default: the user).")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Processes analysing studies.")] = 1,
    device: TorchDevice = None,
) -> None:
    """Run a declaration's one analysis once: check the protocol, log the look, train on the
    training cohort, calibrate on the tuning cohort, evaluate on the test cohort (and on each
    story variant's test cohort) with 95 % intervals, and write
    docs/evaluation/results/<id>.md and .json."""
    from irtmon.cli_models import _progress_bar, resolve_artifact, training_cache
    from models.exceptions import IrtmonError

    settings = get_settings()
    try:
        given = parse_cohort_options(cohort)
        decl = load_declaration(declaration)
    except (IrtmonError, ValueError) as err:
        raise fail(str(err)) from err
    on = torch_device(device)
    teacher = resolve_artifact(
        "pathology-mil",
        pathology_model or declared_version(decl, "pathology-mil"),
        settings.models_dir,
    )
    command = recorded_command(
        declaration, given, workers=workers, pathology_model=pathology_model, device=device, out=out
    )
    bar, progress = _progress_bar()
    try:
        with bar:
            done = run_evaluation(
                declaration,
                given,
                out=out or Path(settings.derived_dir) / "evaluations",
                models_dir=settings.models_dir,
                pathology=teacher,
                who=who or getpass.getuser(),
                command=command,
                cache_dir=training_cache(settings),
                repeat_reason=repeat_reason,
                workers=workers,
                progress=progress,
                device=on,
            )
    except (IrtmonError, ValueError, FileNotFoundError) as err:
        raise fail(str(err)) from err
    md, js = done.results
    console.print(f"look logged at {done.look.at}; results: {md} and {js}")
    console.print(f"runs: {done.run_folder}")
    console.print("commit the results and docs/evaluation/looks.jsonl together")
