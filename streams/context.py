"""The worker process's shared context: settings, database thread, CPU pool, producer."""

from __future__ import annotations

from functools import lru_cache

from core.settings import get_settings
from streams import topics
from streams.database import Database
from streams.handling import WorkerContext
from streams.pool import CpuPool

_TOPICS = {
    "imaging.acquired": topics.imaging_acquired,
    "biopsy.acquired": topics.biopsy_acquired,
    "treatment.events": topics.treatment_events,
    "scores.timepoint": topics.scores_timepoint,
    "alerts": topics.alerts,
    "deadletter": topics.deadletter,
}


async def send(topic: str, key: bytes, value: bytes) -> None:
    """Publish and wait for the broker's acknowledgement."""
    pending = await _TOPICS[topic].send(key=key, value=value)
    await pending


@lru_cache(maxsize=1)
def worker_context() -> WorkerContext:
    return WorkerContext(settings=get_settings(), db=Database(get_settings()), send=send)


@lru_cache(maxsize=1)
def cpu_pool() -> CpuPool:
    """Processes for DICOM decoding, slide reading and inference (off the event loop)."""
    return CpuPool(get_settings().worker_cpu_processes)
