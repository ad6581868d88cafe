"""End-to-end latency per study: from publishing an ``imaging.acquired`` event to its scores
stored, through an irtmon worker, against a baseline in the same run.

- **irtmon**: one `irtmon worker` (Faust agent, envelope with dead-lettering, scoring in the
  CPU process pool off the event loop, one transaction, offsets after the commit);
- **baseline**: a plain kafka-python consumer that polls, scores in its own process with the
  same :func:`streams.scoring.score_imaging` and writes the same rows in one transaction.

Both are warm: the worker starts its CPU processes and their imports (radiomics, torch) before
the first event is published (``IRTMON_WORKER_WARM_START``, as the demo does), the baseline
imports them before its first poll. A worker started cold pays that once, at its first
acquisition (about 7 s here, 2026-12-01), which a single timed study would otherwise charge to
the planning CT.

Both score the same virtual-clinic studies (a planning CT with its SEG, then a follow-up whose
lesion is propagated by registration), at the test size and, with ``--realistic``, at
512x512x200, on a private stack (real Kafka broker and PostgreSQL server) started here.

Run: ``python -m bench.stream_latency [--realistic]``
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from pathlib import Path

import psycopg
from kafka import KafkaConsumer

from bench._worker import running_worker
from clinic import generate_cohort, load_events
from core.db import connect, migrate
from core.db.events import upsert_imaging
from core.publish import Publisher
from core.settings import Settings
from irtmon import stack
from irtmon.stack.private import private_settings
from schemas import ImagingAcquired, parse_event, pseudonymise
from streams import scoring

REPO = Path(__file__).resolve().parents[1]


def studies(cohort: Path) -> list[ImagingAcquired]:
    events = [e for e in load_events(cohort) if isinstance(e, ImagingAcquired)]
    return events[:2]  # the planning CT (with SEG) and the first follow-up


def relabel(events: list[ImagingAcquired], tag: str) -> list[ImagingAcquired]:
    """The same studies as a new patient with new event ids (so both runs store their rows)."""
    patient = pseudonymise(f"{tag}-{uuid.uuid4()}", "bench-latency-key-0123456789")
    return [e.model_copy(update={"event_id": uuid.uuid4(), "patient": patient}) for e in events]


def status(conn: psycopg.Connection, event_id: uuid.UUID) -> str | None:
    row = conn.execute(
        "SELECT status FROM acquisitions WHERE event_id = %s", (event_id,)
    ).fetchone()
    return row[0] if row else None


def wait_scored(conn: psycopg.Connection, event_id: uuid.UUID, timeout: float = 900) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = status(conn, event_id)
        if state == "scored":
            return time.perf_counter()
        if state == "failed":
            raise RuntimeError(f"study {event_id} was dead-lettered")
        time.sleep(0.05)
    raise TimeoutError(f"study {event_id} not scored in {timeout}s")


def run_irtmon(settings: Settings, events: list[ImagingAcquired]) -> list[float]:
    with running_worker(settings, "latency-irtmon", warm=True):
        latencies = []
        with connect(settings, autocommit=True) as conn, Publisher(settings) as pub:
            for event in events:
                start = time.perf_counter()
                pub.publish([event])
                latencies.append(wait_scored(conn, event.event_id) - start)
        return latencies


def run_baseline(settings: Settings, events: list[ImagingAcquired]) -> list[float]:
    consumer = KafkaConsumer(
        "imaging.acquired",
        bootstrap_servers=settings.bootstrap_servers,
        group_id="latency-baseline",
        auto_offset_reset="latest",
        enable_auto_commit=False,
    )
    while not consumer.assignment():
        consumer.poll(timeout_ms=200)
    for tp in consumer.assignment():
        consumer.position(tp)
    scoring.warm_up()  # the heavy imports done before timing, as the warm worker's
    latencies = []
    with connect(settings) as conn, Publisher(settings) as pub:
        for event in events:
            start = time.perf_counter()
            pub.publish([event])
            done = False
            while not done:
                for records in consumer.poll(timeout_ms=100).values():
                    for record in records:
                        got = parse_event(ImagingAcquired, record.value)
                        request = scoring.imaging_request(got, settings.data_roots)
                        upsert_imaging(conn, got)
                        request = scoring.with_history(conn, request)
                        conn.commit()
                        outcome = scoring.score_imaging(request)
                        scoring.store_outcome(conn, outcome)
                        conn.commit()
                        consumer.commit()
                        done = done or got.event_id == event.event_id
            latencies.append(time.perf_counter() - start)
    consumer.close()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--realistic", action="store_true", help="Also 512x512x200 studies.")
    args = parser.parse_args()
    base = REPO / ".irtmon" / "bench-stacks" / f"latency-{uuid.uuid4().hex[:6]}"
    data = base / "data"
    settings = private_settings(base, REPO / ".irtmon" / "cache", data_roots=[data])
    sizes = ["test", "realistic"] if args.realistic else ["test"]
    cohorts = {}
    for size in sizes:
        out = data / f"cohort-{size}"
        print(f"generating a {size}-size study pair ...", flush=True)
        generate_cohort(out, 1, 5, size, key="bench-latency-key-0123456789", n_timepoints=2)
        cohorts[size] = studies(out)
    print(f"starting a private stack in {base} ...", flush=True)
    stack.up(settings)
    results = {}
    try:
        with connect(settings, autocommit=True) as conn:
            migrate(conn)
        for size, events in cohorts.items():
            irtmon_s = run_irtmon(settings, relabel(events, f"irtmon-{size}"))
            baseline_s = run_baseline(settings, relabel(events, f"baseline-{size}"))
            results[size] = {
                "irtmon_s": {"planning": round(irtmon_s[0], 2), "follow_up": round(irtmon_s[1], 2)},
                "baseline_s": {
                    "planning": round(baseline_s[0], 2),
                    "follow_up": round(baseline_s[1], 2),
                },
                "ratio_irtmon_to_baseline": {
                    "planning": round(irtmon_s[0] / baseline_s[0], 3),
                    "follow_up": round(irtmon_s[1] / baseline_s[1], 3),
                },
            }
    finally:
        stack.down(settings)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
