"""A produce/consume round trip on every registry topic, on the real broker."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.partitioner.default import murmur2

from core.publish import Publisher, topic_for
from core.settings import Settings
from irtmon.samples import sample_events
from irtmon.stack.topics import describe_topics
from schemas import TOPICS, Alert, AlertKind, DeadLetter, parse_event

pytestmark = pytest.mark.integration


def one_event_per_topic() -> dict[str, object]:
    events: dict[str, object] = {}
    for e in sample_events():
        events.setdefault(topic_for(e).name, e)
    patient = next(iter(events.values())).patient  # type: ignore[attr-defined]
    now = datetime.now(UTC)
    events["alerts"] = Alert(
        patient=patient,
        occurred_at=now,
        kind=AlertKind.SUSPECTED_NON_RESPONSE,
        probability=0.9,
        summary="round-trip test alert",
    )
    events["deadletter"] = DeadLetter(
        patient=patient,
        occurred_at=now,
        source_topic="imaging.acquired",
        partition=0,
        offset=1,
        error_class="InvalidEventError",
        reason="test",
        payload_b64="e30=",
    )
    return events


def test_topics_exist_with_registry_partitions(settings: Settings) -> None:
    described = describe_topics(settings)
    for spec in TOPICS.values():
        assert described.get(spec.name) == spec.partitions, spec.name


def test_round_trip_on_every_topic_with_the_registry_key(settings: Settings) -> None:
    events = one_event_per_topic()
    assert set(events) == set(TOPICS)
    consumer = KafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        group_id=f"roundtrip-{uuid.uuid4()}",
        auto_offset_reset="latest",
        enable_auto_commit=False,
        consumer_timeout_ms=1000,
    )
    partitions = [
        TopicPartition(name, p) for name, spec in TOPICS.items() for p in range(spec.partitions)
    ]
    consumer.assign(partitions)
    consumer.seek_to_end()
    for tp in partitions:
        consumer.position(tp)  # resolve the end offsets before producing
    with Publisher(settings) as pub:
        for name, event in events.items():
            pub.send(event, topic=name)  # type: ignore[arg-type]
        pub.flush()

    received: dict[str, object] = {}
    deadline = time.monotonic() + 30
    while len(received) < len(events) and time.monotonic() < deadline:
        for tp, records in consumer.poll(timeout_ms=500).items():
            for record in records:
                spec = TOPICS[tp.topic]
                event = parse_event(spec.record, record.value)
                if event.event_id != events[tp.topic].event_id:  # type: ignore[attr-defined]
                    continue
                # Keyed by the pseudonym, on the partition the key hashes to: a patient's
                # events stay in order on one partition.
                assert record.key == event.patient.encode()  # type: ignore[union-attr]
                expected = (murmur2(record.key) & 0x7FFFFFFF) % spec.partitions
                assert record.partition == expected
                received[tp.topic] = event
    consumer.close()
    assert set(received) == set(TOPICS)
    for name, event in events.items():
        assert received[name] == event


def test_unconsumed_counts_what_a_group_has_not_committed(settings: Settings) -> None:
    """The demo's end condition: a consumer group's uncommitted messages on a topic."""
    from kafka import KafkaProducer
    from kafka.structs import OffsetAndMetadata

    from irtmon.stack.topics import ensure_topics, unconsumed
    from schemas.topics import SCORES_TIMEPOINT, TopicSpec

    name = f"unconsumed-{uuid.uuid4().hex[:8]}"
    spec = TopicSpec(name, SCORES_TIMEPOINT.record, "patient", 2, 3_600_000, "test topic")
    assert ensure_topics(settings, [spec]) == [name]
    group = f"unconsumed-{uuid.uuid4()}"
    assert unconsumed(settings, name, group) == (0, 0)
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    for i in range(5):
        producer.send(name, key=b"k", value=str(i).encode(), partition=i % 2)
    producer.flush()
    producer.close()
    assert unconsumed(settings, name, group) == (5, 5)  # never committed: all of it

    consumer = KafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers, group_id=group, enable_auto_commit=False
    )
    first, second = TopicPartition(name, 0), TopicPartition(name, 1)
    try:
        consumer.assign([first, second])
        consumer.commit({first: OffsetAndMetadata(2, "", -1)})
        assert unconsumed(settings, name, group) == (3, 5)  # 1 left on 0, 2 never committed
        consumer.commit({first: OffsetAndMetadata(3, "", -1), second: OffsetAndMetadata(2, "", -1)})
        assert unconsumed(settings, name, group) == (0, 5)
    finally:
        consumer.close()
