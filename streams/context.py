"""What the agents of one worker process share: settings, the database thread, the CPU pool,
the sender, and a way to start an alert-delivery round now."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from core.alerts import decision_config
from core.settings import Settings
from models.changepoint import DecisionConfig
from streams.database import Database
from streams.pool import CpuPool


@dataclass
class WorkerContext:
    """Shared by the agents of one worker process (built once by :func:`streams.app.build`)."""

    settings: Settings
    db: Database
    send: Callable[[str, bytes, bytes], Awaitable[None]]  # (topic, key, value), awaits the ack
    pool: CpuPool | None = None
    decision: DecisionConfig = field(default_factory=DecisionConfig)
    delivery_due: asyncio.Event | None = None

    @classmethod
    def create(cls, settings: Settings, topics: object) -> WorkerContext:
        return cls(
            settings=settings,
            db=Database(settings),
            send=topics.send,  # type: ignore[attr-defined]
            pool=CpuPool(
                settings.worker_cpu_processes, time_limit_s=settings.limits().task_time_limit_s
            ),
            decision=decision_config(settings.alert_policy),
        )

    def deliver_soon(self) -> None:
        """Ask the delivery loop for a round now (alert changes were just committed)."""
        if self.delivery_due is not None:
            self.delivery_due.set()
