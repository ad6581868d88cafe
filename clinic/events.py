"""The virtual clinic's event stream: build, write, load and replay irtmon events.

``events.jsonl`` holds one envelope per line, ``{"topic": ..., "event": {...}}``, in time
order; the event is the JSON of a :mod:`schemas.events` model and the topic its registry
topic. Event ids are ``uuid5`` of the seed, the pseudonym and what happened, so the same seed
gives the same ids.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator
from datetime import timedelta
from pathlib import Path

from clinic.story import Patient
from schemas.enums import ImagingPurpose, Modality
from schemas.events import (
    BiopsyAcquired,
    Event,
    FolderLocation,
    ImagingAcquired,
    ImmunotherapyDose,
    LabValues,
    LesionReference,
    RtCourseStart,
    RtFraction,
    SlideLocation,
    TreatmentEvent,
    parse_event,
)
from schemas.topics import BIOPSY_ACQUIRED, IMAGING_ACQUIRED, TREATMENT_EVENTS, topic

EVENTS_FILE = "events.jsonl"
_NAMESPACE = uuid.UUID("9d2f6c1e-43a7-4b8e-a1c5-7e0b3f6d2a94")
_TOPIC_OF = {
    ImagingAcquired: IMAGING_ACQUIRED.name,
    BiopsyAcquired: BIOPSY_ACQUIRED.name,
    TreatmentEvent: TREATMENT_EVENTS.name,
}


def event_id(seed: int, pseudonym: str, *what: object) -> uuid.UUID:
    """Deterministic event id for ``what`` happened to ``pseudonym`` in the cohort of ``seed``."""
    return uuid.uuid5(_NAMESPACE, "/".join(str(p) for p in (seed, pseudonym, *what)))


def treatment_events(
    patient: Patient, pseudonym: str, seed: int, target: str = "GTV lung"
) -> list[TreatmentEvent]:
    """Radiotherapy course start, every fraction, and immunotherapy doses up to the last scan.

    ``patient`` is a story-v1 :class:`~clinic.story.Patient` or anything with the same ``rt``,
    ``ici`` and ``timepoints`` (a story-v2 patient); ``target`` names the irradiated lesion.
    """
    rt = patient.rt
    events = [
        TreatmentEvent(
            event_id=event_id(seed, pseudonym, "rt_course_start", rt.course_id),
            patient=pseudonym,
            occurred_at=rt.start - timedelta(minutes=30),
            treatment=RtCourseStart(
                course_id=rt.course_id,
                prescribed_dose_gy=rt.dose_gy,
                fractions_planned=rt.fractions,
                target=target,
            ),
        )
    ]
    for n, at in enumerate(rt.fraction_times(), start=1):
        events.append(
            TreatmentEvent(
                event_id=event_id(seed, pseudonym, "rt_fraction", rt.course_id, n),
                patient=pseudonym,
                occurred_at=at,
                treatment=RtFraction(
                    course_id=rt.course_id, fraction_number=n, dose_gy=rt.dose_per_fraction_gy
                ),
            )
        )
    last_scan = patient.timepoints[-1].at
    for n, at in enumerate(patient.ici.dose_times(last_scan), start=1):
        events.append(
            TreatmentEvent(
                event_id=event_id(seed, pseudonym, "ici", n),
                patient=pseudonym,
                occurred_at=at,
                treatment=ImmunotherapyDose(
                    agent=patient.ici.agent, cycle=n, dose_mg=patient.ici.dose_mg
                ),
            )
        )
    return events


def imaging_event(
    seed: int,
    pseudonym: str,
    timepoint: int,
    modality: Modality,
    study_uid: str,
    series_uids: list[str],
    folder: Path,
    occurred_at: object,
    description: str,
    lesion: LesionReference | None = None,
) -> ImagingAcquired:
    """The ``imaging.acquired`` event of one study written to ``folder``."""
    return ImagingAcquired(
        event_id=event_id(seed, pseudonym, "imaging", timepoint),
        patient=pseudonym,
        occurred_at=occurred_at,
        modality=modality,
        study_uid=study_uid,
        series_uids=series_uids,
        location=FolderLocation(path=str(folder)),
        purpose=ImagingPurpose.PLANNING if timepoint == 0 else ImagingPurpose.FOLLOW_UP,
        lesion=lesion,
        description=description,
    )


BIOPSY_SITE = "lung, core needle biopsy"
"""The biopsy site of story v1 (every biopsy is of the lung target)."""


def biopsy_event(
    seed: int,
    pseudonym: str,
    index: int,
    occurred_at: object,
    slide_path: Path,
    pd_l1_tps: float,
    cd8_density: float,
    site: str = BIOPSY_SITE,
) -> BiopsyAcquired:
    """The ``biopsy.acquired`` event of one H&E slide."""
    eid = event_id(seed, pseudonym, "biopsy", index)
    return BiopsyAcquired(
        event_id=eid,
        patient=pseudonym,
        occurred_at=occurred_at,
        specimen_id=f"SP-{eid.hex[:12].upper()}",
        slides=[SlideLocation(slide_id=f"WSI-{eid.hex[:12].upper()}-1", path=str(slide_path))],
        site=site,
        lab=LabValues(pd_l1_tps=round(pd_l1_tps, 1), cd8_density_per_mm2=round(cd8_density, 1)),
    )


def sort_events(events: Iterable[Event]) -> list[Event]:
    """Time order, ties broken by patient and event id (stable across runs)."""
    return sorted(events, key=lambda e: (e.occurred_at, e.patient, str(e.event_id)))


def write_events(path: Path, events: Iterable[Event]) -> int:
    """Write envelopes in time order to ``path``; return the count."""
    ordered = sort_events(events)
    with path.open("w", encoding="utf-8") as fh:
        for ev in ordered:
            envelope = {"topic": _TOPIC_OF[type(ev)], "event": json.loads(ev.model_dump_json())}
            fh.write(json.dumps(envelope, sort_keys=True) + "\n")
    return len(ordered)


def _rebase(event: Event, old_root: str | None, new_root: Path) -> Event:
    """Move folder and slide paths written under ``old_root`` to ``new_root``."""
    if not old_root or str(new_root) == old_root:
        return event

    def move(p: str) -> str:
        return str(new_root / Path(p).relative_to(old_root)) if p.startswith(old_root) else p

    if isinstance(event, ImagingAcquired):
        update: dict[str, object] = {}
        if isinstance(event.location, FolderLocation):
            update["location"] = event.location.model_copy(
                update={"path": move(event.location.path)}
            )
        if event.lesion is not None and event.lesion.path:
            update["lesion"] = event.lesion.model_copy(update={"path": move(event.lesion.path)})
        return event.model_copy(update=update)
    if isinstance(event, BiopsyAcquired):
        slides = [s.model_copy(update={"path": move(s.path)}) for s in event.slides]
        return event.model_copy(update={"slides": slides})
    return event


def load_events(cohort_dir: Path | str) -> list[Event]:
    """Read ``events.jsonl`` of a cohort into pydantic events, in time order.

    Paths are rebased onto ``cohort_dir`` when the cohort was moved after generation.
    Raises ``FileNotFoundError`` when the folder holds no event stream and
    :class:`~schemas.events.InvalidEventError` for a line that breaks its contract.
    """
    cohort_dir = Path(cohort_dir).resolve()
    path = cohort_dir / EVENTS_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: generate a cohort first (irtmon clinic generate --out {cohort_dir})"
        )
    meta_path = cohort_dir / "cohort.json"
    old_root = json.loads(meta_path.read_text())["root"] if meta_path.is_file() else None
    events: list[Event] = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            envelope = json.loads(line)
            try:
                spec = topic(envelope["topic"])
            except KeyError as err:
                raise ValueError(f"{path}:{n}: {err}") from err
            event = parse_event(spec.record, envelope["event"])
            events.append(_rebase(event, old_root, cohort_dir))  # type: ignore[arg-type]
    return sort_events(events)


def replay(
    events: Iterable[Event] | Path | str, speedup: float = 3600.0, max_delay: float | None = None
) -> Iterator[tuple[float, Event]]:
    """Yield ``(delay_seconds, event)``: the wait before each event at ``speedup`` x real time.

    ``events`` is a list of events or a cohort folder. ``max_delay`` caps any single wait
    (useful to skip the quiet weeks between scans).
    """
    if speedup <= 0:
        raise ValueError(f"speedup must be positive, got {speedup}")
    seq = load_events(events) if isinstance(events, Path | str) else sort_events(events)
    previous = None
    for ev in seq:
        delay = 0.0 if previous is None else (ev.occurred_at - previous).total_seconds() / speedup
        if max_delay is not None:
            delay = min(delay, max_delay)
        previous = ev.occurred_at
        yield max(delay, 0.0), ev
