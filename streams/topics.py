"""Faust topic objects for the registry's topics. Values are raw bytes: the agents parse them
with :func:`schemas.parse_event`, so that an unreadable message is dead-lettered with its
reason instead of being skipped by a serializer."""

from __future__ import annotations

from schemas import topics as registry
from streams.app import app


def _raw(spec: registry.TopicSpec):
    return app.topic(
        spec.name,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=spec.partitions,
        internal=False,
    )


imaging_acquired = _raw(registry.IMAGING_ACQUIRED)
biopsy_acquired = _raw(registry.BIOPSY_ACQUIRED)
treatment_events = _raw(registry.TREATMENT_EVENTS)
scores_timepoint = _raw(registry.SCORES_TIMEPOINT)
alerts = _raw(registry.ALERTS)
deadletter = _raw(registry.DEADLETTER)
