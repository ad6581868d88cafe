"""The TimescaleDB path, for real: the migrations against a WASM PostgreSQL 17 with
TimescaleDB 2.23 (PGlite, served over the wire protocol by tools/pglite).

The harness is a test tool, never the production database: one shared session, no background
jobs (policies are registered but never run), COPY unsupported. See tools/pglite/server.mjs.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from core.db import migrate
from core.db.migrate import Flavour, discover, recorded_flavour
from core.db.scores import cohort_daily, upsert_score
from core.db.scores import patient_score_rows as patient_scores
from schemas import TimepointScore, pseudonymise, score_event_id
from tests.conftest import REPO

pytestmark = [pytest.mark.integration, pytest.mark.timescale]

HARNESS = REPO / "tools" / "pglite"


@pytest.fixture(scope="module")
def timescale_dsn() -> Iterator[str]:
    assert (HARNESS / "node_modules").is_dir(), (
        "the TimescaleDB harness is not installed: run `bash scripts/bootstrap.sh` "
        "(npm ci --prefix tools/pglite)"
    )
    proc = subprocess.Popen(
        ["node", str(HARNESS / "server.mjs"), "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith("READY "), f"harness did not start: {line}{proc.stderr.read()}"  # type: ignore[union-attr]
        yield f"postgresql://postgres:postgres@127.0.0.1:{int(line.split()[1])}/postgres"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture(scope="module")
def conn(timescale_dsn: str) -> Iterator[psycopg.Connection]:
    # The harness shares one session among connections, so no auto-prepared statements; and
    # one connection for the module (a reconnect right after a close was once seen to race
    # the harness's session reset).
    with psycopg.connect(timescale_dsn, autocommit=True, prepare_threshold=None) as c:
        yield c


def test_migrations_create_hypertables_and_the_continuous_aggregate(
    conn: psycopg.Connection,
) -> None:
    first = migrate(conn)
    assert first.flavour == Flavour.TIMESCALE, first.reason
    assert "community" in first.reason
    assert first.applied == [m.filename for m in discover() if m.flavour in ("common", "timescale")]
    assert "0002_timeseries.timescale.sql" in first.applied
    again = migrate(conn)
    assert again.applied == [] and again.flavour == Flavour.TIMESCALE
    assert recorded_flavour(conn) == Flavour.TIMESCALE

    hypertables = {
        r[0]
        for r in conn.execute(
            "SELECT hypertable_name FROM timescaledb_information.hypertables"
        ).fetchall()
    }
    assert {"timepoint_scores", "tumour_measurements"} <= hypertables
    compressed = {
        r[0]
        for r in conn.execute(
            "SELECT hypertable_name FROM timescaledb_information.hypertables "
            "WHERE compression_enabled"
        ).fetchall()
    }
    assert {"timepoint_scores", "tumour_measurements"} <= compressed
    caggs = {
        r[0]
        for r in conn.execute(
            "SELECT view_name FROM timescaledb_information.continuous_aggregates"
        ).fetchall()
    }
    assert caggs == {"cohort_daily"}
    jobs = {
        r[0] for r in conn.execute("SELECT proc_name FROM timescaledb_information.jobs").fetchall()
    }
    assert {"policy_compression", "policy_refresh_continuous_aggregate"} <= jobs


def test_scores_upsert_into_the_hypertable_and_aggregate_daily(conn: psycopg.Connection) -> None:
    patient = pseudonymise(str(uuid.uuid4()), "timescale-test-key-0123456789")
    t0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
    migrate(conn)
    for day in range(3):
        src = uuid.uuid4()
        for _ in range(2):  # redelivered: still one row
            score = TimepointScore(
                event_id=score_event_id(src, "tumour_volume_ml", "burden", "1"),
                patient=patient,
                occurred_at=t0 + timedelta(days=day),
                source_event_id=src,
                score_name="tumour_volume_ml",
                value=10.0 + day,
                unit="ml",
                model_name="burden",
                model_version="1",
            )
            with conn.transaction():
                upsert_score(conn, score)
    rows = patient_scores(conn, patient)
    assert [r["value"] for r in rows] == [10.0, 11.0, 12.0]
    chunks = conn.execute(
        "SELECT count(*) FROM timescaledb_information.chunks "
        "WHERE hypertable_name = 'timepoint_scores'"
    ).fetchone()[0]
    assert chunks >= 1

    # real-time aggregation answers before any refresh; then materialise explicitly,
    # since the harness runs no background jobs
    daily = [
        d
        for d in cohort_daily(conn, t0 - timedelta(days=1))
        if d["score_name"] == "tumour_volume_ml"
    ]
    assert [d["n_scores"] for d in daily] == [1, 1, 1]
    conn.execute(
        "CALL refresh_continuous_aggregate('cohort_daily', %s, %s)",
        (t0 - timedelta(days=1), t0 + timedelta(days=5)),
    )
    daily = [
        d
        for d in cohort_daily(conn, t0 - timedelta(days=1))
        if d["score_name"] == "tumour_volume_ml"
    ]
    assert [d["mean_value"] for d in daily] == [10.0, 11.0, 12.0]

    # compression of a chunk keeps the rows readable and upsertable
    conn.execute("SELECT compress_chunk(c, true) FROM show_chunks('timepoint_scores') c")
    assert [r["value"] for r in patient_scores(conn, patient)] == [10.0, 11.0, 12.0]
