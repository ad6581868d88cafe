"""Run a worker: the Faust app with every agent, the web endpoints and JSON logs.

Several workers may run with the same ``IRTMON_CONSUMER_GROUP``: Kafka shares the partitions
among them (one patient's events stay on one partition, so in order).
"""

from __future__ import annotations

import faust

from core.settings import Settings
from streams import logs
from streams.app import build


def run(settings: Settings) -> None:
    """Block running one worker process until it is stopped (SIGTERM/SIGINT)."""
    logs.configure(settings.log_level)
    worker = faust.Worker(
        build(settings),
        loglevel=settings.log_level,
        quiet=True,
        redirect_stdouts=False,
        override_logging=False,
    )
    worker.execute_from_commandline()
