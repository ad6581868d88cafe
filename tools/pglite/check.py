"""Smoke check for the PGlite + TimescaleDB wire-protocol harness.

Starts tools/pglite/server.mjs on a free port, runs a list of checks with
psycopg 3 and prints OK/FAIL per check, then stops the server.

    npm ci --prefix tools/pglite
    .venv/bin/python tools/pglite/check.py            # start own server
    .venv/bin/python tools/pglite/check.py --port N   # use a running server
"""

from __future__ import annotations

import argparse
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
import traceback

import psycopg

HERE = pathlib.Path(__file__).resolve().parent
RESULTS: list[tuple[str, bool, str]] = []


def dsn(port: int) -> str:
    # user/password/dbname are ignored by PGlite (session is always postgres@template1),
    # but libpq insists on sending *a* password. sslmode=disable is required: the
    # socket server does not answer the SSLRequest, so sslmode=prefer hangs.
    return f"postgresql://postgres:postgres@127.0.0.1:{port}/postgres?sslmode=disable"


def connect(port: int, **kw) -> psycopg.Connection:
    kw.setdefault("autocommit", True)
    kw.setdefault("connect_timeout", 10)
    # Server-side prepared statements live in the ONE shared session, so two
    # psycopg connections would both create "_pg3_0": disable auto-prepare.
    kw.setdefault("prepare_threshold", None)
    return psycopg.connect(dsn(port), **kw)


def check(name: str, timeout: float = 60.0):
    """Decorator: run fn in a thread with a timeout and record the result."""

    def deco(fn):
        box: dict = {}

        def runner():
            try:
                box["detail"] = fn()
                box["ok"] = True
            except Exception as exc:  # noqa: BLE001
                box["ok"] = False
                box["detail"] = f"{type(exc).__module__}.{type(exc).__name__}: {exc}".strip()
                if os.environ.get("CHECK_TRACE"):
                    traceback.print_exc()

        th = threading.Thread(target=runner, daemon=True)
        t0 = time.perf_counter()
        th.start()
        th.join(timeout)
        dt = time.perf_counter() - t0
        if th.is_alive():
            ok, detail = False, f"TIMEOUT after {timeout}s (hung)"
        else:
            ok, detail = box["ok"], box.get("detail")
        RESULTS.append((name, ok, str(detail)))
        print(f"[{'OK ' if ok else 'FAIL'}] {name} ({dt*1000:.0f} ms): {detail}", flush=True)
        return fn

    return deco


def rss_kib(pid: int) -> int:
    try:
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return -1


def start_server(port: int = 0, data_dir: str | None = None):
    env = dict(os.environ)
    if data_dir:
        env["PGLITE_DATA_DIR"] = data_dir
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        ["node", str(HERE / "server.mjs"), str(port)],
        stdout=subprocess.PIPE,
        stderr=None,
        text=True,
        env=env,
    )
    line = proc.stdout.readline()
    dt = time.perf_counter() - t0
    if not line.startswith("READY "):
        proc.kill()
        raise RuntimeError(f"server did not start: {line!r}")
    return proc, int(line.split()[1]), dt


def stop_server(proc: subprocess.Popen) -> tuple[int, float]:
    t0 = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = proc.wait()
    return rc, time.perf_counter() - t0


def run_checks(port: int, proc: subprocess.Popen | None) -> None:
    c = connect(port)

    @check("connect + version")
    def _():
        return c.execute("select version(), current_user, current_database(), "
                         "current_setting('TimeZone'), current_setting('server_version')").fetchone()

    @check("pg_available_extensions")
    def _():
        return c.execute("SELECT name, default_version, installed_version FROM pg_available_extensions "
                         "WHERE name='timescaledb'").fetchall()

    @check("CREATE EXTENSION timescaledb")
    def _():
        c.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        c.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")  # idempotent
        return c.execute("select extversion from pg_extension where extname='timescaledb'").fetchone()

    @check("timescaledb.license")
    def _():
        return c.execute("select current_setting('timescaledb.license', true)").fetchone()

    @check("create table + unique index")
    def _():
        c.execute("DROP TABLE IF EXISTS t CASCADE")
        c.execute("CREATE TABLE t (ts timestamptz NOT NULL, patient text NOT NULL, value double precision)")
        c.execute("CREATE UNIQUE INDEX t_patient_ts ON t (patient, ts)")

    @check("create_hypertable by_range")
    def _():
        return c.execute("SELECT create_hypertable('t', by_range('ts', INTERVAL '1 day'))").fetchone()

    @check("create_hypertable old signature")
    def _():
        c.execute("DROP TABLE IF EXISTS t_old CASCADE")
        c.execute("CREATE TABLE t_old (ts timestamptz NOT NULL, v int)")
        return c.execute("SELECT create_hypertable('t_old', 'ts', chunk_time_interval => INTERVAL '7 days', "
                         "if_not_exists => true)").fetchone()

    @check("INSERT ... ON CONFLICT DO UPDATE (params)")
    def _():
        sql = ("INSERT INTO t (ts, patient, value) VALUES (%s, %s, %s) "
               "ON CONFLICT (patient, ts) DO UPDATE SET value = EXCLUDED.value")
        with c.cursor() as cur:
            rows = [(f"2024-01-{d:02d} {h:02d}:00+00", p, float(d * h)) for d in range(1, 11)
                    for h in range(0, 24, 6) for p in ("p1", "p2")]
            cur.executemany(sql, rows)
            cur.execute(sql, ("2024-01-01 00:00+00", "p1", 42.0))  # conflict -> update
        return c.execute("select count(*), (select value from t where patient='p1' and "
                         "ts='2024-01-01 00:00+00') from t").fetchone()

    @check("executemany 5000 rows timing")
    def _():
        c.execute("CREATE TABLE IF NOT EXISTS bulk (ts timestamptz NOT NULL, v int)")
        t0 = time.perf_counter()
        with c.cursor() as cur:
            cur.executemany("INSERT INTO bulk VALUES (now() - make_interval(secs => %s), %s)",
                            [(i, i) for i in range(5000)])
        return f"{time.perf_counter()-t0:.2f}s, count={c.execute('select count(*) from bulk').fetchone()[0]}"

    @check("time_bucket / first / last")
    def _():
        return c.execute("SELECT time_bucket('1 day', ts) b, patient, avg(value), first(value, ts), "
                         "last(value, ts) FROM t GROUP BY b, patient ORDER BY b, patient LIMIT 2").fetchall()

    @check("time_bucket_gapfill + locf")
    def _():
        return c.execute("SELECT time_bucket_gapfill('12 hours', ts) b, locf(avg(value)) FROM t "
                         "WHERE patient='p1' AND ts >= '2024-01-01' AND ts < '2024-01-02 12:00+00' "
                         "GROUP BY b ORDER BY b").fetchall()

    @check("ALTER TABLE SET timescaledb.compress")
    def _():
        c.execute("ALTER TABLE t SET (timescaledb.compress, timescaledb.compress_segmentby = 'patient', "
                  "timescaledb.compress_orderby = 'ts DESC')")

    @check("add_compression_policy")
    def _():
        return c.execute("SELECT add_compression_policy('t', INTERVAL '7 days')").fetchone()

    @check("compress_chunk + query compressed + decompress")
    def _():
        n = c.execute("SELECT count(compress_chunk(ch)) FROM show_chunks('t', older_than => "
                      "'2024-01-05'::timestamptz) ch").fetchone()[0]
        st = c.execute("SELECT total_chunks, number_compressed_chunks FROM "
                       "hypertable_compression_stats('t')").fetchone()
        cnt = c.execute("SELECT count(*), sum(value) FROM t").fetchone()
        # upsert into a compressed chunk
        c.execute("INSERT INTO t VALUES ('2024-01-01 00:00+00','p1',43) ON CONFLICT (patient, ts) "
                  "DO UPDATE SET value = EXCLUDED.value")
        v = c.execute("select value from t where patient='p1' and ts='2024-01-01 00:00+00'").fetchone()
        d = c.execute("SELECT count(decompress_chunk(ch, true)) FROM show_chunks('t') ch").fetchone()[0]
        return f"compressed={n} stats={st} count/sum={cnt} upsert-into-compressed={v} decompressed={d}"

    @check("continuous aggregate WITH NO DATA")
    def _():
        c.execute("CREATE MATERIALIZED VIEW t_daily WITH (timescaledb.continuous) AS "
                  "SELECT time_bucket('1 day', ts) AS bucket, patient, avg(value) AS avg_v, count(*) AS n "
                  "FROM t GROUP BY bucket, patient WITH NO DATA")

    @check("CALL refresh_continuous_aggregate")
    def _():
        c.execute("CALL refresh_continuous_aggregate('t_daily', '2024-01-01', '2024-02-01')")
        c.execute("CALL refresh_continuous_aggregate('t_daily', NULL, NULL)")
        return c.execute("SELECT count(*), sum(n) FROM t_daily").fetchone()

    @check("refresh_continuous_aggregate with params")
    def _():
        c.execute("CALL refresh_continuous_aggregate('t_daily', %s::timestamptz, %s::timestamptz)",
                  ("2024-01-01", "2024-02-01"))

    @check("add_continuous_aggregate_policy")
    def _():
        return c.execute("SELECT add_continuous_aggregate_policy('t_daily', start_offset => INTERVAL '30 days', "
                         "end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '1 hour')").fetchone()

    @check("add_retention_policy")
    def _():
        return c.execute("SELECT add_retention_policy('t', INTERVAL '365 days')").fetchone()

    @check("timescaledb_information.hypertables")
    def _():
        return c.execute("SELECT hypertable_name, num_chunks, compression_enabled FROM "
                         "timescaledb_information.hypertables ORDER BY 1").fetchall()

    @check("timescaledb_information.continuous_aggregates")
    def _():
        return c.execute("SELECT view_name, materialized_only, materialization_hypertable_name FROM "
                         "timescaledb_information.continuous_aggregates").fetchall()

    @check("timescaledb_information.jobs")
    def _():
        return c.execute("SELECT job_id, proc_name, hypertable_name, scheduled FROM "
                         "timescaledb_information.jobs ORDER BY 1").fetchall()

    @check("run_job (policy run by hand)")
    def _():
        jid = c.execute("SELECT job_id FROM timescaledb_information.jobs WHERE proc_name="
                        "'policy_refresh_continuous_aggregate'").fetchone()[0]
        c.execute(f"CALL run_job({jid})")
        return c.execute("SELECT job_id, total_runs, last_run_status FROM "
                         "timescaledb_information.job_stats ORDER BY 1").fetchall()

    @check("drop_chunks")
    def _():
        c.execute("CREATE TABLE dc (ts timestamptz NOT NULL, v int)")
        c.execute("SELECT create_hypertable('dc', by_range('ts'))")
        c.execute("INSERT INTO dc VALUES ('2020-01-01', 1), (now(), 2)")
        return c.execute("SELECT count(*) FROM drop_chunks('dc', older_than => INTERVAL '1 year')").fetchone()

    @check("DO $$ ... $$ block")
    def _():
        c.execute("DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_tables WHERE tablename='do_t') THEN "
                  "CREATE TABLE do_t (x int); END IF; INSERT INTO do_t VALUES (1); END $$")
        return c.execute("select count(*) from do_t").fetchone()

    @check("pg_advisory_lock / unlock / try_lock")
    def _():
        c.execute("SELECT pg_advisory_lock(12345)")
        c2 = connect(port)
        try:
            # same backend session => re-entrant, the second client is NOT blocked
            other = c2.execute("SELECT pg_try_advisory_lock(12345)").fetchone()[0]
            if other:
                c2.execute("SELECT pg_advisory_unlock(12345)")
        finally:
            c2.close()
        u = c.execute("SELECT pg_advisory_unlock(12345)").fetchone()[0]
        x = c.execute("SELECT pg_advisory_xact_lock(1)").fetchone()
        return f"try_lock from 2nd connection while held={other}, unlock={u}, xact_lock={x}"

    @check("multi-statement string (no params)")
    def _():
        c.execute("""
            CREATE TABLE ms1 (id int PRIMARY KEY, ts timestamptz NOT NULL DEFAULT now());
            CREATE INDEX ms1_ts ON ms1 (ts);
            INSERT INTO ms1 (id) VALUES (1), (2);
            -- a comment
            COMMENT ON TABLE ms1 IS 'x;y';
            DO $$ BEGIN PERFORM 1; END $$;
            SELECT count(*) FROM ms1;
        """)
        return c.execute("select count(*) from ms1").fetchone()

    @check("multi-statement string with error in the middle")
    def _():
        try:
            c.execute("CREATE TABLE ms2 (x int); SELECT 1/0; CREATE TABLE ms3 (x int);")
        except psycopg.Error as exc:
            err = f"{type(exc).__name__}: {exc}"
        else:
            err = "no error?!"
        # simple-query multi statement runs as one implicit transaction -> ms2 rolled back
        r = c.execute("select to_regclass('ms2'), to_regclass('ms3'), "
                      "(select count(*) from ms1)").fetchone()
        return f"{err} | afterwards ms2,ms3,ms1={r}"

    @check("multi-statement with params (expected to fail in psycopg)")
    def _():
        try:
            c.execute("SELECT %s; SELECT %s", (1, 2))
        except psycopg.Error as exc:
            return f"fails as expected: {type(exc).__name__}: {exc}"
        return "worked"

    @check("statement error keeps server + connection alive")
    def _():
        errs = []
        for bad in ("SELECT * FROM no_such_table", "SELECT 1/0", "INSERT INTO ms1 (id) VALUES (1)"):
            try:
                c.execute(bad)
            except psycopg.Error as exc:
                errs.append(f"{type(exc).__name__}({exc.sqlstate})")
        ok = c.execute("select 1").fetchone()
        return f"errors={errs}, after={ok}, conn.closed={c.closed}, server alive={proc is None or proc.poll() is None}"

    @check("error with params (extended protocol) keeps connection alive")
    def _():
        try:
            c.execute("SELECT %s::int / 0", (1,))
        except psycopg.Error as exc:
            e = f"{type(exc).__name__}"
        return f"{e}, after={c.execute('select %s::int', (7,)).fetchone()}"

    @check("two connections at once")
    def _():
        a, b = connect(port), connect(port)
        try:
            out = []
            for i in range(5):
                out.append(a.execute("select %s::int", (i,)).fetchone()[0])
                out.append(b.execute("select %s::int", (i * 10,)).fetchone()[0])
            ta = a.execute("select count(*) from t").fetchone()[0]
            tb = b.execute("select count(*) from t").fetchone()[0]
            return f"interleaved={out} counts={ta},{tb}"
        finally:
            a.close()
            b.close()

    @check("two connections, concurrent threads (200 queries each)")
    def _():
        errs = []

        def worker(k):
            try:
                with connect(port) as cc:
                    for i in range(200):
                        v = cc.execute("select %s::int, %s::text", (i, f"w{k}")).fetchone()
                        assert v == (i, f"w{k}"), v
            except Exception as exc:  # noqa: BLE001
                errs.append(f"{type(exc).__name__}: {exc}")

        ths = [threading.Thread(target=worker, args=(k,)) for k in range(2)]
        [x.start() for x in ths]
        [x.join(60) for x in ths]
        if errs:
            raise RuntimeError("; ".join(errs))
        return "ok"

    @check("4 connections x 150 mixed queries/transactions in threads, results verified")
    def _():
        errs = []
        for k in range(4):
            c.execute(f"CREATE TABLE IF NOT EXISTS stress_{k} (i int PRIMARY KEY, ts timestamptz NOT NULL)")

        def worker(k):
            try:
                with connect(port) as cc:
                    for i in range(150):
                        if i % 3 == 0:
                            v = cc.execute("select %s::int, %s::text, repeat('x', %s)",
                                           (i, f"w{k}", (i * 37) % 500)).fetchone()
                            assert v == (i, f"w{k}", "x" * ((i * 37) % 500)), v
                        elif i % 3 == 1:
                            with cc.transaction():
                                cc.execute(f"INSERT INTO stress_{k} VALUES (%s, now())", (i,))
                                n = cc.execute(f"select count(*) from stress_{k}").fetchone()[0]
                                assert n == (i + 2) // 3, (k, i, n)
                        else:
                            v = cc.execute(f"select {k} * 1000 + %s", (i,)).fetchone()[0]
                            assert v == k * 1000 + i, v
            except Exception as exc:  # noqa: BLE001
                errs.append(f"{type(exc).__name__}: {exc}")

        ths = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(4)]
        [x.start() for x in ths]
        [x.join(60) for x in ths]
        if any(x.is_alive() for x in ths):
            raise RuntimeError("worker hung")
        if errs:
            raise RuntimeError("; ".join(errs))
        return "ok"

    @check("ROLLBACK TO SAVEPOINT lets other connections into an open transaction")
    def _():
        a, b = connect(port), connect(port)
        try:
            c.execute("CREATE TABLE sp (x int)")
            a.execute("BEGIN")
            a.execute("INSERT INTO sp VALUES (1)")
            a.execute("SAVEPOINT s1")
            a.execute("ROLLBACK TO SAVEPOINT s1")
            box = {}
            th = threading.Thread(target=lambda: box.update(
                r=b.execute("INSERT INTO sp VALUES (2) RETURNING x").fetchone()), daemon=True)
            th.start()
            th.join(2)
            b_blocked = th.is_alive()
            a.execute("ROLLBACK")
            th.join(5)
            n = c.execute("select count(*) from sp").fetchone()[0]
            return (f"B blocked={b_blocked}; rows in sp after A's ROLLBACK={n} "
                    f"({'B insert lost: ran inside A tx' if n == 0 else 'B insert kept'})")
        finally:
            a.close()
            b.close()

    @check("session state persists while another client is connected")
    def _():
        a = connect(port)
        try:
            a.execute("SET TimeZone = 'Europe/Paris'")
            a.execute("CREATE TEMP TABLE tmp_keep (x int)")
        finally:
            a.close()
        time.sleep(0.1)
        return (c.execute("show TimeZone").fetchone()[0], c.execute("select to_regclass('tmp_keep')").fetchone()[0])

    @check("session is reset (DISCARD ALL) when the last client disconnects")
    def _():
        c.execute("RESET TimeZone")
        c.execute("SET application_name = 'before_reset'")
        c.execute("CREATE TEMP TABLE tmp_reset (x int)")
        c.close()
        time.sleep(0.2)
        cc = connect(port)
        try:
            return cc.execute("select current_setting('application_name'), to_regclass('tmp_reset'), "
                              "current_setting('client_min_messages'), "
                              "(select count(*) from pg_extension where extname='timescaledb')").fetchone()
        finally:
            cc.close()

    c = connect(port)  # noqa: F841 - rebinding used by the checks below

    @check("session state is shared between connections")
    def _():
        a, b = connect(port), connect(port)
        try:
            a.execute("SET application_name = 'from_a'")
            a.execute("CREATE TEMP TABLE tmp_a (x int)")
            return (f"b sees application_name={b.execute('show application_name').fetchone()[0]!r}, "
                    f"b sees temp table={b.execute('select to_regclass(%s)', ('tmp_a',)).fetchone()[0]}, "
                    f"backend pids={a.info.backend_pid},{b.info.backend_pid}")
        finally:
            a.close()
            b.close()

    @check("with conn.transaction(): commit")
    def _():
        c.execute("CREATE TABLE tx (x int)")
        with c.transaction():
            c.execute("INSERT INTO tx VALUES (1)")
            c.execute("INSERT INTO tx VALUES (%s)", (2,))
        return c.execute("select count(*) from tx").fetchone()

    @check("with conn.transaction(): rollback on exception")
    def _():
        try:
            with c.transaction():
                c.execute("INSERT INTO tx VALUES (3)")
                c.execute("SELECT 1/0")
        except psycopg.errors.DivisionByZero:
            pass
        n = c.execute("select count(*) from tx").fetchone()[0]
        assert n == 2, n
        return f"count after rollback={n}"

    @check("nested transaction (savepoint)")
    def _():
        with c.transaction():
            c.execute("INSERT INTO tx VALUES (10)")
            try:
                with c.transaction():
                    c.execute("INSERT INTO tx VALUES (11)")
                    raise RuntimeError("rollback inner")
            except RuntimeError:
                pass
        return c.execute("select array_agg(x order by x) from tx").fetchone()

    @check("transaction on conn A while conn B queries (B waits until A commits)")
    def _():
        a, b = connect(port), connect(port)
        res = {}
        try:
            a.execute("BEGIN")
            a.execute("INSERT INTO tx VALUES (100)")

            def bq():
                res["b"] = b.execute("select count(*) from tx where x=100").fetchone()[0]
                res["t"] = time.perf_counter()

            th = threading.Thread(target=bq, daemon=True)
            th.start()
            time.sleep(1.0)
            blocked = th.is_alive()
            t_commit = time.perf_counter()
            a.execute("COMMIT")
            th.join(10)
            return f"B blocked while A in tx={blocked}, B saw={res.get('b')} (after commit={res.get('t', 0) > t_commit})"
        finally:
            a.close()
            b.close()

    @check("non-autocommit connection (psycopg default)")
    def _():
        with connect(port, autocommit=False) as cc:
            cc.execute("INSERT INTO tx VALUES (200)")
            cc.commit()
            cc.execute("INSERT INTO tx VALUES (201)")
            cc.rollback()
        return c.execute("select count(*) filter (where x=200), count(*) filter (where x=201) from tx").fetchone()

    @check("connection closed mid-transaction is rolled back")
    def _():
        cc = connect(port, autocommit=False)
        cc.execute("INSERT INTO tx VALUES (300)")
        cc.close()
        time.sleep(0.3)
        return c.execute("select count(*) filter (where x=300), "
                         "(select count(*) from pg_stat_activity where state like 'idle in%%') from tx").fetchone()

    @check("EXPECTED FAIL: auto-prepare (prepare_threshold=0) across two live connections")
    def _():
        a = psycopg.connect(dsn(port), autocommit=True, prepare_threshold=0)
        b = psycopg.connect(dsn(port), autocommit=True, prepare_threshold=0)
        try:
            a.execute("select %s::int", (1,))
            b.execute("select %s::int", (2,))
            return "no clash"
        finally:
            a.close()
            b.close()

    @check("EXPECTED FAIL: auto-prepare reconnect while another client (c) stays connected")
    def _():
        a = psycopg.connect(dsn(port), autocommit=True, prepare_threshold=0)
        a.execute("select %s::int + 1", (1,))
        a.close()
        b = psycopg.connect(dsn(port), autocommit=True, prepare_threshold=0)
        try:
            b.execute("select %s::int + 2", (1,))
            return "no clash"
        finally:
            b.close()

    @check("server-side (named) cursor")
    def _():
        with c.transaction():
            with c.cursor(name="sscur") as cur:
                cur.execute("select generate_series(1, 1000)")
                return len(cur.fetchmany(100))

    @check("jsonb / arrays / timestamptz roundtrip")
    def _():
        from psycopg.types.json import Jsonb
        import datetime as dt
        now = dt.datetime(2024, 1, 1, 12, tzinfo=dt.timezone.utc)
        return c.execute("select %s::jsonb, %s::int[], %s::timestamptz",
                         (Jsonb({"a": 1}), [1, 2], now)).fetchone()

    @check("LISTEN/NOTIFY")
    def _():
        c.execute("LISTEN ch")
        c.execute("NOTIFY ch, 'hi'")
        got = [n.payload for n in c.notifies(timeout=1, stop_after=1)]
        return got

    @check("COPY ... TO STDOUT", timeout=20)
    def _():
        with c.cursor() as cur:
            with cur.copy("COPY (SELECT 1 AS a, 'x' AS b) TO STDOUT") as cp:
                return [bytes(x) for x in cp]

    @check("EXPECTED FAIL: COPY FROM STDIN (crashes PGlite; server exits 70)", timeout=20)
    def _():
        c.execute("CREATE TABLE cp (x int)")
        with c.cursor() as cur:
            with cur.copy("COPY cp FROM STDIN") as cp:
                cp.write_row((1,))
        return c.execute("select count(*) from cp").fetchone()

    time.sleep(0.5)
    if proc is not None:
        print(f"server process exit code after COPY FROM STDIN: {proc.poll()}", flush=True)

    @check("EXPECTED FAIL: server alive after COPY FROM STDIN", timeout=15)
    def _():
        with connect(port) as cc:
            return cc.execute("select 1").fetchone(), (proc is None or proc.poll() is None)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, help="use an already running server")
    args = ap.parse_args()
    proc = None
    port = args.port
    if port is None:
        proc, port, dt = start_server(0)
        time.sleep(0.2)
        print(f"server READY on port {port} after {dt:.2f}s, RSS={rss_kib(proc.pid)//1024} MiB", flush=True)
    try:
        run_checks(port, proc)
    finally:
        if proc is not None:
            print(f"RSS before stop={rss_kib(proc.pid)//1024} MiB", flush=True)
            rc, dt = stop_server(proc)
            print(f"server stopped rc={rc} in {dt:.2f}s", flush=True)
    failed = [r for r in RESULTS if not r[1]]
    print(f"\n{len(RESULTS) - len(failed)}/{len(RESULTS)} checks OK")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
