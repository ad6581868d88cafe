"""Reconciliation: every accepted event has its rows exactly once, or a dead letter.

Reads the input topics from their beginning (within retention) with a throw-away consumer that
commits nothing (:func:`core.topic_reader.read_whole_topic`), and compares with the database:

- *events without results*: a message whose event id has no row (acquisition or treatment) and
  whose (topic, partition, offset) has no dead letter;
- *results without events*: acquisition or treatment rows whose event id was never seen on the
  topic (possible only when the topic's retention has dropped it, or rows were written by hand);
- *scores without acquisitions*: stored scores whose source event is not an accepted acquisition
  (scores published to ``scores.timepoint`` by other producers, or an inconsistency);
- *duplicate scores*: more than one stored score of one source event, score name and model
  version (a replay or a restart that wrote a second row instead of updating the first);
- *undelivered alert changes*: alert changes in the audit-log outbox that a configured sink
  (webhook, e-mail) has not acknowledged yet (in flight, or failing and being retried).

``patients`` restricts every count to those pseudonyms (a fault test counts its own events).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg

from core.db import audit, events, scores
from core.delivery import DELIVERABLE_ACTIONS, DeliveryConfig
from core.settings import Settings
from core.topic_reader import read_whole_topic
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
    duplicate_scores: int = 0
    undelivered_alert_changes: int = 0

    @property
    def ok(self) -> bool:
        return (
            not self.events_without_results
            and not self.scores_without_acquisitions
            and not self.duplicate_scores
        )

    def summary(self) -> str:
        """One line of counts, for the CLI and the fault tests' output."""
        return (
            f"{self.messages} messages, {self.processed} processed, "
            f"{self.dead_lettered} dead-lettered, {len(self.events_without_results)} without "
            f"results, {len(self.results_without_events)} results without events, "
            f"{self.duplicates_on_topic} duplicates on the topics, {self.duplicate_scores} "
            f"duplicate scores, {self.undelivered_alert_changes} undelivered alert changes"
        )


Located = tuple[int, int, uuid.UUID | None, str | None]


def _read_topic(settings: Settings, spec: TopicSpec) -> list[Located]:
    """(partition, offset, event id or None, patient or None) of every message on the topic."""
    return [(r.partition, r.offset, *_identify(r.value)) for r in read_whole_topic(settings, spec)]


def _identify(value: bytes | None) -> tuple[uuid.UUID | None, str | None]:
    """The event id and patient of a message, where it carries readable ones."""
    try:
        data = json.loads(value or b"")
    except (ValueError, UnicodeDecodeError):
        return None, None
    if not isinstance(data, dict):
        return None, None
    try:
        event_id = uuid.UUID(str(data["event_id"]))
    except (ValueError, KeyError, TypeError):
        event_id = None
    patient = data.get("patient")
    return event_id, patient if isinstance(patient, str) else None


def reconcile(
    settings: Settings, conn: psycopg.Connection, patients: Collection[str] | None = None
) -> Reconciliation:
    """Compare the input topics with the database; see the module docstring."""
    report = Reconciliation()
    scope = sorted(set(patients)) if patients is not None else None
    letters = events.dead_letter_keys(conn)
    stored = events.stored_event_ids(conn, scope)
    seen: set[uuid.UUID] = set()
    for spec in INPUT_TOPICS:
        for partition, offset, event_id, patient in _read_topic(settings, spec):
            if scope is not None and patient not in scope:
                continue
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
    report.scores_without_acquisitions = scores.scores_without_acquisitions(conn, scope)
    report.duplicate_scores = scores.duplicate_scores(conn, scope)
    report.undelivered_alert_changes = _undelivered(settings, conn, scope)
    return report


def _undelivered(settings: Settings, conn: psycopg.Connection, scope: list[str] | None) -> int:
    """Alert changes some configured sink has not acknowledged (0 when no sink is configured)."""
    config = DeliveryConfig.from_settings(settings)
    since = config.not_before or datetime(1970, 1, 1, tzinfo=UTC)
    count = 0
    for sink in config.sinks():
        actions = config.email_actions if sink.name == "email" else DELIVERABLE_ACTIONS
        rows = audit.pending_deliveries(conn, sink.name, actions, since, limit=1_000_000)
        count += sum(1 for r in rows if scope is None or r["patient"] in scope)
    return count
