"""The evaluation protocol's tooling: git facts about a declaration, the looks log, the
results files. The science never imports this module; the CLI does.

It calls ``git`` (as a subprocess, in the repository given) to learn when a declaration was
committed, whether it changed since, and whether the frozen code changed; it reads each test
cohort's ``cohort.json``; it appends to the looks log and writes the results files. The rules
themselves are the pure :func:`models.evaluation.declaration.clearance_problems`.

The CLI's sequence (``irtmon evaluate``, to be wired by the lead)::

    clearance = open_evaluation(repo, declaration_path, {name: folder, ...})
    record_look(repo, clearance, who=..., command=..., computed=...)  # before reading test data
    estimates = ...  # the declared analysis
    write_results(repo, clearance, estimates, command=...)
"""

from __future__ import annotations

import gzip
import json
import subprocess
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from models.evaluation.declaration import (
    BASE_VARIANT,
    CohortStamp,
    Declaration,
    ProtocolFacts,
    clearance_problems,
    load_declaration,
)
from models.evaluation.estimate import Estimate
from models.evaluation.results import results_markdown, results_payload
from models.exceptions import DeclarationError, ProtocolError

EVALUATION_DIR = Path("docs/evaluation")
DECLARATIONS_DIR = EVALUATION_DIR / "declarations"
RESULTS_DIR = EVALUATION_DIR / "results"
LOOKS_LOG = EVALUATION_DIR / "looks.jsonl"


# ------------------------------------------------------------------------- git


def git(repo: Path, *args: str) -> str:
    """Run ``git -C repo args`` and return its standard output.

    Raises
    ------
    ProtocolError
        git failed (not a repository, unknown commit...), with git's message.
    """
    try:
        done = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
        )
    except FileNotFoundError as err:
        raise ProtocolError("git is not installed; the protocol needs it") from err
    except subprocess.CalledProcessError as err:
        raise ProtocolError(f"git {' '.join(args)} failed: {err.stderr.strip()}") from err
    return done.stdout


@dataclass(frozen=True)
class CommitInfo:
    """A commit and its committer time."""

    sha: str
    committed_at: datetime


def _commits(repo: Path, *args: str) -> list[CommitInfo]:
    out = git(repo, "log", "--format=%H %cI", *args)
    return [
        CommitInfo(sha, datetime.fromisoformat(when))
        for sha, when in (line.split(" ", 1) for line in out.splitlines() if line.strip())
    ]


def head(repo: Path) -> CommitInfo:
    """The commit checked out."""
    commits = _commits(repo, "-1", "HEAD")
    if not commits:
        raise ProtocolError(f"{repo} has no commit")
    return commits[0]


def _relative(repo: Path, path: Path) -> str:
    root = Path(git(repo, "rev-parse", "--show-toplevel").strip()).resolve()
    try:
        return str(Path(path).resolve().relative_to(root))
    except ValueError as err:
        raise ProtocolError(f"{path} is not inside the repository {root}") from err


def file_history(repo: Path, path: Path) -> list[CommitInfo]:
    """Commits that touched ``path``, oldest first (renames are not followed)."""
    return list(reversed(_commits(repo, "--", _relative(repo, path))))


def is_uncommitted(repo: Path, path: Path) -> bool:
    """Untracked, or its working copy or index differs from HEAD."""
    return bool(git(repo, "status", "--porcelain", "--", _relative(repo, path)).strip())


def is_ancestor_of_head(repo: Path, commit: str) -> bool:
    """``commit`` exists and HEAD descends from it."""
    done = subprocess.run(
        ["git", "-C", str(repo), "merge-base", "--is-ancestor", commit, "HEAD"],
        capture_output=True,
        text=True,
    )
    return done.returncode == 0


def changed_paths(repo: Path, since: str, paths: tuple[str, ...]) -> list[str]:
    """Files under ``paths`` that differ between commit ``since`` and the working tree
    (committed or not), plus untracked files there."""
    if not paths:
        return []
    changed = git(repo, "diff", "--name-only", since, "--", *paths).split()
    untracked = git(repo, "ls-files", "--others", "--exclude-standard", "--", *paths).split()
    return sorted(set(changed) | set(untracked))


# ------------------------------------------------------------------------- cohorts


def read_cohort_stamp(folder: Path) -> CohortStamp | None:
    """The stamp of a generated cohort (``cohort.json``: ``seed``, ``n_patients``,
    ``generated_at`` as ISO 8601 with a time zone, optional ``story_version``, ``size``,
    ``n_timepoints`` and ``story_variant``, absent for the base story), or None."""
    meta = Path(folder) / "cohort.json"
    if not meta.is_file():
        return None
    data = json.loads(meta.read_text(encoding="utf-8"))
    when = data.get("generated_at")
    generated = datetime.fromisoformat(when) if when else None
    if generated is not None and generated.tzinfo is None:
        raise ProtocolError(f"{meta}: generated_at {when!r} has no time zone")
    return CohortStamp(
        seed=int(data["seed"]),
        patients=int(data["n_patients"]),
        generated_at=generated,
        story_version=str(data.get("story_version", "")),
        size=str(data.get("size", "")),
        timepoints=int(data.get("n_timepoints", 0)),
        story_variant=str(data.get("story_variant") or BASE_VARIANT),
    )


# ------------------------------------------------------------------------- looks


@dataclass(frozen=True)
class Look:
    """One touch of test data, as logged (one JSON line)."""

    at: str
    who: str
    command: str
    declaration: str
    test_cohorts: list[str]
    computed: str
    commit: str
    reason: str = ""


def read_looks(log: Path) -> list[Look]:
    """Every look in the log (an absent log has none)."""
    if not log.is_file():
        return []
    return [
        Look(**json.loads(line))
        for line in log.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]


def append_look(log: Path, look: Look) -> None:
    """Append one line; the log is never rewritten."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(asdict(look), sort_keys=True) + "\n")


def log_rewrites(repo: Path, log: Path) -> list[str]:
    """Where the looks log was not append-only: each committed version must begin with the
    previous one, and the working copy with the last committed one."""
    rel = _relative(repo, log)
    versions = [git(repo, "show", f"{c.sha}:{rel}") for c in file_history(repo, log)]
    if log.is_file():
        versions.append(log.read_text(encoding="utf-8"))
    return [
        f"looks log version {i + 1} does not begin with version {i}"
        for i in range(1, len(versions))
        if not versions[i].startswith(versions[i - 1])
    ]


# ------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class Clearance:
    """Permission to evaluate one declaration once, with the facts it was granted on."""

    repo: Path
    declaration: Declaration
    declaration_commit: CommitInfo
    head: CommitInfo
    cohort_folders: Mapping[str, Path]
    reason: str = ""


def _results_paths(repo: Path, declaration_id: str) -> tuple[Path, Path]:
    base = repo / RESULTS_DIR / declaration_id
    return base.with_suffix(".md"), base.with_suffix(".json")


def part_path(repo: Path, declaration_id: str, part: str) -> Path:
    """Where the read of one part of a declaration in parts is kept (gzip-compressed JSON,
    committed with the looks log): ``docs/evaluation/results/<id>.part-<part>.json.gz``."""
    return repo / RESULTS_DIR / f"{declaration_id}.part-{part}.json.gz"


def write_part(clearance: Clearance, part: str, rows: Any) -> Path:
    """Keep the read of ``part`` (never over an existing one): the per-patient rows the
    pooled analysis needs.

    Raises
    ------
    ProtocolError
        That part was read already.
    """
    path = part_path(clearance.repo, clearance.declaration.id, part)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = gzip.compress(json.dumps(rows, default=str).encode(), mtime=0)
    try:
        with path.open("xb") as fh:
            fh.write(data)
    except FileExistsError as err:
        raise ProtocolError(f"part {part} of {clearance.declaration.id} was read already") from err
    return path


def read_parts(repo: Path, declaration: Declaration) -> dict[str, Any] | None:
    """Every part's kept read, by part name; None while a part is still unread."""
    out = {}
    for c in declaration.test_cohorts:
        path = part_path(repo, declaration.id, c.name)
        if not path.is_file():
            return None
        out[c.name] = json.loads(gzip.decompress(path.read_bytes()))
    return out


def gather_facts(
    repo: Path,
    declaration: Declaration,
    cohort_folders: Mapping[str, Path],
    part: str | None = None,
) -> ProtocolFacts:
    """What git and the file system say about ``declaration`` (see :class:`ProtocolFacts`);
    with ``part``, the looks and results are those of that part."""
    assert declaration.path is not None
    history = file_history(repo, declaration.path)
    earlier: dict[int, str] = {}
    test_seeds = {c.seed for c in declaration.test_cohorts}
    declared_at = history[0].committed_at if history else None
    for other_path in sorted((repo / DECLARATIONS_DIR).glob("*.toml")):
        if other_path.resolve() == declaration.path.resolve():
            continue
        try:
            other = load_declaration(other_path)
        except DeclarationError:  # a broken other declaration does not block this one
            continue
        other_hist = file_history(repo, other_path)
        if other_hist and (declared_at is None or other_hist[0].committed_at <= declared_at):
            for c in other.test_cohorts:
                if c.seed in test_seeds:
                    earlier[c.seed] = other.id
    md, js = _results_paths(repo, declaration.id)
    known = is_ancestor_of_head(repo, declaration.written_at_commit)
    return ProtocolFacts(
        declared_at=declared_at,
        declaration_edits=max(len(history) - 1, 0),
        uncommitted=is_uncommitted(repo, declaration.path),
        frozen_changes=tuple(
            changed_paths(repo, declaration.written_at_commit, declaration.frozen_paths)
            if known
            else ()
        ),
        results_exist=md.exists()
        or js.exists()
        or (part is not None and part_path(repo, declaration.id, part).exists()),
        earlier_looks=sum(
            look.declaration == declaration.id and (part is None or part in look.test_cohorts)
            for look in read_looks(repo / LOOKS_LOG)
        ),
        stamps={
            name: stamp
            for name, folder in cohort_folders.items()
            if (stamp := read_cohort_stamp(folder)) is not None
        },
        seeds_declared_before=earlier,
        written_at_known=known,
    )


def open_evaluation(
    repo: Path,
    declaration_path: Path,
    cohort_folders: Mapping[str, Path],
    *,
    repeat_reason: str | None = None,
    part: str | None = None,
) -> Clearance:
    """Check everything the protocol requires before test data is touched.

    Parameters
    ----------
    repo
        The repository root (holding ``docs/evaluation``).
    declaration_path
        The declaration file.
    cohort_folders
        Test cohort name (as declared) -> its folder.
    repeat_reason
        Why a declaration that was already looked at is looked at again (recorded).
    part
        For a declaration in parts: the one test cohort this run reads (``cohort_folders``
        then names it alone).

    Raises
    ------
    DeclarationError
        The declaration is invalid.
    ProtocolError
        Any rule is broken, with every reason, one per line.
    """
    repo = Path(repo)
    declaration = load_declaration(declaration_path)
    declared = {c.name for c in declaration.test_cohorts}
    if part is not None:
        declared = {part}
    if set(cohort_folders) != declared:
        raise ProtocolError(
            f"test cohorts given {sorted(cohort_folders)} are not the declared {sorted(declared)}"
        )
    facts = gather_facts(repo, declaration, cohort_folders, part)
    problems = clearance_problems(declaration, facts, repeat_reason=repeat_reason, part=part)
    problems += log_rewrites(repo, repo / LOOKS_LOG)
    if problems:
        raise ProtocolError(f"evaluation of {declaration.id} refused:\n- " + "\n- ".join(problems))
    history = file_history(repo, declaration.path or declaration_path)
    return Clearance(
        repo=repo,
        declaration=declaration,
        declaration_commit=history[0],
        head=head(repo),
        cohort_folders=dict(cohort_folders),
        reason=repeat_reason or "",
    )


def record_look(
    clearance: Clearance, *, who: str, command: str, computed: str, at: datetime | None = None
) -> Look:
    """Append the look to ``docs/evaluation/looks.jsonl`` (call it before reading test data,
    so a run that fails half-way is logged too)."""
    look = Look(
        at=(at or datetime.now(UTC)).isoformat(),
        who=who,
        command=command,
        declaration=clearance.declaration.id,
        test_cohorts=sorted(clearance.cohort_folders),
        computed=computed,
        commit=clearance.head.sha,
        reason=clearance.reason,
    )
    append_look(clearance.repo / LOOKS_LOG, look)
    return look


def write_results(
    clearance: Clearance,
    estimates: Mapping[str, Estimate],
    *,
    command: str,
    at: datetime | None = None,
    extra: Mapping[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write ``docs/evaluation/results/<id>.md`` and ``.json`` (never over existing ones).

    Raises
    ------
    ProtocolError
        Results for this declaration already exist.
    ValueError
        A declared metric is missing from ``estimates``.
    """
    d = clearance.declaration
    payload = results_payload(
        d,
        estimates,
        declaration_commit=clearance.declaration_commit.sha,
        declared_at=clearance.declaration_commit.committed_at,
        evaluated_at_commit=clearance.head.sha,
        evaluated_at=at or datetime.now(UTC),
        command=command,
        extra=extra,
    )
    if d.path is not None:
        payload["declaration"]["path"] = _relative(clearance.repo, d.path)
    md_path, json_path = _results_paths(clearance.repo, d.id)
    md_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with json_path.open("x", encoding="utf-8") as fh:
            fh.write(json.dumps(payload, indent=1, sort_keys=False) + "\n")
        with md_path.open("x", encoding="utf-8") as fh:
            fh.write(results_markdown(d, estimates, payload))
    except FileExistsError as err:
        raise ProtocolError(
            f"results of {d.id} already exist ({err.filename}): each declaration is evaluated once"
        ) from err
    return md_path, json_path
