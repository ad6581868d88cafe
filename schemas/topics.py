"""The topic registry: every Kafka topic irtmon uses, with its record, key and sizing.

The local stack creates these topics; the workers, publishers and tests read names from here.
Messages are keyed by the patient pseudonym so one patient's events stay in order on one
partition. Partitions bound how many worker processes share a topic in one consumer group.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.events import (
    Alert,
    BiopsyAcquired,
    DeadLetter,
    ImagingAcquired,
    Record,
    TimepointScore,
    TreatmentEvent,
)

DAY_MS = 24 * 60 * 60 * 1000


@dataclass(frozen=True)
class TopicSpec:
    """One topic: its name, the record it carries, how it is keyed and sized."""

    name: str
    record: type[Record]
    key: str
    partitions: int
    retention_ms: int
    description: str

    @property
    def config(self) -> dict[str, str]:
        """Topic-level broker configuration."""
        return {"retention.ms": str(self.retention_ms), "cleanup.policy": "delete"}


DEFAULT_PARTITIONS = 8

IMAGING_ACQUIRED = TopicSpec(
    "imaging.acquired",
    ImagingAcquired,
    "patient",
    DEFAULT_PARTITIONS,
    30 * DAY_MS,
    "A CT or PCCT series is stable in the PACS and can be scored.",
)
BIOPSY_ACQUIRED = TopicSpec(
    "biopsy.acquired",
    BiopsyAcquired,
    "patient",
    DEFAULT_PARTITIONS,
    30 * DAY_MS,
    "A biopsy's whole-slide images are scanned.",
)
TREATMENT_EVENTS = TopicSpec(
    "treatment.events",
    TreatmentEvent,
    "patient",
    DEFAULT_PARTITIONS,
    30 * DAY_MS,
    "Radiotherapy course starts and fractions, immunotherapy doses.",
)
SCORES_TIMEPOINT = TopicSpec(
    "scores.timepoint",
    TimepointScore,
    "patient",
    DEFAULT_PARTITIONS,
    30 * DAY_MS,
    "Per-timepoint scores, once stored; the change-point agent consumes them.",
)
ALERTS = TopicSpec(
    "alerts",
    Alert,
    "patient",
    DEFAULT_PARTITIONS,
    90 * DAY_MS,
    "Alerts raised or updated by the change-point agent.",
)
DEADLETTER = TopicSpec(
    "deadletter",
    DeadLetter,
    "patient",
    1,
    90 * DAY_MS,
    "Events no worker could process, with the reason and their original bytes.",
)

TOPICS: dict[str, TopicSpec] = {
    spec.name: spec
    for spec in (
        IMAGING_ACQUIRED,
        BIOPSY_ACQUIRED,
        TREATMENT_EVENTS,
        SCORES_TIMEPOINT,
        ALERTS,
        DEADLETTER,
    )
}


def topic(name: str) -> TopicSpec:
    """Look a topic up by name; ``KeyError`` names the known ones."""
    try:
        return TOPICS[name]
    except KeyError:
        raise KeyError(f"unknown topic {name!r}; known topics: {', '.join(TOPICS)}") from None
