"""Pre-declarations of an evaluation: the format, its validation, and the pure checks that
decide whether an evaluation may run (the facts come from :mod:`irtmon.protocol`).

A declaration is a TOML file ``docs/evaluation/declarations/<id>.toml`` (read with the
standard library's :mod:`tomllib`). See ``docs/evaluation/README.md`` for the protocol and
``docs/evaluation/declaration-template.toml`` for a complete example.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from models.evaluation.estimate import IntervalMethod
from models.evaluation.targets import Direction, Target
from models.exceptions import DeclarationError

ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{2,80}$")
VARIANT_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,40}$")
BASE_VARIANT = "base"
"""The story variant of a cohort generated without one (``cohort.json`` without
``story_variant``)."""
VARIANT_KEY = "@variant:"
"""A metric key's suffix naming the non-base test cohort it was estimated on
(``response.full.auc_fu1@variant:immune-none``)."""
SHA_PATTERN = re.compile(r"^[0-9a-f]{7,40}$")


class CohortRole(StrEnum):
    """What a cohort is for. Only ``test`` cohorts are guarded by the protocol."""

    TRAINING = "training"
    TUNING = "tuning"
    TEST = "test"


@dataclass(frozen=True)
class CohortSpec:
    """A cohort named in a declaration."""

    role: CohortRole
    name: str
    seed: int
    patients: int
    path: str = ""
    story_version: str = ""
    size: str = ""
    timepoints: int = 0
    variant: str = BASE_VARIANT
    """The clinic's story variant the cohort is generated with (``story_variant`` in its
    ``cohort.json``); ``base`` unless declared."""


@dataclass(frozen=True)
class ModelSpec:
    """A model to evaluate or a baseline: how it is made (command) and which version."""

    name: str
    command: str
    version: str = ""


@dataclass(frozen=True)
class BootstrapPlan:
    """The bootstrap every interval that is not DeLong's, Wilson's or Poisson's uses."""

    resamples: int
    seed: int
    method: IntervalMethod


@dataclass(frozen=True)
class Declaration:
    """One pre-declared evaluation (see the module docstring for the file)."""

    id: str
    date: date
    story_version: str
    written_at_commit: str
    analysis: str
    level: float
    interval_method: str
    bootstrap: BootstrapPlan
    cohorts: tuple[CohortSpec, ...]
    models: tuple[ModelSpec, ...]
    metrics: tuple[str, ...]
    targets: tuple[Target, ...]
    frozen_paths: tuple[str, ...] = ()
    notes: str = ""
    parts: bool = False
    """Its base-story test cohorts are parts of one test set, each generated and read in a
    run of its own (one look each); the one analysis pools them once every part is read."""
    path: Path | None = field(default=None, compare=False)

    def cohorts_of(self, role: CohortRole) -> list[CohortSpec]:
        return [c for c in self.cohorts if c.role is role]

    @property
    def test_cohorts(self) -> list[CohortSpec]:
        return self.cohorts_of(CohortRole.TEST)

    @property
    def primary_test_cohort(self) -> CohortSpec:
        """The base-story test cohort (its estimates' keys carry no ``@variant:`` suffix)."""
        return next(c for c in self.test_cohorts if c.variant == BASE_VARIANT)

    @property
    def variant_test_cohorts(self) -> list[CohortSpec]:
        """The test cohorts of other story variants, in declared order."""
        return [c for c in self.test_cohorts if c.variant != BASE_VARIANT]


def variant_key(key: str, variant: str) -> str:
    """``key`` as estimated on a test cohort of story ``variant`` (unchanged for ``base``)."""
    return key if variant == BASE_VARIANT else f"{key}{VARIANT_KEY}{variant}"


def split_variant_key(key: str) -> tuple[str, str]:
    """``(metric key, variant)``: ``"a.b@variant:x"`` -> ``("a.b", "x")``; a key without
    the suffix is the base story's."""
    base, sep, variant = key.partition(VARIANT_KEY)
    return (base, variant) if sep else (key, BASE_VARIANT)


def _need(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in data:
        raise DeclarationError(f"{where}: missing {key!r}")
    value = data[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise DeclarationError(f"{where}: {key!r} must be {names}, got {value!r}")
    return value


def parse_declaration(data: Mapping[str, Any], path: Path | None = None) -> Declaration:
    """Validate a parsed TOML document and build the :class:`Declaration`.

    Raises
    ------
    DeclarationError
        With every problem found, one per line.
    """
    where = str(path) if path else "declaration"
    problems: list[str] = []

    def attempt(fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except DeclarationError as err:
            problems.append(str(err))
            return None

    ident = attempt(_need, data, "id", str, where)
    if ident is not None and not ID_PATTERN.match(ident):
        problems.append(f"{where}: id {ident!r} must be lower-case letters, digits, . _ -")
    if ident is not None and path is not None and path.stem != ident:
        problems.append(f"{where}: the file must be named {ident}.toml")
    day = attempt(_need, data, "date", date, where)
    if isinstance(day, datetime):
        day = day.date()
    story = attempt(_need, data, "story_version", str, where)
    commit = attempt(_need, data, "written_at_commit", str, where)
    if commit is not None and not SHA_PATTERN.match(commit):
        problems.append(f"{where}: written_at_commit must be a git commit hash, got {commit!r}")
    analysis = attempt(_need, data, "analysis", str, where)
    level = data.get("level", 0.95)
    if not isinstance(level, float) or not 0.5 < level < 1.0:
        problems.append(f"{where}: level must be a number between 0.5 and 1, got {level!r}")
    interval_method = attempt(_need, data, "interval_method", str, where)
    boot = _bootstrap(data.get("bootstrap"), where, problems)
    cohorts = tuple(_cohorts(data.get("cohorts"), where, problems))
    models = tuple(_models(data.get("models"), where, problems))
    metrics = data.get("metrics")
    if not isinstance(metrics, list) or not metrics or not all(isinstance(m, str) for m in metrics):
        problems.append(f"{where}: metrics must be a non-empty list of metric keys")
        metrics = []
    targets = tuple(_targets(data.get("targets", []), set(metrics), where, problems))
    frozen = data.get("frozen_paths", [])
    if not isinstance(frozen, list) or not all(isinstance(p, str) for p in frozen):
        problems.append(f"{where}: frozen_paths must be a list of repository paths")
        frozen = []
    parts = data.get("parts", False)
    if not isinstance(parts, bool):
        problems.append(f"{where}: parts must be true or false, got {parts!r}")
        parts = False
    _check_cohorts(cohorts, where, problems, parts)
    _check_variant_metrics(metrics, cohorts, where, problems)
    unknown = set(data) - {
        "id",
        "date",
        "story_version",
        "written_at_commit",
        "analysis",
        "level",
        "interval_method",
        "bootstrap",
        "cohorts",
        "models",
        "metrics",
        "targets",
        "frozen_paths",
        "notes",
        "parts",
    }
    if unknown:
        problems.append(f"{where}: unknown keys {sorted(unknown)}")
    if problems:
        raise DeclarationError("\n".join(problems))
    return Declaration(
        id=ident,
        date=day,
        story_version=story,
        written_at_commit=commit,
        analysis=analysis,
        level=float(level),
        interval_method=interval_method,
        bootstrap=boot,  # type: ignore[arg-type]
        cohorts=cohorts,
        models=models,
        metrics=tuple(metrics),
        targets=targets,
        frozen_paths=tuple(frozen),
        notes=str(data.get("notes", "")),
        parts=parts,
        path=path,
    )


def load_declaration(path: Path | str) -> Declaration:
    """Read and validate ``path`` (TOML).

    Raises
    ------
    DeclarationError
        Unreadable TOML or an invalid declaration, with what to fix.
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise DeclarationError(f"no declaration at {path}") from err
    except tomllib.TOMLDecodeError as err:
        raise DeclarationError(f"{path} is not valid TOML: {err}") from err
    return parse_declaration(data, path)


_TABLE_KEYS = {
    "bootstrap": {"resamples", "seed", "method"},
    "cohorts": {
        "role",
        "name",
        "seed",
        "patients",
        "path",
        "story_version",
        "size",
        "timepoints",
        "variant",
    },
    "models": {"name", "command", "version"},
    "targets": {"metric", "direction", "value"},
}


def _unknown(raw: Mapping[str, Any], table: str, where: str, problems: list[str]) -> None:
    """Keys a table does not know: often a top-level key written after a table in TOML,
    which then belongs to that table."""
    extra = set(raw) - _TABLE_KEYS[table]
    if extra:
        problems.append(
            f"{where}: unknown keys {sorted(extra)} (top-level keys go before the first table)"
        )


def _bootstrap(raw: Any, where: str, problems: list[str]) -> BootstrapPlan | None:
    if not isinstance(raw, dict):
        problems.append(f"{where}: a [bootstrap] table with resamples, seed and method is needed")
        return None
    _unknown(raw, "bootstrap", f"{where} [bootstrap]", problems)
    try:
        resamples = _need(raw, "resamples", int, f"{where} [bootstrap]")
        seed = _need(raw, "seed", int, f"{where} [bootstrap]")
        method = IntervalMethod(_need(raw, "method", str, f"{where} [bootstrap]"))
    except DeclarationError as err:
        problems.append(str(err))
        return None
    except ValueError:
        problems.append(
            f"{where} [bootstrap]: method must be {IntervalMethod.BOOTSTRAP_BCA.value!r} or "
            f"{IntervalMethod.BOOTSTRAP_PERCENTILE.value!r}"
        )
        return None
    if method not in (IntervalMethod.BOOTSTRAP_BCA, IntervalMethod.BOOTSTRAP_PERCENTILE):
        problems.append(f"{where} [bootstrap]: {method} is not a bootstrap method")
    if resamples < 1000:
        problems.append(f"{where} [bootstrap]: at least 1000 resamples, got {resamples}")
    return BootstrapPlan(resamples, seed, method)


def _cohorts(raw: Any, where: str, problems: list[str]) -> list[CohortSpec]:
    if not isinstance(raw, list) or not raw:
        problems.append(f"{where}: at least one [[cohorts]] entry is needed")
        return []
    out = []
    for i, c in enumerate(raw):
        w = f"{where} cohorts[{i}]"
        _unknown(c, "cohorts", w, problems)
        try:
            role = CohortRole(_need(c, "role", str, w))
            out.append(
                CohortSpec(
                    role=role,
                    name=_need(c, "name", str, w),
                    seed=_need(c, "seed", int, w),
                    patients=_need(c, "patients", int, w),
                    path=str(c.get("path", "")),
                    story_version=str(c.get("story_version", "")),
                    size=str(c.get("size", "")),
                    timepoints=_need(c, "timepoints", int, w) if "timepoints" in c else 0,
                    variant=_need(c, "variant", str, w) if "variant" in c else BASE_VARIANT,
                )
            )
            if not VARIANT_PATTERN.match(out[-1].variant):
                problems.append(
                    f"{w}: variant {out[-1].variant!r} must be lower-case letters, digits and -"
                )
        except DeclarationError as err:
            problems.append(str(err))
        except ValueError:
            problems.append(f"{w}: role must be one of {[r.value for r in CohortRole]}")
    return out


def _models(raw: Any, where: str, problems: list[str]) -> list[ModelSpec]:
    if not isinstance(raw, list) or not raw:
        problems.append(f"{where}: at least one [[models]] entry (name, command) is needed")
        return []
    out = []
    for i, m in enumerate(raw):
        w = f"{where} models[{i}]"
        _unknown(m, "models", w, problems)
        try:
            out.append(
                ModelSpec(
                    _need(m, "name", str, w), _need(m, "command", str, w), str(m.get("version", ""))
                )
            )
        except DeclarationError as err:
            problems.append(str(err))
    return out


def _targets(raw: Any, metrics: set[str], where: str, problems: list[str]) -> list[Target]:
    if not isinstance(raw, list):
        problems.append(f"{where}: targets must be a list of [[targets]] tables")
        return []
    out = []
    for i, t in enumerate(raw):
        w = f"{where} targets[{i}]"
        _unknown(t, "targets", w, problems)
        try:
            metric = _need(t, "metric", str, w)
            direction = Direction(_need(t, "direction", str, w))
            value = float(_need(t, "value", int | float, w))
        except DeclarationError as err:
            problems.append(str(err))
            continue
        except ValueError:
            problems.append(f"{w}: direction must be 'at least' or 'at most'")
            continue
        if metric not in metrics:
            problems.append(f"{w}: target metric {metric!r} is not in metrics")
        out.append(Target(metric, direction, value))
    return out


def _check_cohorts(
    cohorts: Sequence[CohortSpec], where: str, problems: list[str], parts: bool = False
) -> None:
    tests = [c for c in cohorts if c.role is CohortRole.TEST]
    if not tests:
        problems.append(f"{where}: at least one cohort with role = 'test' is needed")
    names = [c.name for c in cohorts]
    if len(set(names)) != len(names):
        problems.append(f"{where}: cohort names must be unique")
    other_seeds = {c.seed for c in cohorts if c.role is not CohortRole.TEST}
    for c in tests:
        if c.seed in other_seeds:
            problems.append(
                f"{where}: test cohort {c.name} reuses seed {c.seed} of a training or tuning cohort"
            )
    # test cohorts may share a seed only as different story variants of it: the same patients,
    # each cohort changed one way (a paired robustness design, clinic.story_v2.variants)
    if len({(c.seed, c.variant) for c in tests}) != len(tests):
        problems.append(
            f"{where}: test cohorts must have different seeds, or be different story variants "
            "of one seed"
        )
    for c in cohorts:
        if c.patients < 1:
            problems.append(f"{where}: cohort {c.name} must have at least one patient")
        # A tuning cohort may be a story variant (the change-point policy is tuned on one with
        # more pseudo-progressions, to have enough of them to judge); the models are trained on
        # the base story, and `irtmon evaluate` still asks for a base tuning cohort of its own.
        if c.role is CohortRole.TRAINING and c.variant != BASE_VARIANT:
            problems.append(
                f"{where}: {c.role} cohort {c.name} has variant {c.variant!r}: training "
                f"cohorts must be of the base story ({BASE_VARIANT!r}) in this analysis "
                "(the models are trained once; story variants are test or tuning cohorts)"
            )
    variants = [c.variant for c in tests]
    if parts:
        if len(tests) < 2 or set(variants) != {BASE_VARIANT}:
            problems.append(
                f"{where}: a declaration in parts has two or more test cohorts, all of the "
                f"base story (its parts), got {variants}"
            )
    elif len(set(variants)) != len(variants):
        problems.append(
            f"{where}: test cohorts must be of distinct story variants (one test cohort per "
            f"variant), got {variants}"
        )
    if tests and BASE_VARIANT not in variants:
        problems.append(
            f"{where}: one test cohort must be of the base story (variant {BASE_VARIANT!r}, "
            "the default): it is the primary test cohort, the others are story variants"
        )


def _check_variant_metrics(
    metrics: Sequence[str], cohorts: Sequence[CohortSpec], where: str, problems: list[str]
) -> None:
    """A metric key ``...@variant:<name>`` needs a test cohort of that variant (the base
    story's keys carry no suffix)."""
    declared = {c.variant for c in cohorts if c.role is CohortRole.TEST} - {BASE_VARIANT}
    for key in metrics:
        if VARIANT_KEY not in key:
            continue
        _, variant = split_variant_key(key)
        if variant == BASE_VARIANT:
            problems.append(
                f"{where}: metric {key!r}: the base story's keys carry no {VARIANT_KEY} suffix"
            )
        elif variant not in declared:
            problems.append(
                f"{where}: metric {key!r} names variant {variant!r}, but no test cohort of "
                f"that variant is declared (declared: {sorted(declared) or 'none'})"
            )


# ------------------------------------------------------------------------- clearance


@dataclass(frozen=True)
class CohortStamp:
    """What a generated cohort says about itself (its ``cohort.json``)."""

    seed: int
    patients: int
    generated_at: datetime | None
    story_version: str = ""
    size: str = ""
    timepoints: int = 0
    story_variant: str = BASE_VARIANT


@dataclass(frozen=True)
class ProtocolFacts:
    """Everything the clearance needs to know, gathered from git and the file system.

    Attributes
    ----------
    declared_at
        Commit time of the commit that added the declaration (``None``: not committed).
    declaration_edits
        Commits that changed the declaration after the one that added it.
    uncommitted
        True when the working copy of the declaration differs from HEAD or is untracked.
    frozen_changes
        Paths under ``frozen_paths`` changed between ``written_at_commit`` and the working
        tree.
    results_exist
        A results file for this declaration is already there.
    earlier_looks
        Looks already logged for this declaration.
    stamps
        Test cohort name -> its stamp (missing when the folder has no ``cohort.json``).
    seeds_declared_before
        Test seed -> id of an *earlier* declaration that already declared it.
    written_at_known
        ``written_at_commit`` is a commit of this repository and an ancestor of HEAD.
    """

    declared_at: datetime | None
    declaration_edits: int
    uncommitted: bool
    frozen_changes: tuple[str, ...]
    results_exist: bool
    earlier_looks: int
    stamps: Mapping[str, CohortStamp]
    seeds_declared_before: Mapping[int, str] = field(default_factory=dict)
    written_at_known: bool = True


def clearance_problems(
    declaration: Declaration,
    facts: ProtocolFacts,
    *,
    repeat_reason: str | None = None,
    part: str | None = None,
) -> list[str]:
    """Why the evaluation of ``declaration`` may not run (an empty list: it may).

    The rules of ``docs/evaluation/README.md``: the declaration is committed, unchanged since,
    and was committed before each test cohort was generated (``generated_at`` in its
    ``cohort.json``), whose seed, size and story variant are the declared ones; its test
    seeds are new; the frozen code has not changed since the declaration was written; it has
    no results yet; and it has not been looked at before, unless ``repeat_reason`` says why
    (a crash), which the look records. With ``part`` (a declaration in parts), the same for
    that one test cohort: ``facts`` then count the looks at that part, and its read as
    results.
    """
    out: list[str] = []
    d = declaration
    tests = d.test_cohorts
    if part is not None:
        if not d.parts:
            out.append(
                f"declaration {d.id} is not declared in parts: its test cohorts are read together"
            )
        names = [c.name for c in tests]
        if part not in names:
            out.append(f"{part!r} is not a test cohort of {d.id} (its parts: {', '.join(names)})")
        tests = [c for c in tests if c.name == part]
    elif d.parts:
        out.append(f"declaration {d.id} is declared in parts: read one part at a time")
    if facts.declared_at is None:
        out.append(f"declaration {d.id} is not committed: commit it before the test cohort exists")
    if facts.uncommitted:
        out.append(
            f"declaration {d.id} has uncommitted changes: a changed declaration is a new "
            "declaration (new id, new test seed)"
        )
    if facts.declaration_edits:
        out.append(
            f"declaration {d.id} was changed in {facts.declaration_edits} commit(s) after it "
            "was first committed: write a new declaration with a new id and test seed instead"
        )
    if facts.results_exist:
        out.append(f"declaration {d.id} already has results: each declaration is evaluated once")
    if facts.earlier_looks and not repeat_reason:
        out.append(
            f"declaration {d.id} has {facts.earlier_looks} look(s) logged already; a repeated "
            "look needs a stated reason (it is logged), or a new declaration"
        )
    if not facts.written_at_known:
        out.append(
            f"written_at_commit {d.written_at_commit} is not a commit in the history of HEAD: "
            "write the hash of the commit the declaration was written at"
        )
    if facts.frozen_changes:
        shown = ", ".join(facts.frozen_changes[:5])
        out.append(
            f"{len(facts.frozen_changes)} file(s) under the frozen paths changed since "
            f"{d.written_at_commit[:12]} ({shown}): the declared code is not what would run"
        )
    for seed, other in facts.seeds_declared_before.items():
        out.append(f"test seed {seed} was already declared by {other}: a test seed is used once")
    for c in tests:
        stamp = facts.stamps.get(c.name)
        if stamp is None:
            out.append(f"test cohort {c.name}: no cohort.json found (generate it, then evaluate)")
            continue
        if stamp.seed != c.seed or stamp.patients != c.patients:
            out.append(
                f"test cohort {c.name}: generated with seed {stamp.seed} and {stamp.patients} "
                f"patients, declared seed {c.seed} and {c.patients} patients"
            )
        want_story = c.story_version or d.story_version
        if stamp.story_version and want_story and stamp.story_version != want_story:
            out.append(
                f"test cohort {c.name}: story version {stamp.story_version}, declared {want_story}"
            )
        out += _shape_problems(c, stamp)
        if stamp.generated_at is None:
            out.append(
                f"test cohort {c.name}: cohort.json has no generated_at stamp, so it cannot be "
                "shown to postdate the declaration"
            )
        elif facts.declared_at is not None and stamp.generated_at <= facts.declared_at:
            out.append(
                f"test cohort {c.name} was generated at {stamp.generated_at.isoformat()}, not "
                f"after the declaration was committed ({facts.declared_at.isoformat()})"
            )
    return out


def cohort_stamp_problems(spec: CohortSpec, stamp: CohortStamp | None, story: str) -> list[str]:
    """Why a training or tuning cohort is not the declared one: no ``cohort.json``, another
    seed, size, story version (``story``: the declaration's, unless the cohort names its
    own) or story variant. Test cohorts are checked by :func:`clearance_problems`, which
    also needs the declaration's commit time."""
    if stamp is None:
        return [f"{spec.role} cohort {spec.name}: no cohort.json found"]
    out = []
    if stamp.seed != spec.seed or stamp.patients != spec.patients:
        out.append(
            f"{spec.role} cohort {spec.name}: generated with seed {stamp.seed} and "
            f"{stamp.patients} patients, declared seed {spec.seed} and {spec.patients} patients"
        )
    want = spec.story_version or story
    if stamp.story_version and want and stamp.story_version != want:
        out.append(
            f"{spec.role} cohort {spec.name}: story version {stamp.story_version}, declared {want}"
        )
    out += _shape_problems(spec, stamp)
    return out


def _shape_problems(spec: CohortSpec, stamp: CohortStamp) -> list[str]:
    """Story variant, and image size and timepoints where the declaration names them."""
    out = []
    if stamp.story_variant != spec.variant:
        out.append(
            f"{spec.role} cohort {spec.name}: story variant {stamp.story_variant}, declared "
            f"{spec.variant}"
        )
    if spec.size and stamp.size != spec.size:
        out.append(
            f"{spec.role} cohort {spec.name}: size {stamp.size or 'unknown'}, declared {spec.size}"
        )
    if spec.timepoints and stamp.timepoints != spec.timepoints:
        out.append(
            f"{spec.role} cohort {spec.name}: {stamp.timepoints or 'unknown'} timepoints, "
            f"declared {spec.timepoints}"
        )
    return out
