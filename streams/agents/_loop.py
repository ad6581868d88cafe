"""The loops shared by the agents: each message through the envelope, in order
(:func:`consume`), or light events in batches (:func:`consume_batches`).

An agent started with ``concurrency`` > 1 (the scoring agents, ``IRTMON_WORKER_CONCURRENCY``)
runs that many copies of this loop on one shared queue. Faust hands the messages out in offset
order, but copies would then finish them in any order; so each message first takes its
patient's lock (message key) before any await. ``asyncio.Lock`` serves waiters first come,
first served, so one patient's events are still processed one at a time and in partition
order, while different patients' events overlap.

:func:`consume_batches` takes up to ``IRTMON_WORKER_BATCH_MAX`` messages at a time (waiting at
most ``IRTMON_WORKER_BATCH_WAIT_S`` for more) with faust's ``Stream.noack_take``, which never
acknowledges anything itself: the loop acknowledges a batch's messages only after the batch is
settled (committed, or dead-lettered event by event). Stopping or crashing mid-batch leaves
them unacknowledged, so their offsets are not committed and they are consumed again.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from schemas.topics import TopicSpec
from streams.context import WorkerContext
from streams.handling import Message, handle, handle_batch

log = logging.getLogger("irtmon.worker")

EXIT_UNSETTLED = 70
"""Exit status of a worker that stopped on an outage outlasting ``IRTMON_TRANSIENT_RETRY_S``
(``EX_SOFTWARE``): its supervisor restarts it, and it consumes the unsettled messages again."""


class PatientLocks:
    """One ``asyncio.Lock`` per message key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[bytes, asyncio.Lock] = {}
        self._users: dict[bytes, int] = {}

    def __len__(self) -> int:
        return len(self._locks)

    def hold(self, key: bytes | None) -> _Held:
        """``async with locks.hold(key):`` (a None key shares one lock)."""
        return _Held(self, key or b"")


class _Held:
    def __init__(self, locks: PatientLocks, key: bytes) -> None:
        self.locks, self.key = locks, key

    async def __aenter__(self) -> None:
        locks = self.locks
        lock = locks._locks.setdefault(self.key, asyncio.Lock())
        locks._users[self.key] = locks._users.get(self.key, 0) + 1
        await lock.acquire()

    async def __aexit__(self, *exc: object) -> None:
        locks = self.locks
        locks._locks[self.key].release()
        locks._users[self.key] -= 1
        if locks._users[self.key] == 0:
            del locks._users[self.key], locks._locks[self.key]


def _message(event: Any) -> Message:
    m = event.message
    return Message(m.topic, m.partition, m.offset, event.key, event.value or b"")


def _exit_unsettled(ctx: WorkerContext, what: str, where: dict[str, Any]) -> None:
    log.critical(
        f"{what} could not be settled; exiting without acknowledging it",
        exc_info=True,
        extra=where,
    )
    logging.shutdown()
    if ctx.pool is not None:  # os._exit runs no clean-up: its scoring processes would outlive it
        ctx.pool.kill()
    os._exit(EXIT_UNSETTLED)


async def consume(
    ctx: WorkerContext,
    stream: Any,
    spec: TopicSpec,
    process: Callable[[Any], Awaitable[None]],
    locks: PatientLocks | None = None,
) -> None:
    """Settle every message of ``stream`` (processed or dead-lettered) before moving on.

    If a message can be neither processed nor dead-lettered (the database, the broker or a disk
    unreachable past the retry window: an outage, not a fault of the event), the process exits
    with status :data:`EXIT_UNSETTLED` without acknowledging it, so its offset is not committed
    and the message is consumed again after its supervisor restarts the worker: nothing valid is
    dead-lettered and nothing is lost.
    """
    async for event in stream.events():
        msg = _message(event)
        try:
            if locks is None:
                await handle(ctx, spec, msg, process)
            else:  # taken before any await: in the order the messages were handed out
                async with locks.hold(event.key):
                    await handle(ctx, spec, msg, process)
        except BaseException:
            _exit_unsettled(
                ctx,
                "message",
                {"topic": msg.topic, "partition": msg.partition, "offset": msg.offset},
            )


async def consume_batches(
    ctx: WorkerContext,
    stream: Any,
    spec: TopicSpec,
    store: Callable[[list[Any]], Awaitable[None]],
    process: Callable[[Any], Awaitable[None]],
) -> None:
    """Settle ``stream``'s messages a batch at a time (:func:`streams.handling.handle_batch`),
    then acknowledge them; one batch at a time, in offset order.

    ``store`` stores a list of parsed records in one transaction; ``process`` handles one
    record (used when the batch fails and its events are taken one by one). As in
    :func:`consume`, a batch that cannot be settled makes the process exit without
    acknowledging any of its messages.
    """
    settings = ctx.settings
    async for batch in stream.noack_take(settings.worker_batch_max, settings.worker_batch_wait_s):
        msgs = [_message(event) for event in batch]
        try:
            await handle_batch(ctx, spec, msgs, store, process)
            for event in batch:  # only now: every message of the batch is settled
                await stream.ack(event)
        except BaseException:
            _exit_unsettled(
                ctx,
                "batch",
                {
                    "topic": spec.name,
                    "messages": len(msgs),
                    "offsets": ", ".join(f"{m.partition}/{m.offset}" for m in msgs[:20]),
                },
            )
