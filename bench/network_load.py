"""A hospital network's day through the real stack, with one and with two worker processes.

The network: ``--sites`` hospitals (default 50). Each sends, for each of its
``--patients-per-site`` monitored patients (default 1), what one patient produces on a scan day
here: a CT study with the target contoured (the planning CT: RTSTRUCT and SEG), a follow-up
study (CT or photon-counting CT, lesion propagated from the planning CT by registration) and
``--treatment-events`` treatment events (RT fractions, immunotherapy doses). The studies are a
virtual-clinic cohort's real DICOM folders (test size, 128 x 128 x 40 voxels), each network
patient with a pseudonym of its own, so every study is read, registered, measured and
featurised again. The whole day is published at once (the day compressed into the run) to a
private stack (a real Kafka broker with 8 partitions per topic and a real PostgreSQL server),
and drained by

- **1 worker**: one `irtmon worker` process (the baseline, measured in the same run), then
- **2 workers**: two `irtmon worker` processes in one consumer group,

each with one CPU process for the science (``IRTMON_WORKER_CPU_PROCESSES=1``) and a fresh
consumer group and event ids. Reported per configuration: the time to drain the day, studies
and events per second, the latency of each study from its publication to its stored scores
(median, 95th percentile), the CPU seconds the workers spent per study and the cores they kept
busy (on a shared machine the second worker can only go as fast as a free core lets it: these
say whether it was the design or the machine), and the scaling ratio of two workers over one.

Run: ``python -m bench.network_load --sites 50``  (about 15 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from bench._worker import running_worker
from core.db import connect, migrate
from core.publish import Publisher
from core.settings import Settings
from irtmon import stack
from irtmon.stack.private import private_settings
from schemas import ImagingAcquired, TreatmentEvent, pseudonymise
from schemas.events import Event

REPO = Path(__file__).resolve().parents[1]
KEY = "bench-network-key-0123456789abcdef"


@dataclass
class Day:
    """One network day: the events to publish, the study ids and the treatment ids."""

    events: list[Event]
    studies: list[uuid.UUID]
    treatments: list[uuid.UUID]


def template_patients(cohort: Path) -> list[tuple[list[ImagingAcquired], list[TreatmentEvent]]]:
    """Per clinic patient: its planning CT and first follow-up, and its treatment events."""
    from clinic import load_events

    by_patient: dict[str, tuple[list[ImagingAcquired], list[TreatmentEvent]]] = {}
    for event in load_events(cohort):
        imaging, treatment = by_patient.setdefault(event.patient, ([], []))
        if isinstance(event, ImagingAcquired):
            imaging.append(event)
        elif isinstance(event, TreatmentEvent):
            treatment.append(event)
    out = []
    for imaging, treatment in by_patient.values():
        imaging.sort(key=lambda e: e.occurred_at)
        out.append((imaging[:2], treatment))
    return out


def network_day(
    templates: list[tuple[list[ImagingAcquired], list[TreatmentEvent]]],
    sites: int,
    per_site: int,
    n_treatment: int,
    tag: str,
) -> Day:
    """The events of every site's patients, interleaved across sites as they would arrive."""
    day = Day([], [], [])
    rows: list[list[Event]] = []
    for site in range(sites):
        for k in range(per_site):
            scans, treatments = templates[(site * per_site + k) % len(templates)]
            psn = pseudonymise(f"{tag}/site{site:03d}/patient{k}", KEY)
            mine: list[Event] = []
            for event in [*scans, *treatments[:n_treatment]]:
                new_id = uuid.uuid5(uuid.NAMESPACE_URL, f"{tag}/{psn}/{event.event_id}")
                mine.append(event.model_copy(update={"event_id": new_id, "patient": psn}))
                (day.studies if isinstance(event, ImagingAcquired) else day.treatments).append(
                    new_id
                )
            rows.append(mine)
    # round robin over the patients, each patient's events in their own order
    longest = max(len(r) for r in rows)
    for i in range(longest):
        day.events.extend(r[i] for r in rows if i < len(r))
    return day


def _done(conn: psycopg.Connection, day: Day) -> tuple[dict[uuid.UUID, datetime], int, int]:
    scored = dict(
        conn.execute(
            """
            SELECT source_event_id, max(created_at) FROM timepoint_scores
            WHERE source_event_id = ANY(%s) GROUP BY source_event_id
            """,
            (day.studies,),
        ).fetchall()
    )
    treated = conn.execute(
        "SELECT count(*) FROM treatment_events WHERE event_id = ANY(%s)", (day.treatments,)
    ).fetchone()[0]
    dead = conn.execute(
        "SELECT count(*) FROM dead_letters WHERE failed_event_id = ANY(%s)",
        (day.studies + day.treatments,),
    ).fetchone()[0]
    return scored, treated, dead


def run(settings: Settings, day: Day, n_workers: int, timeout: float) -> dict[str, object]:
    group = f"bench-network-{n_workers}w-{uuid.uuid4().hex[:6]}"
    cpu_before = _children_cpu_s()
    with contextlib.ExitStack() as workers:
        for _ in range(n_workers):
            workers.enter_context(running_worker(settings, group, timeout=180))
        time.sleep(3)  # let the last rebalance settle
        with connect(settings, autocommit=True) as conn, Publisher(settings) as pub:
            published_at = datetime.now(UTC)
            start = time.perf_counter()
            pub.publish(day.events, timeout=120)
            deadline = time.monotonic() + timeout
            while True:
                scored, treated, dead = _done(conn, day)
                if len(scored) + dead >= len(day.studies) and treated >= len(day.treatments):
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{n_workers} worker(s): {len(scored)} of {len(day.studies)} studies, "
                        f"{treated} of {len(day.treatments)} treatment events after {timeout}s"
                    )
                time.sleep(0.5)
            drained = time.perf_counter() - start
    cpu_s = _children_cpu_s() - cpu_before  # the workers and their pools, once stopped
    latencies = sorted((t - published_at).total_seconds() for t in scored.values())
    return {
        "workers": n_workers,
        "drain_s": round(drained, 1),
        "studies": len(scored),
        "dead_letters": dead,
        "studies_per_s": round(len(scored) / drained, 3),
        "events_per_s": round(len(day.events) / drained, 2),
        "latency_p50_s": round(statistics.median(latencies), 1),
        "latency_p95_s": round(latencies[int(0.95 * (len(latencies) - 1))], 1),
        "studies_per_day_capacity": int(len(scored) / drained * 86400),
        "worker_cpu_s": round(cpu_s, 1),
        "worker_cpu_s_per_study": round(cpu_s / max(1, len(scored)), 2),
        "cores_busy": round(cpu_s / drained, 2),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
    }


def _children_cpu_s() -> float:
    """CPU seconds of this process's finished children (the worker processes and, as each
    worker waits for its process pool on stopping, their pools)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=50)
    parser.add_argument("--patients-per-site", type=int, default=1)
    parser.add_argument("--treatment-events", type=int, default=10)
    parser.add_argument("--clinic-patients", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument(
        "--configs",
        default="1,2",
        help="worker counts to run, in order; e.g. 1,2,1 brackets the two-worker run between "
        "two one-worker runs, so a machine whose load drifts shows it",
    )
    args = parser.parse_args()

    base = REPO / ".irtmon" / "bench-stacks"
    base.mkdir(parents=True, exist_ok=True)
    cohort = REPO / ".irtmon" / "bench-data" / f"network-cohort-{args.clinic_patients}"
    settings = private_settings(
        base / f"network-{uuid.uuid4().hex[:6]}",
        REPO / ".irtmon" / "cache",
        data_roots=[cohort.parent],
        worker_cpu_processes=1,
        worker_concurrency=1,
        pseudonym_key=KEY,
    )
    if not (cohort / "events.jsonl").exists():
        from clinic import generate_cohort

        print(f"generating a {args.clinic_patients}-patient clinic cohort ...", flush=True)
        generate_cohort(cohort, args.clinic_patients, 5, "test", key=KEY)
    templates = template_patients(cohort)
    print(f"starting a private stack in {settings.state_dir} ...", flush=True)
    stack.up(settings)
    results = []
    load_at_start = os.getloadavg()[0]
    try:
        with connect(settings, autocommit=True) as conn:
            migrate(conn)
        for n_workers in [int(c) for c in args.configs.split(",")]:
            day = network_day(
                templates,
                args.sites,
                args.patients_per_site,
                args.treatment_events,
                f"{n_workers}w-{uuid.uuid4().hex[:6]}",
            )
            print(
                f"{n_workers} worker(s): {len(day.studies)} studies and {len(day.treatments)} "
                f"treatment events from {args.sites} sites ...",
                flush=True,
            )
            results.append(run(settings, day, n_workers, args.timeout))
            print(json.dumps(results[-1]), flush=True)
    finally:
        stack.down(settings)
    ones = [r for r in results if r["workers"] == 1]
    twos = [r for r in results if r["workers"] == 2]
    one = {
        k: round(statistics.mean(float(r[k]) for r in ones), 3)  # type: ignore[arg-type]
        for k in ("studies_per_s", "worker_cpu_s_per_study", "cores_busy")
    }
    two = {
        k: round(statistics.mean(float(r[k]) for r in twos), 3)  # type: ignore[arg-type]
        for k in ("studies_per_s", "worker_cpu_s_per_study", "cores_busy")
    }
    summary = {
        "sites": args.sites,
        "studies_per_run": results[0]["studies"],
        "events_per_run": len(day.events),
        "cpu_cores": os.cpu_count(),
        "load_average_1m_at_start": round(load_at_start, 2),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "runs": results,
        "one_worker_mean": one,
        "two_workers_mean": two,
        "scaling_ratio_2_over_1": round(two["studies_per_s"] / one["studies_per_s"], 3),
        "cpu_per_study_ratio_2_over_1": round(
            two["worker_cpu_s_per_study"] / one["worker_cpu_s_per_study"], 3
        ),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
