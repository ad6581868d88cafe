"""The worker's web endpoints: ``/health`` (JSON) and ``/metrics`` (Prometheus text).

Also a timer that publishes consumer lag per assigned partition.
"""

from __future__ import annotations

import logging

import faust
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streams import metrics

log = logging.getLogger(__name__)


def register(app: faust.App) -> None:
    """Add ``/health``, ``/metrics`` and the lag timer to ``app``."""

    @app.page("/health")
    async def health(self, request):
        """Liveness and readiness: 200 with the assigned partitions once the worker consumes."""
        assignment = sorted(f"{tp.topic}:{tp.partition}" for tp in app.consumer.assignment())
        return self.json({"status": "ok", "app": app.conf.id, "assigned": assignment})

    @app.page("/metrics")
    async def prometheus_metrics(self, request):
        # aiohttp wants the charset apart from the content type
        return self.bytes(
            generate_latest(metrics.REGISTRY), content_type=CONTENT_TYPE_LATEST.split(";")[0]
        )

    @app.timer(interval=5.0)
    async def record_lag() -> None:
        """Consumer lag = high watermark - committed offset, per assigned partition."""
        consumer = app.consumer
        for tp in consumer.assignment():
            try:
                highwater = consumer.highwater(tp)
            except Exception:
                continue
            committed = consumer._committed_offset.get(tp)  # faust keeps the last commit here
            if highwater is None:
                continue
            lag = max(0, highwater - (committed or 0))
            metrics.LAG.labels(tp.topic, str(tp.partition)).set(lag)
