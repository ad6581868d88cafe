"""The loop shared by every agent: each message through the envelope, in order."""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from schemas.topics import TopicSpec
from streams.context import worker_context
from streams.handling import Message, handle

log = logging.getLogger("irtmon.worker")

EXIT_UNSETTLED = 70


async def consume(stream: Any, spec: TopicSpec, process: Callable[[Any], Awaitable[None]]) -> None:
    """Settle every message of ``stream`` (processed or dead-lettered) before moving on.

    If a message can be neither processed nor dead-lettered (the broker and the database both
    unreachable past the retry window), the process exits without acknowledging it, so its
    offset is not committed and the message is consumed again after a restart: nothing is lost.
    """
    ctx = worker_context()
    async for event in stream.events():
        m = event.message
        msg = Message(m.topic, m.partition, m.offset, event.key, event.value or b"")
        try:
            await handle(ctx, spec, msg, process)
        except BaseException:
            log.critical(
                "message could not be settled; exiting without acknowledging it",
                exc_info=True,
                extra={"topic": m.topic, "partition": m.partition, "offset": m.offset},
            )
            logging.shutdown()
            os._exit(EXIT_UNSETTLED)
