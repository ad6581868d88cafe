"""The workers' database access: sync sinks run in one dedicated thread, off the event loop.

One connection per worker, used by one thread, so sinks stay plain psycopg functions and never
block the event loop. A broken connection is dropped and reopened on the next call; the error
reaches the caller as a transient failure, which retries with back-off.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg

from core.db import connect
from core.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")


class Database:
    """Run ``fn(conn, *args)`` in a transaction on the worker's database thread."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._conn: psycopg.Connection | None = None
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="irtmon-db")

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = connect(self._settings)
        return self._conn

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        conn = self._connection()
        try:
            with conn.transaction():
                return fn(conn, *args)
        except psycopg.OperationalError:
            # the server went away: drop the connection, let the caller retry
            try:
                conn.close()
            finally:
                self._conn = None
            raise

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` in one committed transaction, off the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._call, fn, *args)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._thread.shutdown(wait=False)
