"""Dead letters for people: read them (table or topic), replay them, erase old payloads.

A replay republishes a dead letter's *original bytes* (value and key, as the worker stored them
in ``dead_letters``) to its source topic, waits for the broker's acknowledgement, then records
the replay in the audit log (:func:`core.db.dead_letters.record_replay`, the one audit writer)
and commits. It is idempotent twice over: a dead letter whose replay is recorded is skipped
unless asked again (``again=True``), and the worker's sinks upsert by event id, so an event
replayed twice (or replayed after a crash between the send and the record) is stored once.
A replayed event that fails again becomes a new dead letter (a new offset) with its reason.

Reading the dead letters' payloads needs the ``irtmon_deadletters`` database role
(migration 0007); payloads older than ``IRTMON_DEADLETTER_PAYLOAD_RETENTION_DAYS`` are erased
(:func:`erase_expired`), and such a dead letter cannot be replayed.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import psycopg

from core.db import dead_letters as rows
from core.db.dead_letters import DeadLetterFilter, DeadLetterRow
from core.publish import Publisher
from core.settings import Settings
from core.topic_reader import read_whole_topic
from schemas import DeadLetter
from schemas.topics import DEADLETTER, TOPICS


class ReplayStatus(StrEnum):
    REPLAYED = "replayed"
    ALREADY_REPLAYED = "already replayed"
    PAYLOAD_ERASED = "payload erased"
    NOT_A_SOURCE_TOPIC = "not a source topic"


@dataclass(frozen=True)
class ReplayOutcome:
    letter: DeadLetterRow
    status: ReplayStatus
    audit_id: int | None = None


def _matches(letter: DeadLetter, filters: DeadLetterFilter) -> bool:
    return (
        (filters.topic is None or letter.source_topic == filters.topic)
        and (filters.error_class is None or letter.error_class == filters.error_class)
        and (filters.since is None or letter.occurred_at >= filters.since)
        and (filters.patient is None or letter.patient == filters.patient)
    )


def read_topic(settings: Settings, filters: DeadLetterFilter) -> list[DeadLetter]:
    """The dead letters still on the ``deadletter`` topic (within its retention) that match
    ``filters``, oldest first (:func:`core.topic_reader.read_whole_topic`: a throw-away consumer
    that commits nothing). The topic copy carries at most the first 512 KiB of a payload (the
    table keeps every byte)."""
    out: list[DeadLetter] = []
    for record in read_whole_topic(settings, DEADLETTER):
        try:
            letter = DeadLetter.model_validate_json(record.value)
        except ValueError:
            continue  # not ours: the topic is irtmon's, but say nothing of others
        if _matches(letter, filters):
            out.append(letter)
    out.sort(key=lambda letter: letter.occurred_at)
    return out[: filters.limit]


def topic_payload(letter: DeadLetter) -> bytes:
    """The original bytes a topic dead letter carries (possibly cut; see :func:`read_topic`)."""
    try:
        return base64.b64decode(letter.payload_b64, validate=True)
    except (binascii.Error, ValueError):
        return b""


def replay(
    settings: Settings,
    conn: psycopg.Connection,
    letters: Sequence[DeadLetterRow],
    *,
    actor: str,
    again: bool = False,
    publisher: Callable[[], Any] | None = None,
) -> list[ReplayOutcome]:
    """Republish each of ``letters`` (read with their payload) to its source topic, in order,
    and record each replay; see the module docstring. Commits ``conn`` after each record."""
    done = rows.replayed(conn, [letter.event_id for letter in letters])
    conn.commit()
    outcomes: list[ReplayOutcome] = []
    pub = None
    try:
        for letter in letters:
            if letter.source_topic not in TOPICS or letter.source_topic == DEADLETTER.name:
                outcomes.append(ReplayOutcome(letter, ReplayStatus.NOT_A_SOURCE_TOPIC))
                continue
            if letter.payload is None:
                outcomes.append(ReplayOutcome(letter, ReplayStatus.PAYLOAD_ERASED))
                continue
            if letter.event_id in done and not again:
                outcomes.append(ReplayOutcome(letter, ReplayStatus.ALREADY_REPLAYED))
                continue
            if pub is None:
                pub = (publisher or (lambda: Publisher(settings, client_id="irtmon-replay")))()
            pub.send_raw(letter.source_topic, letter.payload, key=letter.key)
            pub.flush(30.0)  # acknowledged by the broker before it is recorded
            audit_id = rows.record_replay(
                conn, letter, actor=actor, detail={"bytes": len(letter.payload), "again": again}
            )
            conn.commit()
            done.add(letter.event_id)
            outcomes.append(ReplayOutcome(letter, ReplayStatus.REPLAYED, audit_id))
    finally:
        if pub is not None:
            pub.close()
    return outcomes


def erase_expired(conn: psycopg.Connection, settings: Settings, now: datetime | None = None) -> int:
    """Erase the payloads older than ``IRTMON_DEADLETTER_PAYLOAD_RETENTION_DAYS``; how many."""
    now = now or datetime.now(UTC)
    return rows.erase_payloads(
        conn, now - timedelta(days=settings.deadletter_payload_retention_days)
    )
