"""Property-based tests of event parsing: whatever arrives, the reader either returns a valid
record or raises InvalidEventError naming fields; it never crashes with anything else."""

from __future__ import annotations

import json
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.publish import topic_for
from irtmon.samples import sample_events
from schemas import TOPICS, InvalidEventError, parse_event

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
SAMPLES = [e.model_dump(mode="json") for e in sample_events()]


def settle(record_type: type, raw: bytes | str | dict) -> None:
    try:
        event = parse_event(record_type, raw)
    except InvalidEventError as err:
        assert err.errors, "an invalid event must name at least one field"
        assert all(isinstance(field, str) and field for field, _ in err.errors)
        return
    assert event.schema_version == 1


@given(raw=st.binary(max_size=300), topic=st.sampled_from(sorted(TOPICS)))
def test_arbitrary_bytes_never_crash_the_reader(raw: bytes, topic: str) -> None:
    settle(TOPICS[topic].record, raw)


@given(value=json_values, topic=st.sampled_from(sorted(TOPICS)))
def test_arbitrary_json_never_crashes_the_reader(value: object, topic: str) -> None:
    settle(TOPICS[topic].record, json.dumps(value, allow_nan=True))


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=300)
@given(
    index=st.integers(min_value=0, max_value=len(SAMPLES) - 1),
    field=st.text(max_size=20),
    value=json_values,
)
def test_mutating_one_field_of_a_valid_event(index: int, field: str, value: object) -> None:
    """A valid event with one field replaced or added is either still valid or refused with
    that field (or a field under it) named."""
    original = SAMPLES[index]
    record_type = topic_for(sample_events()[index]).record
    mutated = {**original, field: value}
    try:
        parse_event(record_type, json.dumps(mutated, allow_nan=True))
    except InvalidEventError as err:
        named = [f for f, _ in err.errors]
        shown = field or '""'
        assert any(f == shown or f.startswith(f"{shown}.") for f in named), (field, named)


@given(text=st.sampled_from(["x" * 4097, "é" * 5000, "a" * 100_000]))
def test_huge_strings_are_refused(text: str) -> None:
    event = {**SAMPLES[0], "event_id": str(uuid.uuid4()), "description": text}
    try:
        parse_event(TOPICS["imaging.acquired"].record, event)
    except InvalidEventError as err:
        assert "description" in str(err)
    else:  # pragma: no cover
        raise AssertionError("a 4 kB+ description must be refused")
