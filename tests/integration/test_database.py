"""Migrations and sinks on the real PostgreSQL server."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from core.db import connect, migrate, migration_status
from core.db.migrate import MigrationMismatchError, discover
from core.db.scores import cohort_daily, upsert_score
from core.db.scores import patient_score_rows as patient_scores
from core.settings import Settings
from irtmon.stack import postgres
from schemas import TimepointScore, pseudonymise, score_event_id

pytestmark = pytest.mark.integration

EXPECTED_TABLES = {
    "patients",
    "acquisitions",
    "treatment_events",
    "timepoint_scores",
    "tumour_measurements",
    "alerts",
    "audit_log",
    "model_registry",
    "dead_letters",
    "irtmon_schema_migrations",
}


def expected_files(flavour: str) -> list[str]:
    return [m.filename for m in discover() if m.flavour in ("common", flavour)]


def new_patient() -> str:
    return pseudonymise(str(uuid.uuid4()), "integration-test-key-0123456789")


def test_migrations_apply_twice_without_error(settings: Settings) -> None:
    # the session fixture migrated once already; twice more changes nothing
    with connect(settings, autocommit=True) as conn:
        second = migrate(conn, settings.timescaledb)
        third = migrate(conn, settings.timescaledb)
        assert second.applied == [] and third.applied == []
        assert second.flavour == third.flavour
        rows = migration_status(conn)
        assert [r[0] for r in rows] == sorted({m.version for m in discover()})
        tables = {
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            ).fetchall()
        }
        assert tables >= EXPECTED_TABLES
        assert conn.execute("SELECT to_regclass('cohort_daily')").fetchone()[0] is not None


def test_fresh_database_takes_the_servers_flavour_with_reason(settings: Settings) -> None:
    if not settings.local_postgres:
        pytest.skip("creates scratch databases on the local server")
    # the local server preloads TimescaleDB when bootstrap has installed it
    timescaledb = postgres.timescaledb_library(settings) is not None
    names = {wanted: f"scratch_{wanted}_{uuid.uuid4().hex[:8]}" for wanted in ("auto", "off")}
    with psycopg.connect(settings.dsn, autocommit=True) as admin:
        for name in names.values():
            admin.execute(f'CREATE DATABASE "{name}"')
    try:
        base = settings.dsn.rsplit("/", 1)[0]
        with psycopg.connect(f"{base}/{names['auto']}", autocommit=True) as conn:
            report = migrate(conn)
            if timescaledb:
                assert report.flavour == "timescale"
                assert "community licence" in report.reason
            else:
                assert report.flavour == "plain"
                assert "not available" in report.reason
            assert report.applied == expected_files(report.flavour)
            assert migrate(conn).applied == []
        # TimescaleDB switched off is plain, with its own reason
        with psycopg.connect(f"{base}/{names['off']}", autocommit=True) as conn:
            off = migrate(conn, "off")
            assert off.flavour == "plain" and "turned off" in off.reason
            assert off.applied == expected_files("plain")
    finally:
        with psycopg.connect(settings.dsn, autocommit=True) as admin:
            for name in names.values():
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_edited_migration_is_refused(settings: Settings) -> None:
    with connect(settings, autocommit=True) as conn:
        conn.execute("UPDATE irtmon_schema_migrations SET checksum = 'x' WHERE version = 1")
        try:
            with pytest.raises(RuntimeError, match="changed after it was applied"):
                migrate(conn)
        finally:
            real = next(m for m in discover() if m.version == 1).checksum
            conn.execute(
                "UPDATE irtmon_schema_migrations SET checksum = %s WHERE version = 1", (real,)
            )


def test_renamed_or_removed_migration_is_refused_with_its_name(settings: Settings) -> None:
    # as if 0003 had been applied as 0003_old_access.sql, and that file renamed since
    with connect(settings, autocommit=True) as conn:
        real = conn.execute(
            "SELECT filename FROM irtmon_schema_migrations WHERE version = 3"
        ).fetchone()[0]
        conn.execute(
            "UPDATE irtmon_schema_migrations SET filename = '0003_old_access.sql' WHERE version = 3"
        )
        try:
            with pytest.raises(
                MigrationMismatchError,
                match=re.escape(f"0003_old_access.sql was applied and is now named {real}"),
            ):
                migrate(conn)
            conn.execute("UPDATE irtmon_schema_migrations SET checksum = 'gone' WHERE version = 3")
            with pytest.raises(
                MigrationMismatchError,
                match=re.escape("0003_old_access.sql was applied and its file is gone"),
            ):
                migrate(conn)
        finally:
            checksum = next(m for m in discover() if m.filename == real).checksum
            conn.execute(
                "UPDATE irtmon_schema_migrations SET filename = %s, checksum = %s "
                "WHERE version = 3",
                (real, checksum),
            )
        assert migrate(conn).applied == []


def test_timepoint_score_written_and_read_back_idempotently(settings: Settings) -> None:
    patient = new_patient()
    t = datetime(2026, 2, 2, 10, tzinfo=UTC)
    src = uuid.uuid4()

    def score(version: str, value: float) -> TimepointScore:
        return TimepointScore(
            event_id=score_event_id(src, "response_probability", "response", version),
            patient=patient,
            occurred_at=t,
            source_event_id=src,
            score_name="response_probability",
            value=value,
            lower=value - 0.1,
            upper=value + 0.1,
            model_name="response",
            model_version=version,
            inputs=["1.2.3.4"],
        )

    with connect(settings) as conn:
        upsert_score(conn, score("1", 0.42))
        upsert_score(conn, score("1", 0.42))  # redelivery
        upsert_score(conn, score("2", 0.61))  # a re-score with a new version sits beside it
        conn.commit()
        rows = patient_scores(conn, patient)
    assert [(r["model_version"], r["value"]) for r in rows] == [("1", 0.42), ("2", 0.61)]
    assert rows[0]["observed_at"] == t
    assert rows[0]["inputs"] == ["1.2.3.4"]
    assert rows[0]["lower"] == pytest.approx(0.32)

    with connect(settings) as conn:
        daily = cohort_daily(conn, t - timedelta(days=1))
    mine = [
        d
        for d in daily
        if d["day"].date() == t.date() and d["score_name"] == "response_probability"
    ]
    assert mine and mine[0]["n_scores"] >= 2


def test_one_active_alert_per_patient_and_kind(db: psycopg.Connection) -> None:
    patient = new_patient()
    now = datetime.now(UTC)
    db.execute("INSERT INTO patients (pseudonym, first_seen_at) VALUES (%s, %s)", (patient, now))
    insert = (
        "INSERT INTO alerts (alert_id, patient, kind, probability, summary, recommendation, "
        "opened_at) VALUES (%s, %s, 'suspected_non_response', 0.8, 's', 'r', %s)"
    )
    db.execute(insert, (uuid.uuid4(), patient, now))
    with pytest.raises(psycopg.errors.UniqueViolation):
        db.execute(insert, (uuid.uuid4(), patient, now))


def test_alert_lifecycle_constraints(db: psycopg.Connection) -> None:
    patient = new_patient()
    now = datetime.now(UTC)
    db.execute("INSERT INTO patients (pseudonym, first_seen_at) VALUES (%s, %s)", (patient, now))
    alert = uuid.uuid4()
    db.execute(
        "INSERT INTO alerts (alert_id, patient, kind, probability, summary, recommendation, "
        "opened_at) VALUES (%s, %s, 'confirmed_progression', 0.9, 's', 'r', %s)",
        (alert, patient, now),
    )
    # dismissed needs a reason
    with pytest.raises(psycopg.errors.CheckViolation), db.transaction():
        db.execute(
            "UPDATE alerts SET status = 'dismissed', closed_at = now(), "
            "closed_by = 'dr' WHERE alert_id = %s",
            (alert,),
        )
    db.execute(
        "UPDATE alerts SET status = 'dismissed', closed_at = now(), closed_by = 'dr', "
        "close_reason = 'pseudo-progression on review' WHERE alert_id = %s",
        (alert,),
    )


def test_audit_log_is_append_only(db: psycopg.Connection) -> None:
    db.execute(
        "INSERT INTO audit_log (actor, action, entity, entity_id) "
        "VALUES ('dr.a', 'acknowledge', 'alert', 'x')"
    )
    with pytest.raises(psycopg.errors.RaiseException, match="append-only"), db.transaction():
        db.execute("UPDATE audit_log SET actor = 'someone else'")
    with pytest.raises(psycopg.errors.RaiseException, match="append-only"), db.transaction():
        db.execute("DELETE FROM audit_log")


def test_model_registry_allows_one_promoted_version(db: psycopg.Connection) -> None:
    name = f"m-{uuid.uuid4().hex[:6]}"
    sha = "0" * 64
    for version in ("1", "2"):
        db.execute(
            "INSERT INTO model_registry (name, version, sha256, path, promoted) "
            "VALUES (%s, %s, %s, '/m', %s)",
            (name, version, sha, version == "1"),
        )
    with pytest.raises(psycopg.errors.UniqueViolation):
        db.execute(
            "UPDATE model_registry SET promoted = true WHERE name = %s AND version = '2'", (name,)
        )


@pytest.mark.parametrize(
    ("group", "allowed", "refused"),
    [
        (
            "irtmon_app",
            "UPDATE alerts SET updated_at = now() WHERE false",
            "INSERT INTO timepoint_scores (event_id, patient, observed_at, source_event_id, "
            "score_name, value, model_name, model_version) VALUES (gen_random_uuid(), 'x', now(), "
            "gen_random_uuid(), 'x', 1, 'm', '1')",
        ),
        (
            "irtmon_worker",
            "SELECT count(*) FROM timepoint_scores",
            "SELECT count(*) FROM app_users",
        ),
    ],
)
def test_roles_have_least_privilege(
    settings: Settings, group: str, allowed: str, refused: str
) -> None:
    if not settings.local_postgres:
        pytest.skip("creates a login role on the local server")
    user = f"it_{group}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(settings.dsn, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{user}" LOGIN IN ROLE {group}')
    try:
        dsn = settings.dsn.replace("postgresql://irtmon@", f"postgresql://{user}@")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(allowed)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(refused)
    finally:
        with psycopg.connect(settings.dsn, autocommit=True) as admin:
            admin.execute(f'DROP ROLE "{user}"')


def test_committed_runs_a_rolled_back_transaction_again_and_nothing_else(
    settings: Settings,
) -> None:
    """A deadlock reported by the server (SQLSTATE 40P01, as TimescaleDB's compression job can
    cause) rolls the attempt back and runs it again; what the failed attempt wrote is gone, what
    the next one wrote is committed once. Any other error is raised at once, not retried."""
    from core.db.connect import committed

    table = f"committed_{uuid.uuid4().hex[:8]}"
    with connect(settings, autocommit=True) as admin:
        admin.execute(f"CREATE TABLE {table} (attempt int PRIMARY KEY)")
    try:
        calls: list[int] = []
        with connect(settings) as conn:

            def work() -> int:
                calls.append(len(calls) + 1)
                with conn.pipeline():  # as the seed writes
                    conn.execute(f"INSERT INTO {table} VALUES (%s)", (calls[-1],))
                    if len(calls) < 3:  # the server itself reports a deadlock, twice
                        conn.execute(
                            "DO $$ BEGIN RAISE EXCEPTION 'deadlock detected' "
                            "USING ERRCODE = '40P01'; END $$"
                        )
                    conn.execute(f"SELECT count(*) FROM {table}").fetchone()
                return calls[-1]

            assert committed(conn, work, backoff_s=0.01) == 3
            assert conn.execute(f"SELECT array_agg(attempt) FROM {table}").fetchone()[0] == [3]

            def fails_otherwise() -> None:
                calls.append(0)
                conn.execute("SELECT 1 / 0")

            before = len(calls)
            with pytest.raises(psycopg.errors.DivisionByZero):
                committed(conn, fails_otherwise, backoff_s=0.01)
            assert len(calls) == before + 1
            conn.rollback()

            def always_deadlocks() -> None:
                conn.execute("DO $$ BEGIN RAISE EXCEPTION 'x' USING ERRCODE = '40P01'; END $$")

            with pytest.raises(psycopg.errors.DeadlockDetected):
                committed(conn, always_deadlocks, attempts=2, backoff_s=0.01)
    finally:
        with connect(settings, autocommit=True) as admin:
            admin.execute(f"DROP TABLE {table}")
