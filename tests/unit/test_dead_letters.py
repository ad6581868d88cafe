"""A dead letter can always be published: an oversized message or key is cut on the topic copy
(the table keeps every byte), so a poison message cannot stop the worker in a restart loop."""

from __future__ import annotations

import base64

from schemas import DeadLetter, InvalidEventError, parse_event
from schemas.events import MAX_EVENT_BYTES, ImagingAcquired
from streams.handling import TOPIC_PAYLOAD_BYTES, Message, build_dead_letter

PRODUCER_MAX_REQUEST_BYTES = 1_048_576  # aiokafka's and kafka-python's default


def refused(value: bytes) -> InvalidEventError:
    try:
        parse_event(ImagingAcquired, value)
    except InvalidEventError as err:
        return err
    raise AssertionError("accepted")


def test_an_oversized_message_fits_in_its_dead_letter() -> None:
    value = b'{"schema_version": 1}' + b" " * MAX_EVENT_BYTES
    msg = Message("imaging.acquired", 3, 17, b"k" * 10_000, value)
    letter = build_dead_letter(msg, refused(value), None)
    wire = letter.to_json_bytes()
    assert len(wire) < PRODUCER_MAX_REQUEST_BYTES
    again = DeadLetter.model_validate_json(wire)
    assert base64.b64decode(again.payload_b64) == value[:TOPIC_PAYLOAD_BYTES]
    assert f"first {TOPIC_PAYLOAD_BYTES} of {len(value)} bytes" in again.reason
    assert "key of 10000 bytes" in again.reason
    assert "larger than 1000000 bytes" in again.reason


def test_a_small_message_is_carried_whole() -> None:
    value = b'{"schema_version": 1, "patient": '
    msg = Message("imaging.acquired", 0, 1, b"psn-0123456789abcdef", value)
    letter = build_dead_letter(msg, refused(value), None)
    assert base64.b64decode(letter.payload_b64) == value
    assert base64.b64decode(letter.key_b64 or "") == b"psn-0123456789abcdef"
    assert "[" not in letter.reason.split("not valid JSON")[0]
