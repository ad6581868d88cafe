"""The worker's CPU processes (DICOM decoding, slide reading, inference), off the event loop.

A reader that crashes its process (a native decoder's segfault on a malformed file, the kernel's
out-of-memory killer) breaks a ``ProcessPoolExecutor`` for good: every later submission would
fail too. :class:`CpuPool` replaces a broken pool and tries the event once more in fresh
processes; an event that kills its process twice is refused with :class:`ScoringCrashedError`
(dead-lettered, naming the exit), and the next event gets a working pool.

An event whose work runs past the pool's time limit (``time_limit_s``; default
``ReadLimits().task_time_limit_s``, 600 s) is stopped: the pool's processes are killed (a
process cannot be interrupted inside native code any other way), the pool is replaced, and the
caller gets :class:`ScoringTimeLimitError`, which names the limit. It is a permanent failure of
the event (never a ``TimeoutError``, which a worker would retry): the worker dead-letters it and
moves on. Other events in flight in the killed processes see a broken pool and are retried in
the fresh one, as after a crash.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import multiprocessing
import threading
import time
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

from models.exceptions import LimitExceededError
from models.limits import DEFAULT_LIMITS
from schemas.errors import DeadLetterError

log = logging.getLogger("irtmon.worker")
A = TypeVar("A")
T = TypeVar("T")


class ScoringCrashedError(DeadLetterError, RuntimeError):
    """The scoring process died on this event in two fresh pools in a row."""


class ScoringTimeLimitError(LimitExceededError):
    """The event's work ran past the pool's time limit; its process was killed."""


class CpuPool:
    """A process pool that replaces itself when a process dies or a task runs too long.

    Parameters
    ----------
    processes
        Worker processes.
    attempts
        Fresh pools an event is tried in when its process dies.
    time_limit_s
        Longest one call may run, in seconds; None for no limit.
    """

    def __init__(
        self,
        processes: int,
        attempts: int = 2,
        *,
        time_limit_s: float | None = DEFAULT_LIMITS.task_time_limit_s,
    ) -> None:
        if time_limit_s is not None and not time_limit_s > 0:
            raise ValueError(f"time_limit_s must be positive or None, got {time_limit_s}")
        self.processes = processes
        self.attempts = attempts
        self.time_limit_s = time_limit_s
        self.replaced = 0
        self.timed_out = 0
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def executor(self) -> concurrent.futures.ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = concurrent.futures.ProcessPoolExecutor(
                    max_workers=self.processes, mp_context=multiprocessing.get_context("spawn")
                )
            return self._pool

    def _replace(self, broken: concurrent.futures.ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is broken:
                self._pool = None
                self.replaced += 1
        broken.shutdown(wait=False, cancel_futures=True)

    def _kill(self, pool: concurrent.futures.ProcessPoolExecutor) -> None:
        """Kill the pool's processes (the one stuck on the task among them) and replace it."""
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            if process.is_alive():
                process.kill()  # the executor's own thread reaps it and marks the pool broken
        self._replace(pool)

    async def warm(self, fn: Callable[[], T]) -> list[T]:
        """Start the pool's processes now and run ``fn`` in them (imports that the first event
        would otherwise wait for), instead of at the first event.

        Submitting one call per process at once makes the executor start them all; which process
        runs which call is the executor's choice.
        """
        loop = asyncio.get_running_loop()
        pool = self.executor()
        return list(
            await asyncio.gather(*(loop.run_in_executor(pool, fn) for _ in range(self.processes)))
        )

    async def run(self, fn: Callable[[A], T], arg: A) -> T:
        """``fn(arg)`` in a pool process; a broken pool is replaced and the call retried.

        Raises
        ------
        ScoringTimeLimitError
            The call ran past ``time_limit_s``; its process was killed and the pool replaced.
        ScoringCrashedError
            The call's process died in ``attempts`` fresh pools.
        """
        loop = asyncio.get_running_loop()
        for attempt in range(1, self.attempts + 1):
            pool = self.executor()
            started = time.monotonic()
            future = loop.run_in_executor(pool, fn, arg)
            try:
                done, _ = await asyncio.wait({future}, timeout=self.time_limit_s)
                if not done:
                    future.cancel()
                    self._kill(pool)
                    self.timed_out += 1
                    raise ScoringTimeLimitError(
                        f"the event's work ran past the time limit task_time_limit_s of "
                        f"{self.time_limit_s:g} s (stopped after "
                        f"{time.monotonic() - started:.0f} s); its process was killed and "
                        "replaced, the event is refused, the worker goes on"
                    )
                return future.result()
            except BrokenProcessPool as err:
                self._replace(pool)
                log.error(
                    "a scoring process died; pool replaced",
                    extra={"attempt": attempt, "error": str(err)[:300]},
                )
        raise ScoringCrashedError(
            f"the scoring process died on this event {self.attempts} times in fresh processes "
            "(a crash or out-of-memory in a reader); the event is refused, the worker goes on"
        )

    def kill(self) -> None:
        """Kill the pool's processes now (before the worker leaves by ``os._exit``, which runs
        no clean-up: they would be left running, orphaned)."""
        with self._lock:
            pool, self._pool = self._pool, None
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            if process.is_alive():
                process.kill()

    def shutdown(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
