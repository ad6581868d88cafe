"""Event contracts: the records carried by irtmon's Kafka topics.

Every event carries ``event_id`` (a UUID, the idempotency key of every sink), ``patient`` (a
keyed-hash pseudonym, never a clear identifier), ``occurred_at`` (timezone-aware) and
``schema_version``. Readers accept only the versions they know; anything else is refused with
:class:`InvalidEventError`, whose message names each offending field, so that the worker can
dead-letter the event with its reason.

The JSON Schema files in ``schemas/json/`` are exported from these models
(``irtmon schemas export``) and a test keeps them equal.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Annotated, Any, ClassVar, Literal, Self, TypeVar

from pydantic import (
    AnyHttpUrl,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from schemas.enums import (
    AlertKind,
    AlertStatus,
    ImagingPurpose,
    Modality,
    Stain,
    TreatmentKind,
)
from schemas.errors import DeadLetterError
from schemas.pseudonym import PSEUDONYM_PATTERN

SCHEMA_VERSION = 1
"""The version every event model writes today."""

MAX_EVENT_BYTES = 1_000_000
"""Largest message a reader accepts."""

WIRE_REQUIRED = ("schema_version", "event_id")
"""Fields a message must carry even though code constructing a record may leave them out."""

Pseudonym = Annotated[
    str,
    Field(
        pattern=PSEUDONYM_PATTERN,
        description="Keyed-hash patient pseudonym (psn- and 16 hex digits); never a clear ID.",
        examples=["psn-3f9a0c1b2d4e5f60"],
    ),
]
DicomUID = Annotated[
    str,
    Field(
        pattern=r"^[0-9]+(\.[0-9]+)*$",
        max_length=64,
        description="A DICOM UID: digits and dots, at most 64 characters.",
    ),
]
ShortText = Annotated[str, Field(min_length=1, max_length=256)]
PathText = Annotated[
    str,
    Field(
        min_length=1, max_length=4096, description="A file-system path on the worker's data roots."
    ),
]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
ScoreName = Annotated[
    str,
    Field(
        pattern=r"^[a-z][a-z0-9_]{0,63}$",
        description="Snake-case score name, e.g. response_probability, tumour_volume_ml.",
    ),
]


class InvalidEventError(DeadLetterError, ValueError):
    """An event that cannot be read into its contract (dead-lettered with this message).

    ``errors`` lists ``(field path, message)`` pairs; ``str()`` names every field.
    """

    def __init__(self, record: str, errors: list[tuple[str, str]]) -> None:
        self.record = record
        self.errors = errors
        detail = "; ".join(f"{field}: {message}" for field, message in errors)
        super().__init__(f"invalid {record} event: {detail}")


class Record(BaseModel):
    """Fields of every record on a topic: version, id and time."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_max_length=4096)

    SUPPORTED_VERSIONS: ClassVar[frozenset[int]] = frozenset({SCHEMA_VERSION})

    schema_version: int = Field(
        default=SCHEMA_VERSION,
        description="Contract version of this record; readers refuse versions they do not know.",
        json_schema_extra={"enum": [SCHEMA_VERSION]},
    )
    event_id: uuid.UUID = Field(
        default_factory=uuid.uuid4, description="Unique id; the idempotency key of every sink."
    )
    occurred_at: AwareDatetime = Field(description="When it happened (timezone-aware, ISO 8601).")

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value not in cls.SUPPORTED_VERSIONS:
            supported = ", ".join(str(v) for v in sorted(cls.SUPPORTED_VERSIONS))
            raise ValueError(
                f"schema_version {value} is not supported by this reader (supported: {supported})"
            )
        return value

    def to_json_bytes(self) -> bytes:
        """Serialise for Kafka (UTF-8 JSON)."""
        return self.model_dump_json().encode()


class Event(Record):
    """A record about one patient."""

    patient: Pseudonym

    @property
    def key(self) -> bytes:
        """Kafka message key: the patient pseudonym, so a patient's events stay in order."""
        return self.patient.encode()


# --------------------------------------------------------------------------- imaging


class FolderLocation(BaseModel):
    """DICOM files in a folder the workers can read."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["folder"] = "folder"
    path: PathText


class DicomWebLocation(BaseModel):
    """A study on a DICOMweb server (QIDO/WADO-RS root URL)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["dicomweb"] = "dicomweb"
    url: AnyHttpUrl = Field(description="DICOMweb root, e.g. http://pacs:8042/dicom-web")


DicomLocation = Annotated[FolderLocation | DicomWebLocation, Field(discriminator="kind")]


class LesionReference(BaseModel):
    """Where the target lesion's contour is, when the acquisition carries one."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["rtstruct", "seg"]
    sop_instance_uid: DicomUID | None = None
    path: PathText | None = Field(default=None, description="File path, for folder locations.")
    roi_name: ShortText | None = Field(default=None, description="ROI or segment label, e.g. GTV.")


class ImagingAcquired(Event):
    """A CT or PCCT acquisition is complete and readable.

    Published by the PACS plugin or the virtual clinic to ``imaging.acquired``.
    """

    modality: Modality
    study_uid: DicomUID
    series_uids: list[DicomUID] = Field(min_length=1, max_length=64)
    location: DicomLocation
    purpose: ImagingPurpose = ImagingPurpose.UNKNOWN
    lesion: LesionReference | None = None
    description: ShortText | None = None

    @field_validator("series_uids")
    @classmethod
    def _distinct_series(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("series UIDs must be distinct")
        return value


# --------------------------------------------------------------------------- biopsy


class SlideLocation(BaseModel):
    """One whole-slide image of a specimen."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    slide_id: ShortText
    path: PathText
    stain: Stain = Stain.HE


class LabValues(BaseModel):
    """Optional laboratory values reported with the specimen."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    pd_l1_tps: FiniteFloat | None = Field(
        default=None, ge=0, le=100, description="PD-L1 tumour proportion score, per cent."
    )
    cd8_density_per_mm2: FiniteFloat | None = Field(default=None, ge=0)


class BiopsyAcquired(Event):
    """A biopsy's slides are scanned. Published by the LIMS to ``biopsy.acquired``."""

    specimen_id: ShortText
    slides: list[SlideLocation] = Field(min_length=1, max_length=64)
    site: ShortText | None = Field(default=None, description="Anatomical site of the biopsy.")
    lab: LabValues = Field(default_factory=LabValues)


# --------------------------------------------------------------------------- treatment


class RtCourseStart(BaseModel):
    """A radiotherapy course begins."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal[TreatmentKind.RT_COURSE_START] = TreatmentKind.RT_COURSE_START
    course_id: ShortText
    prescribed_dose_gy: FiniteFloat = Field(gt=0, le=200)
    fractions_planned: int = Field(gt=0, le=100)
    target: ShortText | None = None


class RtFraction(BaseModel):
    """One radiotherapy fraction delivered."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal[TreatmentKind.RT_FRACTION] = TreatmentKind.RT_FRACTION
    course_id: ShortText
    fraction_number: int = Field(gt=0, le=100)
    dose_gy: FiniteFloat = Field(gt=0, le=50)


class ImmunotherapyDose(BaseModel):
    """One immune checkpoint inhibitor dose (a cycle)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal[TreatmentKind.IMMUNOTHERAPY_DOSE] = TreatmentKind.IMMUNOTHERAPY_DOSE
    agent: ShortText = Field(examples=["pembrolizumab", "durvalumab"])
    cycle: int = Field(gt=0, le=200)
    dose_mg: FiniteFloat = Field(gt=0, le=5000)


TreatmentDetail = Annotated[
    RtCourseStart | RtFraction | ImmunotherapyDose, Field(discriminator="kind")
]


class TreatmentEvent(Event):
    """A treatment was given. Published by the oncology system to ``treatment.events``."""

    treatment: TreatmentDetail


# --------------------------------------------------------------------------- scores


class TimepointScore(Event):
    """One score of one patient at one timepoint, produced by one model version.

    ``occurred_at`` is the time of the acquisition or biopsy the score describes.
    ``event_id`` is derived (:func:`score_event_id`) so re-scoring the same input with the same
    model version yields the same id, and sinks stay idempotent.
    """

    source_event_id: uuid.UUID = Field(description="The acquisition or biopsy event scored.")
    score_name: ScoreName
    value: FiniteFloat
    lower: FiniteFloat | None = Field(default=None, description="Lower uncertainty bound.")
    upper: FiniteFloat | None = Field(default=None, description="Upper uncertainty bound.")
    unit: ShortText | None = None
    model_name: ShortText
    model_version: ShortText
    inputs: list[ShortText] = Field(
        default_factory=list, max_length=256, description="Series or slide UIDs scored."
    )

    @classmethod
    def for_source(
        cls,
        *,
        source_event_id: uuid.UUID,
        patient: str,
        occurred_at: Any,
        score_name: str,
        value: float,
        model_name: str,
        model_version: str,
        lower: float | None = None,
        upper: float | None = None,
        unit: str | None = None,
        inputs: Sequence[str] = (),
    ) -> TimepointScore:
        """The score ``score_name`` of one acquisition or biopsy by one model version, with
        its deterministic id (:func:`score_event_id`): the one way irtmon builds a score, so
        that a replay or a re-scoring with the same version updates the same row."""
        return cls(
            event_id=score_event_id(source_event_id, score_name, model_name, model_version),
            patient=patient,
            occurred_at=occurred_at,
            source_event_id=source_event_id,
            score_name=score_name,
            value=value,
            lower=lower,
            upper=upper,
            unit=unit,
            model_name=model_name,
            model_version=model_version,
            inputs=list(inputs)[:256],
        )

    @model_validator(mode="after")
    def _bounds_bracket_value(self) -> Self:
        if self.lower is not None and self.lower > self.value:
            raise ValueError(f"lower bound {self.lower} is above the value {self.value}")
        if self.upper is not None and self.upper < self.value:
            raise ValueError(f"upper bound {self.upper} is below the value {self.value}")
        return self


_SCORE_NAMESPACE = uuid.UUID("6f1d3a52-3c1e-4f0b-9d59-2b6a0c7e9a11")


def score_event_id(
    source_event_id: uuid.UUID, score_name: str, model_name: str, model_version: str
) -> uuid.UUID:
    """Deterministic id of a score: same input, score and model version, same id."""
    return uuid.uuid5(
        _SCORE_NAMESPACE, f"{source_event_id}/{score_name}/{model_name}/{model_version}"
    )


# --------------------------------------------------------------------------- alerts


def percent(p: float) -> str:
    """A probability as the treating team reads it: whole per cent, never a certain 0 % or
    100 % (a calibrated model's 0.997 is not a certainty)."""
    if p >= 0.995:
        return ">99%"
    if p < 0.005:
        return "<1%"
    return f"{min(max(round(100 * p), 1), 99)}%"


class Alert(Event):
    """A flag that a patient's trajectory has turned. Published to ``alerts``."""

    kind: AlertKind
    status: AlertStatus = AlertStatus.OPEN
    probability: FiniteFloat = Field(ge=0, le=1, description="How sure the decision rule is.")
    change_at: AwareDatetime | None = Field(default=None, description="Estimated change time.")
    summary: str = Field(min_length=1, max_length=2000, description="What changed, in plain words.")
    recommendation: str = Field(
        default="consider adaptive treatment review", min_length=1, max_length=500
    )
    signals: list[ShortText] = Field(default_factory=list, max_length=32)
    model_versions: dict[ShortText, ShortText] = Field(default_factory=dict)


# --------------------------------------------------------------------------- dead letters


class DeadLetter(Record):
    """An event a worker could not process, with why and where it came from.

    ``occurred_at`` is when it was dead-lettered. ``patient`` is the pseudonym when the failed
    event was readable enough to have one. The original bytes are kept (base64) so nothing is
    lost and the event can be replayed.
    """

    patient: Pseudonym | None = None
    failed_event_id: uuid.UUID | None = Field(
        default=None, description="event_id of the failed event, when it could be read."
    )
    source_topic: ShortText
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)
    error_class: ShortText = Field(description="e.g. InvalidEventError, UnreadableFileError")
    reason: str = Field(min_length=1, max_length=8192)
    payload_b64: str = Field(
        max_length=2 * MAX_EVENT_BYTES, description="The original message value, base64."
    )
    key_b64: str | None = Field(
        default=None, max_length=4096, description="The original message key, base64."
    )

    @property
    def key(self) -> bytes:
        return (self.patient or "unknown").encode()


# --------------------------------------------------------------------------- parsing

M = TypeVar("M", bound=Record)


def _location(loc: tuple[int | str, ...]) -> str:
    """A dotted field path; an empty key shows as "" so it is still named."""
    return ".".join(str(p) if p != "" else '""' for p in loc) or "<message>"


def parse_event(model: type[M], raw: bytes | str | dict[str, Any]) -> M:
    """Read one event from the wire into ``model``, or raise :class:`InvalidEventError`.

    Stricter than constructing the model in code: ``schema_version`` and ``event_id`` must be
    present (code may leave them to their defaults, a message may not), the
    payload must be a JSON object, and it must be under ``MAX_EVENT_BYTES``.
    """
    name = model.__name__
    if isinstance(raw, bytes | str):
        if len(raw) > MAX_EVENT_BYTES:
            raise InvalidEventError(name, [("<message>", f"larger than {MAX_EVENT_BYTES} bytes")])
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise InvalidEventError(name, [("<message>", f"not valid JSON ({err})")]) from err
    else:
        data = raw
    if not isinstance(data, dict):
        raise InvalidEventError(
            name, [("<message>", f"expected a JSON object, got {type(data).__name__}")]
        )
    missing = [(field, "Field required") for field in WIRE_REQUIRED if field not in data]
    if missing:
        raise InvalidEventError(name, missing)
    try:
        return model.model_validate(data)
    except ValidationError as err:
        errors = [(_location(e["loc"]), e["msg"]) for e in err.errors()]
        raise InvalidEventError(name, errors) from err
