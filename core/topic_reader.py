"""Read a whole Kafka topic: every message from the beginning (within the topic's retention) to
the end offsets it had when the read started, with a throw-away consumer that joins no group and
commits nothing.

People's tools read topics this way: the dead letters kept on the ``deadletter`` topic
(:func:`core.dead_letters.read_topic`) and reconciliation of the input topics with the database
(:func:`core.reconcile.reconcile`).
"""

from __future__ import annotations

from collections.abc import Iterator

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from core.settings import Settings
from schemas.topics import TopicSpec

MAX_PARTITION_FETCH_BYTES = 4 * 1024 * 1024
"""Most bytes fetched per partition at once: above the largest message irtmon publishes (a
dead letter carries up to 512 KiB of payload, base64 grown by a third)."""


def read_whole_topic(
    settings: Settings, spec: TopicSpec, *, idle_ms: int = 1000
) -> Iterator[ConsumerRecord]:
    """Every message on ``spec``'s partitions, each partition's in offset order, until every
    partition has been read up to the end offset it had when the read started (messages that
    arrive meanwhile may come too).

    The read also stops when a poll brings nothing for ``idle_ms`` milliseconds (the broker
    gone, or the messages before an end offset deleted). The consumer is closed when the
    iteration ends or is closed.
    """
    consumer = KafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        enable_auto_commit=False,
        group_id=None,
        max_partition_fetch_bytes=MAX_PARTITION_FETCH_BYTES,
        **settings.kafka_client_config(),
    )
    try:
        tps = [TopicPartition(spec.name, p) for p in range(spec.partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        remaining = {tp for tp in tps if ends[tp] > consumer.position(tp)}
        while remaining:
            batch = consumer.poll(timeout_ms=idle_ms)
            if not batch:
                break
            for tp, records in batch.items():
                yield from records
                if consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        consumer.close()
