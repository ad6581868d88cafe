"""Throughput of light score events through the stream workers into the database.

Measured: N ``TimepointScore`` events published to ``scores.timepoint`` and stored in
``timepoint_scores`` by

- **irtmon**: one `irtmon worker` process (the change-point agent: Faust ``noack_take`` batches
  of up to ``IRTMON_WORKER_BATCH_MAX`` events, parsed and dead-lettered one by one, stored in
  one transaction per batch, each patient re-evaluated once per batch, offsets committed after
  the database commit), and
- **baseline**: a plain kafka-python consumer writing the same rows with one batched upsert per
  poll (the fastest simple design, without per-event dead-lettering or ordering guarantees),

both on the same private stack (a real Kafka broker and PostgreSQL server started here), each
timed from the first publish to the last row stored. Reports events per second and the ratio.

Run: ``python -m bench.stream_throughput --events 3000``
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from kafka import KafkaConsumer

from bench._worker import running_worker
from core.db import connect, migrate
from core.publish import Publisher
from core.settings import Settings
from irtmon import stack
from irtmon.stack.private import private_settings
from schemas import TimepointScore, parse_event, pseudonymise

REPO = Path(__file__).resolve().parents[1]


def score_events(n: int, n_patients: int, tag: str) -> tuple[list[TimepointScore], list[str]]:
    patients = [pseudonymise(f"{tag}-{i}", "bench-key-0123456789abcdef") for i in range(n_patients)]
    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    events = []
    for i in range(n):
        p = patients[i % n_patients]
        src = uuid.uuid5(uuid.NAMESPACE_URL, f"{tag}/{i}")
        events.append(
            TimepointScore.for_source(
                source_event_id=src,
                patient=p,
                occurred_at=t0 + timedelta(hours=i),
                score_name="response_probability",
                value=(i % 100) / 100,
                model_name="bench",
                model_version="1",
            )
        )
    return events, patients


def stored(conn: psycopg.Connection, patients: list[str]) -> int:
    return conn.execute(
        "SELECT count(*) FROM timepoint_scores WHERE patient = ANY(%s)", (patients,)
    ).fetchone()[0]


def wait_rows(conn: psycopg.Connection, patients: list[str], n: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stored(conn, patients) >= n:
            return time.perf_counter()
        time.sleep(0.05)
    raise TimeoutError(f"only {stored(conn, patients)} of {n} rows after {timeout}s")


def run_irtmon(settings: Settings, n: int, n_patients: int) -> float:
    with running_worker(settings, "bench-irtmon"):
        events, patients = score_events(n, n_patients, f"irtmon-{uuid.uuid4()}")
        with connect(settings, autocommit=True) as conn, Publisher(settings) as pub:
            start = time.perf_counter()
            pub.publish(events)
            end = wait_rows(conn, patients, n, timeout=600)
        return n / (end - start)


def run_baseline(settings: Settings, n: int, n_patients: int) -> float:
    consumer = KafkaConsumer(
        "scores.timepoint",
        bootstrap_servers=settings.bootstrap_servers,
        group_id="bench-baseline",
        auto_offset_reset="latest",
        enable_auto_commit=False,
        max_poll_records=500,
    )
    deadline = time.monotonic() + 120
    while not consumer.assignment():
        if time.monotonic() > deadline:  # seen once on a loaded machine: no assignment, ever
            raise TimeoutError("the baseline consumer got no partitions in 120 s")
        consumer.poll(timeout_ms=200)
    for tp in consumer.assignment():
        consumer.position(tp)
    events, patients = score_events(n, n_patients, f"baseline-{uuid.uuid4()}")
    sql = """
        INSERT INTO patients (pseudonym, first_seen_at) VALUES (%s, %s)
        ON CONFLICT (pseudonym) DO NOTHING;
    """
    upsert = """
        INSERT INTO timepoint_scores (event_id, patient, observed_at, source_event_id,
            score_name, value, model_name, model_version)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (event_id, observed_at) DO UPDATE SET value = EXCLUDED.value
    """
    with connect(settings) as conn, Publisher(settings) as pub:
        start = time.perf_counter()
        pub.publish(events)
        done = 0
        deadline = time.monotonic() + 600
        while done < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the baseline stored {done} of {n} events in 600 s")
            batch = [
                parse_event(TimepointScore, r.value)
                for records in consumer.poll(timeout_ms=200).values()
                for r in records
            ]
            if not batch:
                continue
            with conn.cursor() as cur:
                cur.executemany(sql, [(s.patient, s.occurred_at) for s in batch])
                cur.executemany(
                    upsert,
                    [
                        (
                            s.event_id,
                            s.patient,
                            s.occurred_at,
                            s.source_event_id,
                            s.score_name,
                            s.value,
                            s.model_name,
                            s.model_version,
                        )
                        for s in batch
                    ],
                )
            conn.commit()
            consumer.commit()
            done += len(batch)
        end = time.perf_counter()
        assert stored(conn, patients) == n
    consumer.close()
    return n / (end - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--patients", type=int, default=200)
    args = parser.parse_args()
    base = REPO / ".irtmon" / "bench-stacks"
    base.mkdir(parents=True, exist_ok=True)
    settings = private_settings(
        base / f"throughput-{uuid.uuid4().hex[:6]}", REPO / ".irtmon" / "cache"
    )
    print(f"starting a private stack in {settings.state_dir} ...", flush=True)
    stack.up(settings)
    try:
        with connect(settings, autocommit=True) as conn:
            migrate(conn)
        irtmon_rate = run_irtmon(settings, args.events, args.patients)
        baseline_rate = run_baseline(settings, args.events, args.patients)
    finally:
        stack.down(settings)
    result = {
        "events": args.events,
        "irtmon_events_per_s": round(irtmon_rate, 1),
        "baseline_events_per_s": round(baseline_rate, 1),
        "ratio_irtmon_to_baseline": round(irtmon_rate / baseline_rate, 3),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
