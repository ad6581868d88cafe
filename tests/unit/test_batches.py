"""Light events in batches: the envelope's batch variant and the batch loop, on fakes of the
database thread and the broker (the real ones: tests/integration/test_batches.py).

What must hold: an unreadable event is dead-lettered alone and the rest of its batch stored in
one call; a batch the database refuses falls back to one event at a time, so only the bad one
is dead-lettered; a brief outage is retried; a batch is acknowledged only once it is settled,
and never when it cannot be.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest

from core.db import events as event_rows
from core.settings import Settings
from schemas import RtFraction, TreatmentEvent, pseudonymise
from schemas.topics import TREATMENT_EVENTS
from streams.agents import _loop
from streams.context import WorkerContext
from streams.handling import Message, handle_batch

KEY = "batch-test-key-0123456789abcdef"


class FakeDb:
    """The worker's database thread: records dead letters; nothing else reaches it here."""

    def __init__(self) -> None:
        self.dead_letters: list[Any] = []

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        assert fn is event_rows.insert_dead_letter, fn
        self.dead_letters.append(args[0])


def context(**settings: Any) -> tuple[WorkerContext, FakeDb, list[tuple[str, bytes]]]:
    db, sent = FakeDb(), []

    async def send(topic: str, key: bytes, value: bytes) -> None:
        sent.append((topic, key))

    ctx = WorkerContext(settings=Settings(**settings), db=db, send=send)  # type: ignore[arg-type]
    return ctx, db, sent


def treatment(patient: str, i: int) -> TreatmentEvent:
    return TreatmentEvent(
        event_id=uuid.uuid5(uuid.NAMESPACE_URL, f"{patient}/{i}"),
        patient=patient,
        occurred_at=datetime(2026, 1, 5, tzinfo=UTC) + timedelta(days=i),
        treatment=RtFraction(course_id="C1", fraction_number=i + 1, dose_gy=2.0),
    )


def messages(events: list[TreatmentEvent], bad_at: int | None = None) -> list[Message]:
    out = [
        Message("treatment.events", 0, i, e.key, e.to_json_bytes()) for i, e in enumerate(events)
    ]
    if bad_at is not None:
        out.insert(bad_at, Message("treatment.events", 0, 999, b"k", b'{"schema_version": 1'))
    return out


def patients(n: int) -> list[str]:
    return [pseudonymise(f"p{i}-{uuid.uuid4()}", KEY) for i in range(n)]


def test_an_unreadable_event_is_dead_lettered_and_the_rest_stored_in_one_call() -> None:
    ctx, db, sent = context()
    a, b = patients(2)
    evs = [treatment(a, 0), treatment(b, 0), treatment(a, 1), treatment(b, 1)]
    stored: list[list[TreatmentEvent]] = []

    async def store(batch: list[TreatmentEvent]) -> None:
        stored.append(batch)

    async def process(event: TreatmentEvent) -> None:
        raise AssertionError("a batch that stores needs no event handled alone")

    n = asyncio.run(handle_batch(ctx, TREATMENT_EVENTS, messages(evs, bad_at=2), store, process))
    assert n == 4
    assert [[e.event_id for e in batch] for batch in stored] == [[e.event_id for e in evs]]
    assert [(d.offset, d.error_class) for d in db.dead_letters] == [(999, "InvalidEventError")]
    assert sent == [("deadletter", db.dead_letters[0].key)]


def test_a_refused_batch_is_taken_event_by_event_and_only_the_bad_one_dead_lettered() -> None:
    ctx, db, _ = context()
    (a,) = patients(1)
    evs = [treatment(a, i) for i in range(5)]
    bad = evs[3].event_id
    calls: list[str] = []
    processed: list[uuid.UUID] = []

    async def store(batch: list[TreatmentEvent]) -> None:
        calls.append("batch")
        raise psycopg.errors.UntranslatableCharacter("unsupported Unicode escape sequence")

    async def process(event: TreatmentEvent) -> None:
        calls.append("event")
        if event.event_id == bad:
            raise psycopg.errors.UntranslatableCharacter("unsupported Unicode escape sequence")
        processed.append(event.event_id)

    n = asyncio.run(handle_batch(ctx, TREATMENT_EVENTS, messages(evs), store, process))
    assert n == 4
    assert calls == ["batch"] + ["event"] * 5  # not retried: the failure is the data's
    assert processed == [e.event_id for e in evs if e.event_id != bad]  # in order
    assert [(d.failed_event_id, d.error_class) for d in db.dead_letters] == [
        (bad, "UntranslatableCharacter")
    ]


def test_a_brief_outage_is_retried_and_the_batch_stored_once() -> None:
    ctx, db, _ = context(transient_retry_s=5)
    (a,) = patients(1)
    evs = [treatment(a, i) for i in range(3)]
    attempts: list[int] = []

    async def store(batch: list[TreatmentEvent]) -> None:
        attempts.append(len(batch))
        if len(attempts) == 1:
            raise psycopg.OperationalError("server closed the connection unexpectedly")

    async def process(event: TreatmentEvent) -> None:
        raise AssertionError("not after a retry that worked")

    assert asyncio.run(handle_batch(ctx, TREATMENT_EVENTS, messages(evs), store, process)) == 3
    assert attempts == [3, 3] and db.dead_letters == []


class FakeStream:
    """What :func:`streams.agents._loop.consume_batches` uses of a faust stream."""

    def __init__(self, batches: list[list[Message]], log: list[str]) -> None:
        self.batches, self.log, self.acked = batches, log, []
        self.took: tuple[int, float] | None = None

    async def noack_take(self, max_: int, within: float):
        self.took = (max_, within)
        for batch in self.batches:
            yield [
                SimpleNamespace(
                    message=SimpleNamespace(topic=m.topic, partition=m.partition, offset=m.offset),
                    key=m.key,
                    value=m.value,
                )
                for m in batch
            ]

    async def ack(self, event: Any) -> bool:
        self.log.append(f"ack {event.message.offset}")
        self.acked.append(event.message.offset)
        return True


def test_a_batch_is_acknowledged_only_after_it_is_stored() -> None:
    ctx, _, _ = context(worker_batch_max=3, worker_batch_wait_s=0.2)
    (a,) = patients(1)
    evs = [treatment(a, i) for i in range(5)]
    msgs = messages(evs)
    log: list[str] = []
    stream = FakeStream([msgs[:3], msgs[3:]], log)

    async def store(batch: list[TreatmentEvent]) -> None:
        await asyncio.sleep(0.01)
        log.append(f"stored {len(batch)}")

    async def process(event: TreatmentEvent) -> None:
        raise AssertionError("unused")

    asyncio.run(_loop.consume_batches(ctx, stream, TREATMENT_EVENTS, store, process))
    assert stream.took == (3, 0.2)
    assert log == ["stored 3", "ack 0", "ack 1", "ack 2", "stored 2", "ack 3", "ack 4"]


def test_a_batch_that_cannot_be_settled_exits_without_acknowledging(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    ctx, _, _ = context(transient_retry_s=0.2)
    (a,) = patients(1)
    log: list[str] = []
    stream = FakeStream([messages([treatment(a, 0), treatment(a, 1)])], log)

    class ExitedError(Exception):
        pass

    def exit_(code: int) -> None:
        raise ExitedError(code)

    monkeypatch.setattr(_loop.os, "_exit", exit_)
    monkeypatch.setattr(_loop.logging, "shutdown", lambda: None)

    async def store(batch: list[TreatmentEvent]) -> None:
        raise psycopg.OperationalError("the database is down")

    async def process(event: TreatmentEvent) -> None:
        raise psycopg.OperationalError("the database is down")

    async def broken_send(topic: str, key: bytes, value: bytes) -> None:
        raise ConnectionError("the broker is down too")

    ctx.send = broken_send
    with caplog.at_level(logging.CRITICAL), pytest.raises(ExitedError) as exited:
        asyncio.run(_loop.consume_batches(ctx, stream, TREATMENT_EVENTS, store, process))
    assert exited.value.args == (_loop.EXIT_UNSETTLED,)
    assert stream.acked == []
    assert "batch could not be settled" in caplog.text
