"""Run a worker: the Faust app with every agent, the web endpoints and JSON logs.

Several workers may run with the same ``IRTMON_CONSUMER_GROUP``: Kafka shares the partitions
among them (one patient's events stay on one partition, so in order).
"""

from __future__ import annotations

import faust

from core.settings import Settings
from streams import logs


def run(settings: Settings) -> None:
    """Block running one worker process until it is stopped (SIGTERM/SIGINT)."""
    logs.configure(settings.log_level)
    import streams.agents
    import streams.web  # noqa: F401 - registers the endpoints
    from streams.app import app

    worker = faust.Worker(
        app,
        loglevel=settings.log_level,
        quiet=True,
        redirect_stdouts=False,
        override_logging=False,
    )
    worker.execute_from_commandline()
