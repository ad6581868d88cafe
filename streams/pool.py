"""The worker's CPU processes (DICOM decoding, slide reading, inference), off the event loop.

A reader that crashes its process (a native decoder's segfault on a malformed file, the kernel's
out-of-memory killer) breaks a ``ProcessPoolExecutor`` for good: every later submission would
fail too. :class:`CpuPool` replaces a broken pool and tries the event once more in fresh
processes; an event that kills its process twice is refused with :class:`ScoringCrashedError`
(dead-lettered, naming the exit), and the next event gets a working pool.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

log = logging.getLogger("irtmon.worker")
A = TypeVar("A")
T = TypeVar("T")


class ScoringCrashedError(RuntimeError):
    """The scoring process died on this event in two fresh pools in a row."""


class CpuPool:
    """A process pool that replaces itself when a process dies."""

    def __init__(self, processes: int, attempts: int = 2) -> None:
        self.processes = processes
        self.attempts = attempts
        self.replaced = 0
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

    async def run(self, fn: Callable[[A], T], arg: A) -> T:
        """``fn(arg)`` in a pool process; a broken pool is replaced and the call retried."""
        loop = asyncio.get_running_loop()
        for attempt in range(1, self.attempts + 1):
            pool = self.executor()
            try:
                return await loop.run_in_executor(pool, fn, arg)
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

    def shutdown(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
