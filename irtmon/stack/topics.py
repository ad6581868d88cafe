"""Create the registry's topics on the broker irtmon uses (local or existing)."""

from __future__ import annotations

import contextlib

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from core.settings import Settings
from schemas.topics import TOPICS, TopicSpec


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

    Existing topics are left alone (their partition count is not changed, since that would move
    patients between partitions and break per-patient ordering).
    """
    specs = list(TOPICS.values()) if specs is None else specs
    admin = admin_client(settings)
    try:
        existing = set(admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        if not missing:
            return []
        new = [
            NewTopic(
                name=s.name,
                num_partitions=s.partitions,
                replication_factor=replication_factor,
                topic_configs=s.config,
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
