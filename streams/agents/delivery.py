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
from typing import Any

import faust

from core import delivery
from streams.context import WorkerContext

log = logging.getLogger("irtmon.delivery")


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
                sent = await loop.run_in_executor(
                    None, delivery.deliver_once, ctx.settings, config, sinks
                )
            except Exception:  # a delivery round must never stop the worker; the outbox keeps all
                log.exception("alert delivery round failed; retrying next round")
                continue
            if sent:
                log.info("alert deliveries attempted", extra={"count": sent})
