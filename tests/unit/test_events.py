"""The event contracts accept what they should and name the field of what they refuse."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from core.publish import topic_for
from irtmon.samples import sample_events
from schemas import (
    TOPICS,
    Alert,
    AlertKind,
    BiopsyAcquired,
    DeadLetter,
    ImagingAcquired,
    InvalidEventError,
    TimepointScore,
    TreatmentEvent,
    parse_event,
    score_event_id,
)

P = "psn-0123456789abcdef"
T = datetime(2026, 3, 1, 12, tzinfo=UTC)


def imaging_payload(**changes: object) -> dict:
    payload = {
        "schema_version": 1,
        "event_id": str(uuid.uuid4()),
        "patient": P,
        "occurred_at": T.isoformat(),
        "modality": "PCCT",
        "study_uid": "1.2.3",
        "series_uids": ["1.2.3.4", "1.2.3.5"],
        "location": {"kind": "folder", "path": "/data/p/ct1"},
    }
    payload.update(changes)
    return payload


@pytest.mark.parametrize("event", sample_events(), ids=lambda e: type(e).__name__)
def test_every_sample_event_round_trips_through_json(event) -> None:
    spec = topic_for(event)
    again = parse_event(spec.record, event.to_json_bytes())
    assert again == event
    assert event.key == event.patient.encode()


def test_samples_cover_every_producer_topic() -> None:
    topics = {topic_for(e).name for e in sample_events()}
    assert topics == {"imaging.acquired", "biopsy.acquired", "treatment.events", "scores.timepoint"}


def test_dicomweb_location_parses() -> None:
    event = parse_event(
        ImagingAcquired,
        imaging_payload(location={"kind": "dicomweb", "url": "http://pacs:8042/dicom-web"}),
    )
    assert event.location.kind == "dicomweb"
    assert str(event.location.url).startswith("http://pacs:8042")


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"series_uids": "1.2.3.4"}, "series_uids", "list"),  # wrong type
        ({"modality": "MRI"}, "modality", "CT"),  # not in the vocabulary
        ({"patient": "John Smith"}, "patient", "pattern"),  # a clear name is refused
        ({"occurred_at": "2026-03-01T12:00:00"}, "occurred_at", "timezone"),  # naive time
        ({"study_uid": "1.2.abc"}, "study_uid", "pattern"),
        ({"series_uids": []}, "series_uids", "at least 1"),
        ({"series_uids": ["1.2", "1.2"]}, "series_uids", "distinct"),
        ({"location": {"kind": "folder"}}, "location.folder.path", "required"),
        ({"location": {"kind": "ftp", "path": "x"}}, "location", "kind"),
        ({"schema_version": 7}, "schema_version", "not supported"),
        ({"schema_version": "one"}, "schema_version", "integer"),
        ({"surprise": 1}, "surprise", "not permitted"),
    ],
)
def test_invalid_imaging_event_names_the_field(changes: dict, field: str, words: str) -> None:
    with pytest.raises(InvalidEventError) as info:
        parse_event(ImagingAcquired, imaging_payload(**changes))
    assert field in [f for f, _ in info.value.errors], info.value.errors
    assert field in str(info.value)
    assert words.lower() in str(info.value).lower()


@pytest.mark.parametrize(
    "missing", ["patient", "occurred_at", "modality", "schema_version", "event_id"]
)
def test_missing_field_is_named(missing: str) -> None:
    payload = imaging_payload()
    del payload[missing]
    with pytest.raises(InvalidEventError) as info:
        parse_event(ImagingAcquired, payload)
    assert (missing, "Field required") in info.value.errors


@pytest.mark.parametrize(
    "raw", [b"{not json", b"[1, 2]", b"\xff\xfe", b'"a string"', b"x" * 1_000_001]
)
def test_unreadable_messages_are_refused(raw: bytes) -> None:
    with pytest.raises(InvalidEventError) as info:
        parse_event(ImagingAcquired, raw)
    assert info.value.errors[0][0] == "<message>"


def test_treatment_detail_is_checked_by_kind() -> None:
    base = {
        "schema_version": 1,
        "event_id": str(uuid.uuid4()),
        "patient": P,
        "occurred_at": T.isoformat(),
    }
    ok = parse_event(
        TreatmentEvent,
        {
            **base,
            "treatment": {
                "kind": "rt_fraction",
                "course_id": "C1",
                "fraction_number": 3,
                "dose_gy": 2.0,
            },
        },
    )
    assert ok.treatment.kind == "rt_fraction"
    with pytest.raises(InvalidEventError) as info:
        parse_event(
            TreatmentEvent,
            {
                **base,
                "treatment": {
                    "kind": "rt_fraction",
                    "course_id": "C1",
                    "fraction_number": 3,
                    "dose_gy": 99,
                },
            },
        )
    assert "treatment.rt_fraction.dose_gy" in str(info.value)


def test_score_bounds_must_bracket_the_value() -> None:
    src = uuid.uuid4()
    kwargs = dict(
        patient=P,
        occurred_at=T,
        source_event_id=src,
        score_name="response_probability",
        model_name="m",
        model_version="1",
    )
    TimepointScore(value=0.4, lower=0.3, upper=0.6, **kwargs)
    with pytest.raises(ValueError, match="lower bound"):
        TimepointScore(value=0.4, lower=0.5, **kwargs)
    with pytest.raises(ValueError, match="finite"):
        TimepointScore(value=float("nan"), **kwargs)


def test_score_event_id_is_deterministic_and_version_specific() -> None:
    src = uuid.uuid4()
    a = score_event_id(src, "response_probability", "response", "1")
    assert a == score_event_id(src, "response_probability", "response", "1")
    assert a != score_event_id(src, "response_probability", "response", "2")
    assert a != score_event_id(src, "ct_immune_score", "response", "1")


def test_alert_and_dead_letter_contracts() -> None:
    alert = Alert(
        patient=P,
        occurred_at=T,
        kind=AlertKind.SUSPECTED_NON_RESPONSE,
        probability=0.82,
        summary="Tumour volume rose 35% over nadir since week 8.",
    )
    assert parse_event(Alert, alert.to_json_bytes()).status == "open"
    with pytest.raises(ValueError, match="less than or equal to 1"):
        Alert(
            patient=P,
            occurred_at=T,
            kind=AlertKind.SUSPECTED_NON_RESPONSE,
            probability=1.2,
            summary="x",
        )
    letter = DeadLetter(
        occurred_at=T,
        source_topic="imaging.acquired",
        partition=3,
        offset=17,
        error_class="InvalidEventError",
        reason="patient: pattern",
        payload_b64="e30=",
    )
    assert letter.patient is None and letter.key == b"unknown"
    assert parse_event(DeadLetter, letter.to_json_bytes()) == letter


def test_every_topic_record_rejects_unknown_versions() -> None:
    for spec in TOPICS.values():
        schema = spec.record.model_json_schema()
        assert schema["properties"]["schema_version"]["enum"] == [1]
        with pytest.raises(InvalidEventError, match="schema_version"):
            parse_event(
                spec.record, json.dumps({"schema_version": 2, "event_id": str(uuid.uuid4())})
            )


def test_biopsy_lab_values_range() -> None:
    base = {
        "schema_version": 1,
        "event_id": str(uuid.uuid4()),
        "patient": P,
        "occurred_at": T.isoformat(),
        "specimen_id": "S1",
        "slides": [{"slide_id": "A", "path": "/s/a.tiff"}],
    }
    assert parse_event(BiopsyAcquired, {**base, "lab": {"pd_l1_tps": 50}}).lab.pd_l1_tps == 50
    with pytest.raises(InvalidEventError, match=r"lab\.pd_l1_tps"):
        parse_event(BiopsyAcquired, {**base, "lab": {"pd_l1_tps": 150}})


def test_alert_probabilities_read_as_whole_per_cent_never_certain() -> None:
    from schemas import percent

    assert [percent(p) for p in (0.0, 0.004, 0.005, 0.5, 0.874, 0.994, 0.995, 1.0)] == [
        "<1%",
        "<1%",
        "1%",
        "50%",
        "87%",
        "99%",
        ">99%",
        ">99%",
    ]
