"""The loop shared by every agent: each message through the envelope, in order.

An agent started with ``concurrency`` > 1 (the scoring agents, ``IRTMON_WORKER_CONCURRENCY``)
runs that many copies of this loop on one shared queue. Faust hands the messages out in offset
order, but copies would then finish them in any order; so each message first takes its
patient's lock (message key) before any await. ``asyncio.Lock`` serves waiters first come,
first served, so one patient's events are still processed one at a time and in partition
order, while different patients' events overlap.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from schemas.topics import TopicSpec
from streams.context import WorkerContext
from streams.handling import Message, handle

log = logging.getLogger("irtmon.worker")

EXIT_UNSETTLED = 70


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


async def consume(
    ctx: WorkerContext,
    stream: Any,
    spec: TopicSpec,
    process: Callable[[Any], Awaitable[None]],
    locks: PatientLocks | None = None,
) -> None:
    """Settle every message of ``stream`` (processed or dead-lettered) before moving on.

    If a message can be neither processed nor dead-lettered (the broker and the database both
    unreachable past the retry window), the process exits without acknowledging it, so its
    offset is not committed and the message is consumed again after a restart: nothing is lost.
    """
    async for event in stream.events():
        m = event.message
        msg = Message(m.topic, m.partition, m.offset, event.key, event.value or b"")
        try:
            if locks is None:
                await handle(ctx, spec, msg, process)
            else:  # taken before any await: in the order the messages were handed out
                async with locks.hold(event.key):
                    await handle(ctx, spec, msg, process)
        except BaseException:
            log.critical(
                "message could not be settled; exiting without acknowledging it",
                exc_info=True,
                extra={"topic": m.topic, "partition": m.partition, "offset": m.offset},
            )
            logging.shutdown()
            os._exit(EXIT_UNSETTLED)
