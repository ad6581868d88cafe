"""deliver_alerts: publish and send pending alert changes (the outbox of ``audit_log``).

Consumes: nothing (a loop: a round every ``IRTMON_ALERT_DELIVERY_INTERVAL_S``, and at once
when the change-point agent has just committed alert changes)
Produces: ``alerts`` (the Alert, headers ``irtmon-action`` and ``irtmon-delivery``), webhook
POSTs and e-mails, for every alert change made anywhere (the decision rule, or a clinician in
the app)
Side effects: delivery receipts in ``audit_log`` (a failed send is retried with back-off on a
later round, never dropped)

Several workers may run; a PostgreSQL advisory lock lets one deliver at a time, so a change is
not sent twice by two workers at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import faust

from core import delivery
from core.db import connect
from core.settings import Settings
from streams.context import WorkerContext

log = logging.getLogger("irtmon.delivery")
_LOCK_ID = 0x1A7_A1E7


def deliver_once(
    settings: Settings, config: delivery.DeliveryConfig, sinks: Sequence[delivery.AlertSink]
) -> int:
    """One round of the outbox; returns how many sends were attempted (0 if another worker
    holds the lock or no sink is configured)."""
    if not sinks:
        return 0
    with connect(settings) as conn:
        locked = conn.execute("SELECT pg_try_advisory_lock(%s)", (_LOCK_ID,)).fetchone()[0]
        conn.commit()
        if not locked:
            return 0
        try:
            return len(delivery.deliver_pending(conn, sinks, config))
        finally:
            conn.rollback()
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
            conn.commit()


def register(app: faust.App, topics: Any, ctx: WorkerContext) -> None:
    config = delivery.DeliveryConfig.from_settings(ctx.settings)
    sinks = config.sinks()
    interval = ctx.settings.alert_delivery_interval_s

    @app.task
    async def deliver_alerts() -> None:
        due = ctx.delivery_due = asyncio.Event()
        loop = asyncio.get_running_loop()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(due.wait(), timeout=interval)
            due.clear()
            try:
                sent = await loop.run_in_executor(None, deliver_once, ctx.settings, config, sinks)
            except Exception:  # a delivery round must never stop the worker; the outbox keeps all
                log.exception("alert delivery round failed; retrying next round")
                continue
            if sent:
                log.info("alert deliveries attempted", extra={"count": sent})
