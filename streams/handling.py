"""The envelope every agent runs each message through.

Consumes one Kafka message; parses it into its contract; runs the agent's ``process``
coroutine with transient failures retried; dead-letters permanent failures (invalid event,
unreadable or missing file, a model failing) with the error class, message, source topic,
partition, offset and the original bytes, in the dead-letter topic and table; and never raises
for a fault of the event, so the worker keeps going and the message is acknowledged once it is
settled. An outage that outlasts ``transient_retry_s`` (the database, the broker, a full disk)
is no fault of the event: it raises :class:`streams.failures.OutageOutlastedRetriesError`, and
the agent's loop stops the worker without acknowledging the message (it is consumed again after
the restart), so a valid event is never dead-lettered because something else was down.

Light events (treatment events, scores) go through :func:`handle_batch`: the batch's messages
are parsed first (an unreadable one is dead-lettered on its own), the rest stored by the
agent's ``store`` coroutine in one transaction, retried as a whole when the database is briefly
away; if the batch fails for good, each event goes through :func:`handle` alone, so the bad one
is dead-lettered with its reason and the others are stored.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core.db import events
from schemas import DeadLetter, InvalidEventError, is_pseudonym, parse_event
from schemas.events import Record
from schemas.topics import DEADLETTER, TopicSpec
from streams import metrics
from streams.context import WorkerContext
from streams.failures import OutageOutlastedRetriesError, is_transient, with_retries

log = logging.getLogger("irtmon.worker")

_DEAD_LETTER_NS = uuid.UUID("e7c6c1f4-40c5-4b8e-9a55-0d1c1a3b7f29")


@dataclass(frozen=True)
class Message:
    """What the envelope needs of a consumed message."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


def dead_letter_id(msg: Message) -> uuid.UUID:
    """Same source message, same dead-letter id: a replay does not duplicate it."""
    return uuid.uuid5(_DEAD_LETTER_NS, f"{msg.topic}/{msg.partition}/{msg.offset}")


def _patient_of(msg: Message, record: Record | None) -> str | None:
    patient = getattr(record, "patient", None)
    if patient:
        return patient
    try:
        raw = json.loads(msg.value).get("patient")
    except (ValueError, AttributeError, UnicodeDecodeError):
        return None
    return raw if isinstance(raw, str) and is_pseudonym(raw) else None


TOPIC_PAYLOAD_BYTES = 512 * 1024
"""Most of the original value the dead-letter *topic* carries (base64 grows it by a third, and a
producer refuses records over 1 MB); the ``dead_letters`` table keeps every byte."""
TOPIC_KEY_BYTES = 2048
"""Likewise for the original key (the contract allows 4,096 base64 characters)."""


def build_dead_letter(msg: Message, err: BaseException, record: Record | None) -> DeadLetter:
    """The dead letter of ``msg``: small enough to publish whatever the message's size."""
    reason = (str(err) or repr(err))[:7000]
    value, key = msg.value, msg.key
    if len(value) > TOPIC_PAYLOAD_BYTES:
        reason += (
            f" [the dead-letter topic carries the first {TOPIC_PAYLOAD_BYTES} of {len(value)} "
            "bytes; the dead_letters table keeps them all]"
        )
        value = value[:TOPIC_PAYLOAD_BYTES]
    if key is not None and len(key) > TOPIC_KEY_BYTES:
        reason += f" [key of {len(key)} bytes cut to {TOPIC_KEY_BYTES} on the topic]"
        key = key[:TOPIC_KEY_BYTES]
    return DeadLetter(
        event_id=dead_letter_id(msg),
        patient=_patient_of(msg, record),
        occurred_at=datetime.now(UTC),
        failed_event_id=getattr(record, "event_id", None),
        source_topic=msg.topic,
        partition=msg.partition,
        offset=msg.offset,
        error_class=type(err).__name__,
        reason=reason,
        payload_b64=base64.b64encode(value).decode(),
        key_b64=base64.b64encode(key).decode() if key is not None else None,
    )


async def dead_letter(
    ctx: WorkerContext, msg: Message, err: BaseException, record: Record | None
) -> DeadLetter:
    """Record ``msg`` as a dead letter (table and topic) with the reason."""
    letter = build_dead_letter(msg, err, record)
    window = ctx.settings.transient_retry_s
    try:
        await with_retries(
            lambda: ctx.db.run(events.insert_dead_letter, letter, msg.value, msg.key),
            window_s=window,
            what="store dead letter",
        )
    except OutageOutlastedRetriesError:
        raise  # the database is down: stop, the message is dead-lettered after the restart
    except Exception:  # the topic copy below still keeps it; say so loudly
        log.exception("dead letter not stored in the database", extra=_where(msg))
    await with_retries(
        lambda: ctx.send(DEADLETTER.name, letter.key, letter.to_json_bytes()),
        window_s=window,
        what="publish dead letter",
    )
    metrics.EVENTS.labels(msg.topic, "dead_lettered").inc()
    log.warning(
        "event dead-lettered",
        extra={
            **_where(msg),
            "error_class": letter.error_class,
            "reason": letter.reason[:500],
            "event_id": str(letter.failed_event_id or ""),
            "patient": letter.patient or "",
        },
    )
    return letter


def _where(msg: Message) -> dict[str, Any]:
    return {"topic": msg.topic, "partition": msg.partition, "offset": msg.offset}


async def handle(
    ctx: WorkerContext,
    spec: TopicSpec,
    msg: Message,
    process: Callable[[Any], Awaitable[None]],
) -> bool:
    """Parse and process one message; True if processed, False if dead-lettered.

    Raises :class:`streams.failures.OutageOutlastedRetriesError` when an outage outlasts the
    retry window (the message is then neither processed nor dead-lettered).
    """
    started = time.perf_counter()
    record: Record | None = None
    try:
        record = parse_event(spec.record, msg.value)
        current = record

        async def attempt() -> None:
            await process(current)

        await with_retries(
            attempt, window_s=ctx.settings.transient_retry_s, what=f"process {spec.name} event"
        )
    except Exception as err:  # every fault of one event is settled here, never raised
        if is_transient(err):  # an outage past the window: the loop stops the worker
            raise
        await dead_letter(ctx, msg, err, record)
        if not isinstance(err, InvalidEventError | OSError | ValueError):
            log.error("unexpected failure", exc_info=err, extra=_where(msg))
        return False
    metrics.EVENTS.labels(msg.topic, "processed").inc()
    metrics.LATENCY.labels(msg.topic).observe(time.perf_counter() - started)
    log.info(
        "event processed",
        extra={
            **_where(msg),
            "event_id": str(record.event_id),
            "patient": getattr(record, "patient", ""),
        },
    )
    return True


async def handle_batch(
    ctx: WorkerContext,
    spec: TopicSpec,
    msgs: Sequence[Message],
    store: Callable[[list[Any]], Awaitable[None]],
    process: Callable[[Any], Awaitable[None]],
) -> int:
    """Parse ``msgs`` and store the good ones with ``store`` in one go; return how many were
    processed (the rest are dead-lettered). Never raises for a failure of an event.

    ``store(records)`` must do what ``process`` does for each record, in one transaction, in
    the order given (a patient's events stay in partition order). Transient failures of the
    batch are retried with back-off for ``transient_retry_s``; any other failure of the batch
    (one bad row) sends each event through :func:`handle` with ``process``, so the bad one is
    isolated and dead-lettered alone. An outage that outlasts the window raises
    :class:`streams.failures.OutageOutlastedRetriesError`: nothing of the batch is settled.
    """
    started = time.perf_counter()
    good: list[tuple[Message, Record]] = []
    for msg in msgs:
        try:
            good.append((msg, parse_event(spec.record, msg.value)))
        except Exception as err:  # an unreadable event: settled here, never raised
            await dead_letter(ctx, msg, err, None)
            if not isinstance(err, InvalidEventError | OSError | ValueError):
                log.error("unexpected failure", exc_info=err, extra=_where(msg))
    if not good:
        return 0
    records = [record for _, record in good]
    try:
        await with_retries(
            lambda: store(records),
            window_s=ctx.settings.transient_retry_s,
            what=f"store a batch of {len(records)} {spec.name} events",
        )
    except Exception as err:
        if is_transient(err):  # an outage past the window: the loop stops the worker
            raise
        log.warning(
            "batch failed; handling its events one by one",
            extra={
                "topic": spec.name,
                "events": len(good),
                "error_class": type(err).__name__,
                "reason": str(err)[:500],
            },
        )
        processed = 0
        for msg, _ in good:
            processed += await handle(ctx, spec, msg, process)
        return processed
    elapsed = time.perf_counter() - started
    metrics.EVENTS.labels(spec.name, "processed").inc(len(good))
    latency = metrics.LATENCY.labels(spec.name)
    for _ in good:
        latency.observe(elapsed)
    log.info(
        "batch processed",
        extra={
            "topic": spec.name,
            "events": len(good),
            "offsets": _offset_ranges(msg for msg, _ in good),
            "seconds": round(elapsed, 4),
        },
    )
    if log.isEnabledFor(logging.DEBUG):  # per event: IRTMON_LOG_LEVEL=DEBUG
        for msg, record in good:
            log.debug(
                "event processed",
                extra={
                    **_where(msg),
                    "event_id": str(record.event_id),
                    "patient": getattr(record, "patient", ""),
                },
            )
    return len(good)


def _offset_ranges(msgs: Iterable[Message]) -> str:
    """``partition:first-last`` per partition of a batch, e.g. ``"0:17-40 3:5-9"``."""
    ranges: dict[int, tuple[int, int]] = {}
    for m in msgs:
        lo, hi = ranges.get(m.partition, (m.offset, m.offset))
        ranges[m.partition] = (min(lo, m.offset), max(hi, m.offset))
    return " ".join(f"{p}:{lo}-{hi}" for p, (lo, hi) in sorted(ranges.items()))
