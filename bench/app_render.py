"""Render benchmark of the monitoring app: 1,000 patients x 10 timepoints on a private database.

``python -m bench.app_render [--patients 1000] [--timepoints 10] [--repeat 5]``

Starts a private PostgreSQL (no Kafka), migrates, seeds the virtual clinic's story, then times:
the bare SQL of the cohort and timeline reads, the same through the core layer's queries
(rows to dicts), and a full page run with Streamlit's AppTest (cold cache), reporting ratios.
Budget: each page under 2 s.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics
import time
from pathlib import Path

from core.db import connect, migrate
from irtmon.stack import postgres
from irtmon.stack.private import private_settings

REPO = Path(__file__).resolve().parents[1]


def _t(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=1000)
    ap.add_argument("--timepoints", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--keep", action="store_true", help="leave the private database running")
    args = ap.parse_args()

    state = REPO / ".irtmon" / "bench-stacks" / f"app-render-{os.getpid()}"
    settings = private_settings(state, REPO / ".irtmon" / "cache")
    postgres.start(settings)
    try:
        with connect(settings, autocommit=True) as conn:
            migrate(conn, settings.timescaledb)
        from core.db import alerts, audit, events, scores
        from irtmon.seed import seed_story, seed_users

        t0 = time.perf_counter()
        with connect(settings) as conn:
            summary = seed_story(
                conn, args.patients, n_timepoints=args.timepoints, cohorts=("default",)
            )
        seed_s = time.perf_counter() - t0
        with connect(settings, autocommit=True) as conn:
            seed_users(conn, [("bench", "admin", "bench-password", [])])
            conn.execute("ANALYZE")
            counts = {
                t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in (
                    "patients",
                    "timepoint_scores",
                    "tumour_measurements",
                    "treatment_events",
                    "alerts",
                )
            }
            patient = summary.patients[len(summary.patients) // 2]

            timeline_fns = tuple(
                functools.partial(fn, cohorts=None)  # the admin's view: every cohort
                for fn in (
                    scores.patient_scores_with_source,
                    scores.patient_burden,
                    events.patient_treatments,
                    alerts.patient_alerts,
                    audit.alert_actions,
                )
            )
            cohort_sql = _record(conn, scores.cohort_overview, None)
            timeline_sql = [q for fn in timeline_fns for q in _record(conn, fn, patient)]

            def bare(statements: list[tuple]) -> None:
                for sql, params in statements:  # same SQL and parameters, tuple rows
                    with conn.cursor() as cur:
                        cur.execute(sql, params)
                        cur.fetchall()

            def bare_cohort() -> None:
                bare(cohort_sql)

            def bare_timeline() -> None:
                bare(timeline_sql)

            def q_cohort() -> None:
                scores.cohort_overview(conn, None)

            def q_timeline() -> None:
                for fn in timeline_fns:
                    fn(conn, patient)

            timing = {
                "sql_cohort_s": _t(bare_cohort, args.repeat),
                "queries_cohort_s": _t(q_cohort, args.repeat),
                "sql_timeline_s": _t(bare_timeline, args.repeat),
                "queries_timeline_s": _t(q_timeline, args.repeat),
            }
        os.environ["IRTMON_DATABASE_URL"] = settings.dsn
        import streamlit as st
        from streamlit.testing.v1 import AppTest

        from monitoring_app import data

        data.settings.clear()  # the app reads its settings once

        def page(path: str | None) -> float:
            st.cache_data.clear()  # cold: the page reads the database
            at = AppTest.from_file(
                str(REPO / "monitoring_app" / "streamlit_app.py"), default_timeout=60
            )
            at.run()
            at.text_input(key="login_user").input("bench")
            at.text_input(key="login_password").input("bench-password")
            at.button[0].click().run()
            if path is None:
                st.cache_data.clear()
                t = time.perf_counter()
                at.run()
            else:
                at.session_state["irtmon_patient"] = patient
                t = time.perf_counter()
                at.switch_page(path).run()
            elapsed = time.perf_counter() - t
            if at.exception:
                raise RuntimeError(str(at.exception))
            return elapsed

        page(None)  # warm imports
        timing["page_cohort_s"] = statistics.median(page(None) for _ in range(args.repeat))
        timing["page_timeline_s"] = statistics.median(
            page("app_pages/timeline.py") for _ in range(args.repeat)
        )
        report = {
            "patients": args.patients,
            "timepoints": args.timepoints,
            "rows": counts,
            "seed_s": round(seed_s, 2),
            **{k: round(v, 4) for k, v in timing.items()},
            "ratio_queries_to_sql_cohort": round(
                timing["queries_cohort_s"] / timing["sql_cohort_s"], 2
            ),
            "ratio_page_to_sql_cohort": round(timing["page_cohort_s"] / timing["sql_cohort_s"], 1),
            "ratio_queries_to_sql_timeline": round(
                timing["queries_timeline_s"] / timing["sql_timeline_s"], 2
            ),
            "ratio_page_to_sql_timeline": round(
                timing["page_timeline_s"] / timing["sql_timeline_s"], 1
            ),
            "budget_s": 2.0,
            "within_budget": timing["page_cohort_s"] < 2.0 and timing["page_timeline_s"] < 2.0,
        }
        print(json.dumps(report, indent=1))
    finally:
        if not args.keep:
            postgres.stop(settings)
            shutil.rmtree(state, ignore_errors=True)


def _record(conn, fn, *args) -> list[tuple]:
    """The (sql, params) a query function sends, captured with a recording cursor."""
    import psycopg

    sent: list[tuple] = []

    class Recording(psycopg.Cursor):
        def execute(self, query, params=None, **kw):
            sent.append((query, params))
            return super().execute(query, params, **kw)

    old = conn.cursor_factory
    conn.cursor_factory = Recording
    try:
        fn(conn, *args)
    finally:
        conn.cursor_factory = old
    return sent


if __name__ == "__main__":
    main()
