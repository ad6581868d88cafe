"""The worker's Kafka consumer waits at most ``IRTMON_WORKER_FETCH_WAIT_S`` per fetch, not
faust's 1.5 s (streams/transport.py). Built, not started: no broker is needed."""

from __future__ import annotations

import asyncio

import aiokafka
import pytest

from core.settings import Settings
from streams import transport
from streams.app import build


def worker_consumer(settings: Settings) -> aiokafka.AIOKafkaConsumer:
    """The aiokafka consumer the worker app would start with ``settings``."""

    async def create() -> aiokafka.AIOKafkaConsumer:
        app = build(settings)
        assert isinstance(app.transport, transport.Transport)
        thread = app.consumer._thread
        assert isinstance(thread, transport.ConsumerThread)
        consumer = thread._create_worker_consumer(app.transport)
        await consumer.stop()  # never started: nothing to close but its client
        return consumer

    return asyncio.run(create())


@pytest.mark.parametrize(("wait_s", "wait_ms"), [(0.1, 100), (0.25, 250), (2.0, 2000)])
def test_the_worker_consumer_waits_the_setting_per_fetch(wait_s: float, wait_ms: int) -> None:
    consumer = worker_consumer(Settings(worker_fetch_wait_s=wait_s))
    assert consumer._fetch_max_wait_ms == wait_ms


def test_the_default_wait_is_well_under_faust_s() -> None:
    assert Settings().worker_fetch_wait_s == 0.1
    assert worker_consumer(Settings())._fetch_max_wait_ms == 100


def test_the_rest_of_faust_s_consumer_settings_stand() -> None:
    """Only the fetch wait changes: the group, offsets reset and commit policy stay faust's."""
    settings = Settings(consumer_group="transport-test")
    consumer = worker_consumer(settings)
    assert consumer._group_id == "transport-test"
    assert consumer._enable_auto_commit is False
    assert consumer._auto_offset_reset == "earliest"
    assert consumer._fetch_min_bytes == 1  # a fetch returns as soon as anything is there


def test_faust_s_consumer_logs_under_faust_s_logger() -> None:
    """So the worker's logging keeps them at WARNING, as before (streams.logs)."""
    assert transport.Consumer.logger.name == "faust.transport.drivers.aiokafka"
    assert transport.ConsumerThread.logger.name == "faust.transport.drivers.aiokafka"
