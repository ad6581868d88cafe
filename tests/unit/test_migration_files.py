"""Migration files are well formed: numbered, paired by flavour, never half a pair."""

from __future__ import annotations

from dataclasses import replace

import pytest

from core.db.migrate import (
    AppliedMigration,
    Migration,
    MigrationMismatchError,
    check_applied,
    discover,
)


def test_migrations_are_ordered_and_paired() -> None:
    migrations = discover()
    versions = sorted({m.version for m in migrations})
    assert versions == list(range(1, len(versions) + 1)), "versions must be contiguous from 1"
    for v in versions:
        flavours = {m.flavour for m in migrations if m.version == v}
        assert flavours in ({"common"}, {"timescale", "plain"})


def test_both_flavours_define_the_cohort_summary() -> None:
    by_name = {m.filename: m.sql for m in discover()}
    for name, sql in by_name.items():
        if name.startswith("0002"):
            assert "cohort_daily" in sql
            for column in ("n_scores", "mean_value", "min_value", "max_value"):
                assert column in sql, f"{name} lacks {column}"


def _applied(files: list[Migration]) -> list[AppliedMigration]:
    return [AppliedMigration(m.version, m.filename, m.checksum) for m in files]


def _plain() -> list[Migration]:
    return [m for m in discover() if m.flavour in ("common", "plain")]


def test_applied_migrations_matching_their_files_pass() -> None:
    files = _plain()
    check_applied(_applied(files), files)
    check_applied(_applied(files[:3]), files)  # pending ones are not a mismatch


def test_an_edited_applied_migration_is_refused_by_name() -> None:
    files = _plain()
    edited = replace(files[1], sql=files[1].sql + "\n-- an afterthought\n")
    with pytest.raises(MigrationMismatchError, match=f"{files[1].filename} was changed"):
        check_applied(_applied(files), [files[0], edited, *files[2:]])


def test_a_renamed_applied_migration_is_refused_not_applied_again() -> None:
    files = _plain()
    moved = replace(files[2], version=len(files) + 5)  # renamed to an unused number
    with pytest.raises(MigrationMismatchError) as info:
        check_applied(_applied(files), [*files[:2], *files[3:], moved])
    assert f"{files[2].filename} was applied and is now named {moved.filename}" in str(info.value)
    assert isinstance(info.value, RuntimeError)  # older callers catching RuntimeError still do


def test_a_removed_applied_migration_is_refused_by_name() -> None:
    files = _plain()
    with pytest.raises(MigrationMismatchError, match=f"{files[-1].filename} was applied and its"):
        check_applied(_applied(files), files[:-1])
