"""`irtmon clinic replay` publishes a cohort's events to their topics, keyed by pseudonym,
as a scanner, a LIMS and an oncology system would."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from clinic import load_events
from core.publish import topic_for
from core.settings import Settings
from irtmon.stack.private import settings_env
from schemas import TOPICS, parse_event
from tests.conftest import REPO

pytestmark = pytest.mark.integration


def test_replay_publishes_every_event_on_its_topic(settings: Settings, cohort: Path) -> None:
    events = load_events(cohort)
    expected = {e.event_id: topic_for(e).name for e in events}
    assert {"imaging.acquired", "biopsy.acquired", "treatment.events"} == set(expected.values())

    consumer = KafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        group_id=f"replay-{uuid.uuid4()}",
        enable_auto_commit=False,
    )
    tps = [
        TopicPartition(name, p)
        for name in set(expected.values())
        for p in range(TOPICS[name].partitions)
    ]
    consumer.assign(tps)
    consumer.seek_to_end()
    for tp in tps:
        consumer.position(tp)

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "irtmon",
            "clinic",
            "replay",
            "--cohort",
            str(cohort),
            "--speedup",
            "1e12",
        ],
        env=settings_env(settings),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert f"published {len(events)} events" in result.stderr + result.stdout

    seen: dict[uuid.UUID, str] = {}
    for _ in range(60):
        for tp, records in consumer.poll(timeout_ms=500).items():
            for r in records:
                event = parse_event(TOPICS[tp.topic].record, r.value)
                assert r.key == event.patient.encode()
                seen[event.event_id] = tp.topic
        if len(seen) >= len(expected):
            break
    consumer.close()
    assert seen == expected
    # no clear identifier travels: only pseudonyms in the messages
    identities = (cohort / "ground_truth" / "identities.csv").read_text()
    clear_ids = [line.split(",")[0] for line in identities.splitlines()[1:] if line]
    blob = json.dumps([e.model_dump(mode="json") for e in events])
    assert clear_ids and not any(cid in blob for cid in clear_ids)
