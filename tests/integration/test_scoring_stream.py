"""Imaging events from the virtual clinic through a worker: exactly the expected rows, the
same rows when published twice, and bad series dead-lettered with their reason.

Runs right after test_clinic_replay (file order), whose replay of the same cohort is the first
delivery of these events; this test publishes them once more.
"""

from __future__ import annotations

import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pydicom
import pytest

from clinic import load_events, read_manifest
from core.publish import Publisher
from core.settings import Settings
from schemas import (
    BiopsyAcquired,
    FolderLocation,
    ImagingAcquired,
    ImagingPurpose,
    Modality,
    pseudonymise,
)
from tests.integration.conftest import Workers, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def rows(settings: Settings, sql: str, params: tuple) -> list[tuple]:
    with psycopg.connect(settings.dsn, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


@pytest.mark.timeout(900)
def test_clinic_acquisitions_give_exactly_the_expected_rows(
    settings: Settings, workers: Workers, cohort: Path, pathology_model: Path
) -> None:
    events = load_events(cohort)
    imaging = [e for e in events if isinstance(e, ImagingAcquired)]
    biopsies = [e for e in events if isinstance(e, BiopsyAcquired)]
    patients = sorted({e.patient for e in events})
    ids = [e.event_id for e in imaging + biopsies]

    def scored() -> int:
        return rows(
            settings,
            "SELECT count(*) FROM acquisitions WHERE event_id = ANY(%s) AND status = 'scored'",
            (ids,),
        )[0][0]

    with Publisher(settings) as pub:  # (again, if the replay test ran first)
        pub.publish(events)
    workers.start()
    wait_for(lambda: scored() == len(ids), timeout=600, what="every acquisition scored")

    def snapshot() -> tuple:
        measurements = rows(
            settings,
            "SELECT source_event_id, lesion_id, volume_ml, "
            "longest_diameter_mm, mask_source FROM tumour_measurements "
            "WHERE patient = ANY(%s) AND model_name = 'irtmon-imaging' ORDER BY 1, 2",
            (patients,),
        )
        scores = rows(
            settings,
            "SELECT event_id, score_name, value, model_name FROM timepoint_scores "
            "WHERE patient = ANY(%s) AND model_name IN ('irtmon-imaging', 'pathology-mil') "
            "ORDER BY 1",
            (patients,),
        )
        features = rows(
            settings,
            "SELECT count(*) FROM acquisition_features WHERE patient = ANY(%s) "
            "AND extractor IN ('irtmon-imaging', 'pathology-mil')",
            (patients,),
        )[0][0]
        return measurements, scores, features

    measurements, scores, features = snapshot()
    assert len(measurements) == len(imaging)  # one target lesion per acquisition
    imaging_scores = [s for s in scores if s[3] == "irtmon-imaging"]
    pathology_scores = [s for s in scores if s[3] == "pathology-mil"]
    assert len(imaging_scores) == 2 * len(imaging)  # volume and longest diameter
    assert len(pathology_scores) == 4 * len(biopsies)  # TIL density and 3 phenotype probabilities
    assert features == len(imaging) + len(biopsies)
    sources = {m[4] for m in measurements}
    assert sources == {"seg", "propagated"}

    # the burden follows the ground truth (the imaging issue's own tests hold the tolerances)
    manifest = read_manifest(cohort)
    truth = {
        str(row.study_uid): float(row.lesion_volume_ml)
        for row in manifest.itertuples()
        if str(row.modality) in ("CT", "PCCT") and row.lesion_volume_ml == row.lesion_volume_ml
    }
    measured = rows(
        settings,
        "SELECT a.study_uid, m.volume_ml FROM tumour_measurements m "
        "JOIN acquisitions a ON a.event_id = m.source_event_id "
        "WHERE m.patient = ANY(%s) AND m.model_name = 'irtmon-imaging'",
        (patients,),
    )
    assert len(measured) == len(imaging)
    for study_uid, volume in measured:
        assert volume == pytest.approx(truth[study_uid], rel=0.2), study_uid

    # published twice: the same rows
    with Publisher(settings) as pub:
        pub.publish(events)
    sentinel_patient = pseudonymise(str(uuid.uuid4()), "scoring-sentinel-key-0123456789")
    sentinel = imaging[0].model_copy(
        update={
            "event_id": uuid.uuid4(),
            "patient": sentinel_patient,
            "occurred_at": datetime.now(UTC),
        }
    )
    with Publisher(settings) as pub:
        pub.publish([sentinel])
    wait_for(
        lambda: (
            rows(
                settings,
                "SELECT count(*) FROM acquisitions WHERE event_id = %s "
                "AND status IN ('scored', 'failed')",
                (sentinel.event_id,),
            )[0][0]
            == 1
        ),
        timeout=600,
        what="the sentinel after the replay",
    )
    assert snapshot() == (measurements, scores, features)


@pytest.mark.timeout(600)
def test_non_ct_and_corrupt_series_are_dead_lettered(
    settings: Settings, workers: Workers, cohort: Path
) -> None:
    planning = next(
        e
        for e in load_events(cohort)
        if isinstance(e, ImagingAcquired) and e.purpose == ImagingPurpose.PLANNING
    )
    source = Path(planning.location.path)  # type: ignore[union-attr]
    root = Path(settings.data_roots[0]) / f"bad-{uuid.uuid4().hex[:6]}"
    cases: dict[str, tuple[Path, str]] = {}

    non_ct = root / "non-ct"
    shutil.copytree(source, non_ct)
    for f in non_ct.rglob("*.dcm"):
        ds = pydicom.dcmread(f)
        if ds.Modality == "CT":
            ds.Modality = "MR"
            ds.save_as(f)
    cases["non-CT"] = (non_ct, "not CT")

    corrupt = root / "corrupt"
    shutil.copytree(source, corrupt)
    for f in sorted(corrupt.rglob("*.dcm"))[:5]:
        f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 3])  # truncated files
    cases["corrupt"] = (corrupt, "")

    events = {}
    for name, (folder, _) in cases.items():
        events[name] = ImagingAcquired(
            patient=pseudonymise(name + str(uuid.uuid4()), "bad-series-key-0123456789abcdef"),
            occurred_at=datetime.now(UTC),
            modality=Modality.CT,
            study_uid=planning.study_uid,
            series_uids=planning.series_uids,
            location=FolderLocation(path=str(folder)),
        )
    workers.start()
    with Publisher(settings) as pub:
        pub.publish(events.values())
    for name, event in events.items():
        wait_for(
            lambda e=event: (
                rows(
                    settings,
                    "SELECT count(*) FROM dead_letters WHERE failed_event_id = %s",
                    (e.event_id,),
                )[0][0]
                == 1
            ),
            timeout=300,
            what=f"dead letter of the {name} series",
        )
        error_class, reason = rows(
            settings,
            "SELECT error_class, reason FROM dead_letters WHERE failed_event_id = %s",
            (event.event_id,),
        )[0]
        assert error_class in ("UnreadableInputError", "InsufficientDataError"), (name, reason)
        assert cases[name][1] in reason, (name, reason)
        status = rows(
            settings, "SELECT status FROM acquisitions WHERE event_id = %s", (event.event_id,)
        )[0][0]
        assert status == "failed"
    assert all(p.poll() is None for p in workers.procs)


@pytest.mark.timeout(600)
def test_no_clear_identifier_in_topics_logs_or_metrics(
    settings: Settings, workers: Workers, cohort: Path
) -> None:
    """The virtual clinic's clear patient ids appear only in its ground-truth file: never in
    a topic, a worker's log or its metrics."""
    import urllib.request

    from kafka import KafkaConsumer, TopicPartition

    from schemas.topics import TOPICS

    identities = (cohort / "ground_truth" / "identities.csv").read_text().splitlines()[1:]
    clear_ids = [line.split(",")[0] for line in identities if line]
    assert clear_ids and all(clear_ids)
    proc = workers.start()
    events = load_events(cohort)
    with Publisher(settings) as pub:
        pub.publish(events)
    ids = [e.event_id for e in events if isinstance(e, ImagingAcquired | BiopsyAcquired)]
    wait_for(
        lambda: (
            rows(
                settings,
                "SELECT count(*) FROM acquisitions WHERE event_id = ANY(%s) "
                "AND status IN ('scored', 'failed')",
                (ids,),
            )[0][0]
            == len(ids)
        ),
        timeout=600,
        what="the cohort settled",
    )
    with urllib.request.urlopen(f"http://127.0.0.1:{proc.web_port}/metrics", timeout=5) as r:
        metrics = r.read().decode()
    assert "irtmon_events_total" in metrics
    consumer = KafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        enable_auto_commit=False,
        consumer_timeout_ms=3000,
    )
    tps = [TopicPartition(n, p) for n, spec in TOPICS.items() for p in range(spec.partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    messages = [(r.key or b"") + b" " + r.value for r in consumer]
    consumer.close()
    assert len(messages) > len(events)
    logs = proc.log_path.read_text(errors="replace")  # type: ignore[attr-defined]
    assert "event processed" in logs
    for clear in clear_ids:
        assert clear not in metrics, clear
        assert clear not in logs, clear
        assert not any(clear.encode() in m for m in messages), clear
