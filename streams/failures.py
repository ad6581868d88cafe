"""How a worker routes a failure: retry it (transient) or dead-letter it (permanent).

Transient: the database or the broker is briefly unreachable, a DICOMweb server times out, a
disk the worker writes to (``IRTMON_DERIVED_DIR``) is full. These are retried with exponential
back-off for up to ``transient_retry_s`` seconds. An outage that outlasts the window is still an
outage, not a fault of the event: :class:`OutageOutlastedRetriesError` (routed RETRY) reaches the
agent's loop, which stops the worker without acknowledging the message (exit status 70 for its
supervisor to restart it), so no valid event is dead-lettered and nothing is committed past it.
Everything else is permanent for that event: it goes to the dead-letter topic and table with
its error class and message, and the worker moves on.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import psycopg

from schemas.errors import RetryableError, Route

log = logging.getLogger(__name__)
T = TypeVar("T")

try:  # the broker client's own connection errors
    from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError

    _KAFKA_TRANSIENT: tuple[type[BaseException], ...] = (
        KafkaConnectionError,
        KafkaTimeoutError,
        NodeNotReadyError,
    )
except ImportError:  # pragma: no cover
    _KAFKA_TRANSIENT = ()

TRANSIENT: tuple[type[BaseException], ...] = (
    psycopg.OperationalError,
    ConnectionError,  # includes refused/reset; FileNotFoundError is not one
    TimeoutError,
    asyncio.TimeoutError,
    *_KAFKA_TRANSIENT,
)


DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
"""A full disk or an exhausted quota: an outage of the machine, not a fault of the event."""


def is_disk_full(err: BaseException) -> bool:
    return isinstance(err, OSError) and err.errno in DISK_FULL_ERRNOS


def is_transient(err: BaseException) -> bool:
    """True for failures worth retrying (outages), False for failures of the event itself.

    irtmon's own errors say so by their route (:class:`schemas.errors.Route`); the libraries'
    connection and time-out errors, and a full disk, are outages too.
    """
    if isinstance(err, psycopg.errors.QueryCanceled):
        return False
    route = getattr(err, "route", None)
    if route is not None:
        return route is Route.RETRY
    return isinstance(err, TRANSIENT) or is_disk_full(err)


class OutageOutlastedRetriesError(RetryableError, RuntimeError):
    """A transient failure outlasted the retry window: an outage of the database, the broker, a
    server or a disk, not a fault of the event. Routed RETRY: the worker stops consuming (exits
    for its supervisor) instead of dead-lettering the event, and is not retried again inside
    :func:`with_retries` (its window is spent)."""


async def with_retries(
    action: Callable[[], Awaitable[T]],
    *,
    window_s: float,
    what: str,
    first_delay_s: float = 0.5,
    max_delay_s: float = 30.0,
) -> T:
    """Await ``action()``, retrying transient failures with jittered exponential back-off.

    The window starts at the first failure, so a slow first attempt (a biopsy scored for 20 s
    before its write fails) still gets its retries.
    """
    deadline: float | None = None
    delay = first_delay_s
    attempt = 0
    while True:
        attempt += 1
        try:
            return await action()
        except OutageOutlastedRetriesError:
            raise  # an inner window is spent already: do not wait a second one
        except Exception as err:
            if not is_transient(err):
                raise
            if deadline is None:
                deadline = time.monotonic() + window_s
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                hint = (
                    " (disk full: free space there; the event is consumed again when the worker "
                    "restarts)"
                    if is_disk_full(err)
                    else ""
                )
                raise OutageOutlastedRetriesError(
                    f"{what}: still failing after {attempt} attempts over {window_s:.0f}s: "
                    f"{type(err).__name__}: {err}{hint}"
                ) from err
            sleep = min(delay * (0.5 + random.random()), max_delay_s, remaining)
            log.warning(
                "transient failure, retrying",
                extra={
                    "what": what,
                    "attempt": attempt,
                    "error": type(err).__name__,
                    "reason": str(err)[:300],
                    "retry_in_s": round(sleep, 2),
                },
            )
            await asyncio.sleep(sleep)
            delay = min(delay * 2, max_delay_s)
