"""Create the registry's topics on the broker irtmon uses (local or existing)."""

from __future__ import annotations

import contextlib

from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.errors import TopicAlreadyExistsError

from core.settings import Settings
from schemas.topics import DAY_MS, DEADLETTER, TOPICS, TopicSpec


def topic_config(spec: TopicSpec, settings: Settings) -> dict[str, str]:
    """The broker configuration of ``spec`` on this deployment: the registry's, except the
    ``deadletter`` topic, which keeps its records (they carry the original bytes) for
    ``IRTMON_DEADLETTER_PAYLOAD_RETENTION_DAYS``."""
    config = dict(spec.config)
    if spec.name == DEADLETTER.name:
        config["retention.ms"] = str(int(settings.deadletter_payload_retention_days * DAY_MS))
    return config


def admin_client(settings: Settings) -> KafkaAdminClient:
    return KafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers,
        client_id="irtmon-admin",
        request_timeout_ms=15000,
        **settings.kafka_client_config(),
    )


def ensure_topics(
    settings: Settings, specs: list[TopicSpec] | None = None, replication_factor: int = 1
) -> list[str]:
    """Create the missing topics of the registry; return the names created.

    Existing topics keep their partition count (changing it would move patients between
    partitions and break per-patient ordering); an existing ``deadletter`` topic gets the
    configured payload retention (:func:`topic_config`).
    """
    specs = list(TOPICS.values()) if specs is None else specs
    admin = admin_client(settings)
    try:
        existing = set(admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        if DEADLETTER.name in existing and any(s.name == DEADLETTER.name for s in specs):
            admin.alter_configs(
                [
                    ConfigResource(
                        ConfigResourceType.TOPIC,
                        DEADLETTER.name,
                        configs=topic_config(DEADLETTER, settings),
                    )
                ]
            )
        if not missing:
            return []
        new = [
            NewTopic(
                name=s.name,
                num_partitions=s.partitions,
                replication_factor=replication_factor,
                topic_configs=topic_config(s, settings),
            )
            for s in missing
        ]
        # another process may create them concurrently
        with contextlib.suppress(TopicAlreadyExistsError):
            admin.create_topics(new_topics=new, validate_only=False)
        return [s.name for s in missing]
    finally:
        admin.close()


def describe_topics(settings: Settings) -> dict[str, int]:
    """Topic name -> partition count, for the registry's topics present on the broker."""
    admin = admin_client(settings)
    try:
        described = admin.describe_topics([name for name in TOPICS])
        return {
            (d.get("name") or d.get("topic")): len(d["partitions"])
            for d in described
            if not d.get("error_code") and d.get("partitions")
        }
    finally:
        admin.close()


def unconsumed(settings: Settings, topic: str, group: str | None = None) -> tuple[int, int]:
    """How many messages of ``topic`` the consumer group (default: the workers',
    ``IRTMON_CONSUMER_GROUP``) has not committed yet, and how many the topic holds (the sum of
    its partitions' end offsets), as ``(unconsumed, end)``.

    A partition the group has never committed counts from its earliest offset. The workers
    commit what they have processed every ``IRTMON_COMMIT_INTERVAL_S``, so a message handled
    just now may still count as unconsumed for that long.
    """
    from kafka import TopicPartition
    from kafka.admin import OffsetSpec

    group = group or settings.consumer_group
    admin = admin_client(settings)
    try:
        described = admin.describe_topics([topic])
        partitions = [
            TopicPartition(topic, p["partition_index"])
            for d in described
            for p in d.get("partitions") or []
        ]
        if not partitions:
            return 0, 0
        ends = admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in partitions})
        starts = admin.list_partition_offsets({tp: OffsetSpec.EARLIEST for tp in partitions})
        committed = admin.list_group_offsets({group: partitions}).get(group, {})
    finally:
        admin.close()
    left = 0
    for tp in partitions:
        done = committed.get(tp)
        position = done.offset if done is not None and done.offset >= 0 else starts[tp].offset
        left += max(0, ends[tp].offset - position)
    return left, sum(ends[tp].offset for tp in partitions)
