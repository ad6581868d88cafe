"""Publish events to their registry topics with kafka-python, keyed by patient pseudonym.

Producers are idempotent with ``acks='all'`` (kafka-python 3.x defaults, set explicitly here),
so a retried send does not duplicate a message on the broker.
"""

from __future__ import annotations

from collections.abc import Iterable

from kafka import KafkaProducer

from core.settings import Settings
from schemas.events import Record
from schemas.topics import TOPICS, TopicSpec

_BY_RECORD: dict[type[Record], TopicSpec] = {spec.record: spec for spec in TOPICS.values()}


def topic_for(event: Record) -> TopicSpec:
    """The registry topic that carries this record type."""
    try:
        return _BY_RECORD[type(event)]
    except KeyError:
        raise TypeError(f"no topic carries {type(event).__name__} records") from None


class Publisher:
    """A thin, reusable producer of irtmon events. Use as a context manager."""

    def __init__(self, settings: Settings, client_id: str = "irtmon-publisher") -> None:
        self._producer = KafkaProducer(
            bootstrap_servers=settings.bootstrap_servers,
            client_id=client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            **settings.kafka_client_config(),
        )

    def send(
        self,
        event: Record,
        topic: str | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        """Queue one event on its topic (or ``topic``), keyed by its patient."""
        name = topic or topic_for(event).name
        self._producer.send(
            name,
            key=event.key,  # type: ignore[attr-defined]
            value=event.to_json_bytes(),
            headers=headers or None,
        )

    def send_raw(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        """Queue raw bytes (for replays and for testing bad input)."""
        self._producer.send(topic, key=key, value=value)

    def publish(self, events: Iterable[Record], timeout: float = 30.0) -> int:
        """Send events and wait until the broker acknowledged all of them; return the count."""
        count = 0
        for event in events:
            self.send(event)
            count += 1
        self.flush(timeout)
        return count

    def flush(self, timeout: float = 30.0) -> None:
        self._producer.flush(timeout=timeout)

    def close(self) -> None:
        self._producer.close(timeout=10)

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
