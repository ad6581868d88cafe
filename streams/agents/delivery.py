"""deliver_alerts: send pending alert changes to the configured webhook and e-mail.

Consumes: nothing (a timer every ``IRTMON_ALERT_DELIVERY_INTERVAL_S``)
Produces: webhook POSTs and e-mails
Side effects: delivery receipts in ``audit_log`` (the outbox: a failed send is retried with
back-off on a later round, never dropped)

Several workers may run; a PostgreSQL advisory lock lets one deliver at a time, so a change is
not sent twice by two workers at once.
"""

from __future__ import annotations

import asyncio
import logging

from core.db import connect
from core.settings import Settings, get_settings
from streams import delivery
from streams.app import app

log = logging.getLogger("irtmon.delivery")
_LOCK_ID = 0x1A7_A1E7


def deliver_once(settings: Settings) -> int:
    """One round of the outbox; returns how many sends were attempted (0 if another worker
    holds the lock or no sink is configured)."""
    config = delivery.DeliveryConfig.from_settings(settings)
    sinks = config.sinks()
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


@app.timer(interval=get_settings().alert_delivery_interval_s)
async def deliver_alerts() -> None:
    try:
        sent = await asyncio.get_running_loop().run_in_executor(None, deliver_once, get_settings())
    except Exception:  # a delivery round must never stop the worker; the outbox keeps all
        log.exception("alert delivery round failed; retrying next round")
        return
    if sent:
        log.info("alert deliveries attempted", extra={"count": sent})
