"""The deadletter topic keeps its records (they carry the original bytes) no longer than the
configured payload retention; the other topics keep the registry's retention."""

from __future__ import annotations

from core.settings import Settings
from irtmon.stack.topics import topic_config
from schemas.topics import DAY_MS, DEADLETTER, TOPICS, TREATMENT_EVENTS


def test_the_deadletter_topic_follows_the_payload_retention() -> None:
    settings = Settings(deadletter_payload_retention_days=7)
    assert topic_config(DEADLETTER, settings)["retention.ms"] == str(7 * DAY_MS)
    assert topic_config(DEADLETTER, Settings())["retention.ms"] == str(30 * DAY_MS)
    assert DEADLETTER.config["retention.ms"] != str(7 * DAY_MS)  # the registry's is not used


def test_other_topics_keep_the_registry_retention() -> None:
    settings = Settings(deadletter_payload_retention_days=7)
    for spec in TOPICS.values():
        if spec is not DEADLETTER:
            assert topic_config(spec, settings) == spec.config
    assert topic_config(TREATMENT_EVENTS, settings)["cleanup.policy"] == "delete"
