"""Reconciliation: every accepted event has its rows exactly once, or a dead letter.

Reads the input topics from their beginning (within retention) with a throw-away consumer that
commits nothing, and compares with the database:

- *events without results*: a message whose event id has no row (acquisition or treatment) and
  whose (topic, partition, offset) has no dead letter;
- *results without events*: acquisition or treatment rows whose event id was never seen on the
  topic (possible only when the topic's retention has dropped it, or rows were written by hand);
- *scores without acquisitions*: stored scores whose source event is not an accepted acquisition
  (scores published to ``scores.timepoint`` by other producers, or an inconsistency).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field

import psycopg
from kafka import KafkaConsumer, TopicPartition

from irtmon.settings import Settings
from schemas.topics import BIOPSY_ACQUIRED, IMAGING_ACQUIRED, TREATMENT_EVENTS, TopicSpec

INPUT_TOPICS: tuple[TopicSpec, ...] = (IMAGING_ACQUIRED, BIOPSY_ACQUIRED, TREATMENT_EVENTS)


@dataclass
class Reconciliation:
    messages: int = 0
    processed: int = 0
    dead_lettered: int = 0
    duplicates_on_topic: int = 0
    events_without_results: list[str] = field(default_factory=list)
    results_without_events: list[str] = field(default_factory=list)
    scores_without_acquisitions: int = 0

    @property
    def ok(self) -> bool:
        return not self.events_without_results and not self.scores_without_acquisitions


def _read_topic(settings: Settings, spec: TopicSpec) -> list[tuple[int, int, uuid.UUID | None]]:
    """(partition, offset, event id or None) of every message now on the topic."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=2000,
        **settings.kafka_client_config(),
    )
    tps = [TopicPartition(spec.name, p) for p in range(spec.partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    ends = consumer.end_offsets(tps)
    out: list[tuple[int, int, uuid.UUID | None]] = []
    remaining = {tp for tp in tps if ends[tp] > consumer.position(tp)}
    while remaining:
        batch = consumer.poll(timeout_ms=1000)
        if not batch:
            break
        for tp, records in batch.items():
            for r in records:
                try:
                    event_id = uuid.UUID(json.loads(r.value)["event_id"])
                except (ValueError, KeyError, TypeError, UnicodeDecodeError):
                    event_id = None
                out.append((tp.partition, r.offset, event_id))
            if consumer.position(tp) >= ends[tp]:
                remaining.discard(tp)
    consumer.close()
    return out


def reconcile(settings: Settings, conn: psycopg.Connection) -> Reconciliation:
    """Compare the input topics with the database; see the module docstring."""
    report = Reconciliation()
    letters = {
        (topic, partition, offset)
        for topic, partition, offset in conn.execute(
            "SELECT source_topic, source_partition, source_offset FROM dead_letters"
        ).fetchall()
    }
    stored = {row[0] for row in conn.execute("SELECT event_id FROM acquisitions").fetchall()}
    stored |= {row[0] for row in conn.execute("SELECT event_id FROM treatment_events").fetchall()}
    seen: set[uuid.UUID] = set()
    for spec in INPUT_TOPICS:
        for partition, offset, event_id in _read_topic(settings, spec):
            report.messages += 1
            if event_id is not None and event_id in seen:
                report.duplicates_on_topic += 1
            if (spec.name, partition, offset) in letters:
                report.dead_lettered += 1
            elif event_id is not None and event_id in stored:
                report.processed += 1
            else:
                report.events_without_results.append(
                    f"{spec.name}:{partition}:{offset} ({event_id or 'unreadable'})"
                )
            if event_id is not None:
                seen.add(event_id)
    report.results_without_events = sorted(str(e) for e in stored - seen)
    report.scores_without_acquisitions = conn.execute(
        "SELECT count(*) FROM timepoint_scores s WHERE NOT EXISTS "
        "(SELECT 1 FROM acquisitions a WHERE a.event_id = s.source_event_id)"
    ).fetchone()[0]
    return report
