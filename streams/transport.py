"""Faust's aiokafka transport, with the consumer's fetch wait taken from the settings.

Faust builds its worker consumer with ``fetch_max_wait_ms=1500``, written into its driver.
aiokafka keeps at most one fetch in flight per broker and leaves out of it the partitions
whose fetched records are still being consumed. So once the partitions in that fetch have no
new data (they are caught up), the broker holds it for up to 1.5 s, and the other partitions,
consumed in the meantime, cannot be fetched again until it returns: every event published in
that window waited up to 1.5 s. Measured with ``bench.stream_throughput``: a stall of 0.8 to
1.2 s in every run of 3,000 events, a third of the run. :class:`Transport` builds the same
consumer with ``fetch_max_wait_ms`` from ``IRTMON_WORKER_FETCH_WAIT_S`` (default 0.1 s): the
broker answers an empty fetch that much sooner (ten small requests a second from an idle
worker), and nothing else about consuming changes.
"""

from __future__ import annotations

from typing import Any

import aiokafka
import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

from core.settings import Settings


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread; its worker consumer waits at most the transport's
    ``fetch_wait_s`` for a fetch to fill."""

    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # faust passes 1500 to the constructor; aiokafka hands this attribute to its Fetcher
        # in start(), which runs later
        if not hasattr(consumer, "_fetch_max_wait_ms"):  # pragma: no cover - an aiokafka change
            raise RuntimeError(
                "aiokafka's consumer no longer has _fetch_max_wait_ms; check "
                "streams/transport.py against the installed aiokafka"
            )
        consumer._fetch_max_wait_ms = max(1, round(transport.fetch_wait_s * 1000))
        return consumer


class Consumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer, on :class:`ConsumerThread`."""

    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    """Faust's aiokafka transport, whose worker consumer waits at most ``fetch_wait_s``
    seconds for a fetch to fill."""

    Consumer = Consumer

    def __init__(self, *args: Any, fetch_wait_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fetch_wait_s = fetch_wait_s


# mode names a subclass's logger after its module; faust's records keep faust's logger, which
# the worker's logging keeps at WARNING (streams.logs)
ConsumerThread.logger = Consumer.logger = faust_aiokafka.logger


def consumer_transport(app: faust.App, settings: Settings) -> Transport:
    """The consumer transport for ``app`` (``IRTMON_WORKER_FETCH_WAIT_S``); set it as
    ``app.transport`` before anything uses the app's consumer."""
    return Transport(app.conf.broker_consumer, app, fetch_wait_s=settings.worker_fetch_wait_s)
