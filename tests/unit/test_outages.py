"""An outage that outlasts the retry window stops the worker; it never dead-letters a valid event.

On fakes of the database thread and the broker (the real ones: tests/integration/
test_outage.py). What must hold: when the database (or a disk, or the broker) stays away past
``transient_retry_s``, the loop exits with :data:`streams.agents._loop.EXIT_UNSETTLED` without
acknowledging the message, and nothing is written to the dead letters, neither for the valid
event whose processing failed nor for an invalid one whose dead letter could not be stored.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest

from core.db import events as event_rows
from schemas.topics import TREATMENT_EVENTS
from streams.agents import _loop
from streams.failures import OutageOutlastedRetriesError, is_transient, with_retries
from streams.handling import Message, handle
from tests.unit.test_batches import FakeStream, context, messages, patients, treatment


class ExitedError(Exception):
    pass


@pytest.fixture
def exits(monkeypatch: pytest.MonkeyPatch) -> None:
    def exit_(code: int) -> None:
        raise ExitedError(code)

    monkeypatch.setattr(_loop.os, "_exit", exit_)
    monkeypatch.setattr(_loop.logging, "shutdown", lambda: None)


class OneByOneStream:
    """What :func:`streams.agents._loop.consume` uses of a faust stream (it never acks: faust
    acknowledges an event when the loop asks for the next one, so only *reaching* the next
    event counts)."""

    def __init__(self, msgs: list[Message]) -> None:
        self.msgs, self.reached = msgs, []

    async def events(self):
        for m in self.msgs:
            self.reached.append(m.offset)
            yield SimpleNamespace(
                message=SimpleNamespace(topic=m.topic, partition=m.partition, offset=m.offset),
                key=m.key,
                value=m.value,
            )


class DownDb:
    """The database thread while the server is down: every call fails as psycopg does."""

    def __init__(self) -> None:
        self.calls: list[Callable[..., Any]] = []

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        self.calls.append(fn)
        raise psycopg.OperationalError("connection refused: is the server running?")


def test_an_outage_past_the_window_is_routed_retry_and_not_retried_twice() -> None:
    calls = 0

    async def inner() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionRefusedError("database restarting")

    async def outer() -> None:
        await with_retries(inner, window_s=0.05, what="inner", first_delay_s=0.01)

    with pytest.raises(OutageOutlastedRetriesError) as info:
        asyncio.run(with_retries(outer, window_s=30, what="outer", first_delay_s=0.01))
    assert is_transient(info.value)  # routed RETRY: the loop stops, it does not dead-letter
    assert "inner" in str(info.value)  # the outer window did not start a second wait


def test_a_valid_event_is_not_dead_lettered_when_the_database_stays_down(exits: None) -> None:
    ctx, db, sent = context(transient_retry_s=0.2)
    (a,) = patients(1)
    msgs = messages([treatment(a, 0), treatment(a, 1)])
    stream = OneByOneStream(msgs)

    async def process(event: Any) -> None:
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    with pytest.raises(ExitedError) as exited:
        asyncio.run(_loop.consume(ctx, stream, TREATMENT_EVENTS, process))
    assert exited.value.args == (_loop.EXIT_UNSETTLED,)
    assert db.dead_letters == [] and sent == []  # neither the table nor the topic
    assert stream.reached == [0]  # the first message was never let go of


def test_a_full_disk_past_the_window_stops_the_worker_too(exits: None) -> None:
    ctx, db, sent = context(transient_retry_s=0.2)
    (a,) = patients(1)

    async def process(event: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", "/derived/a.png")

    with pytest.raises(OutageOutlastedRetriesError, match="disk full"):
        asyncio.run(handle(ctx, TREATMENT_EVENTS, messages([treatment(a, 0)])[0], process))
    assert db.dead_letters == [] and sent == []


def test_a_batch_is_not_dead_lettered_event_by_event_when_the_outage_outlasts_the_window(
    exits: None,
) -> None:
    ctx, db, sent = context(transient_retry_s=0.2)
    a, b = patients(2)
    stream = FakeStream([messages([treatment(a, 0), treatment(b, 0), treatment(a, 1)])], [])
    stored: list[int] = []

    async def store(batch: list[Any]) -> None:
        stored.append(len(batch))
        raise psycopg.OperationalError("the database is down")

    async def process(event: Any) -> None:
        raise psycopg.OperationalError("the database is down")

    with pytest.raises(ExitedError) as exited:
        asyncio.run(_loop.consume_batches(ctx, stream, TREATMENT_EVENTS, store, process))
    assert exited.value.args == (_loop.EXIT_UNSETTLED,)
    assert stored and set(stored) == {3}
    assert db.dead_letters == [] and sent == [] and stream.acked == []


def test_an_invalid_event_whose_dead_letter_cannot_be_stored_stops_the_worker(
    exits: None,
) -> None:
    ctx, _, sent = context(transient_retry_s=0.2)
    down = DownDb()
    ctx.db = down  # type: ignore[assignment]
    stream = OneByOneStream([Message("treatment.events", 0, 7, b"k", b'{"schema_version": 1')])

    async def process(event: Any) -> None:
        raise AssertionError("an unreadable event is never processed")

    with pytest.raises(ExitedError):
        asyncio.run(_loop.consume(ctx, stream, TREATMENT_EVENTS, process))
    assert down.calls and set(down.calls) == {event_rows.insert_dead_letter}
    assert sent == []  # not on the topic alone: stored and published together after the restart
