"""Prometheus metrics of a worker, served at ``/metrics`` on the worker's web port.

Labels carry topics and outcomes only, never a patient pseudonym.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry()

EVENTS = Counter(
    "irtmon_events_total",
    "Events handled by outcome (processed, dead_lettered).",
    ["topic", "outcome"],
    registry=REGISTRY,
)
RETRIES = Counter(
    "irtmon_transient_retries_total",
    "Transient failures retried (database or broker briefly down).",
    ["topic"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "irtmon_processing_seconds",
    "Time from receiving an event to its committed result.",
    ["topic"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
    registry=REGISTRY,
)
LAG = Gauge(
    "irtmon_consumer_lag",
    "Messages behind the partition's high watermark (committed offsets).",
    ["topic", "partition"],
    registry=REGISTRY,
)
