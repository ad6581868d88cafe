"""Migration files are well formed: numbered, paired by flavour, never half a pair."""

from __future__ import annotations

from core.db.migrate import discover


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
