"""Faust topic objects for the registry's topics. Values are raw bytes: the agents parse them
with :func:`schemas.parse_event`, so that an unreadable message is dead-lettered with its
reason instead of being skipped by a serializer."""

from __future__ import annotations

from typing import Any

import faust

from schemas import topics as registry


class Topics:
    """The registry's topics on one Faust app, and a sender that awaits the broker's ack."""

    def __init__(self, app: faust.App) -> None:
        self.imaging_acquired = _raw(app, registry.IMAGING_ACQUIRED)
        self.biopsy_acquired = _raw(app, registry.BIOPSY_ACQUIRED)
        self.treatment_events = _raw(app, registry.TREATMENT_EVENTS)
        self.scores_timepoint = _raw(app, registry.SCORES_TIMEPOINT)
        self.alerts = _raw(app, registry.ALERTS)
        self.deadletter = _raw(app, registry.DEADLETTER)
        self._by_name = {
            spec.name: getattr(self, spec.name.replace(".", "_"))
            for spec in registry.TOPICS.values()
        }

    async def send(self, topic: str, key: bytes, value: bytes) -> None:
        """Publish and wait for the broker's acknowledgement."""
        pending = await self._by_name[topic].send(key=key, value=value)
        await pending


def _raw(app: faust.App, spec: registry.TopicSpec) -> Any:
    return app.topic(
        spec.name,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=spec.partitions,
        internal=False,
    )
