"""A stable study in the PACS becomes one ``imaging.acquired`` event: :func:`acquisition_event`.

Pure: the plugin hands in what Orthanc knows (the patient ID, the study UID, one header per
series and the SOP Instance UIDs of each series); the event comes out, keyed by the keyed-hash
pseudonym of the patient ID. Every patient ID is keyed, whatever it looks like: an ID already
shaped like a pseudonym (``psn-…``) is keyed too, so nobody who can store into the PACS can
choose the pseudonym a study is filed under. (De-identified data, such as the virtual
clinic's, is sent with its clear identifiers: ``irtmon pacs send --identities``.)

The event id is derived from the study and the SOP Instance UIDs of its series (irtmon's own
SEG and SR left out). A study that turns stable again with the same instances (for instance
after irtmon stored its SEG and SR into it) gives the same id, and the worker treats it as a
redelivery; instances that arrive after the study was stable give a new id, so the study is
scored again with all of its images.

Free text of the headers (StudyDescription, SeriesDescription, names, comments) stays in the
PACS: it can carry a patient's name, so nothing of it is copied into the event.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from pydicom.dataset import Dataset

from models.imaging.pcct import is_multi_energy
from models.imaging.writers import DERIVED_MANUFACTURER
from schemas.enums import ImagingPurpose, Modality
from schemas.errors import RefusedError
from schemas.events import DicomWebLocation, ImagingAcquired, LesionReference
from schemas.pseudonym import pseudonymise

__all__ = [
    "DERIVED_MANUFACTURER",
    "NotAnAcquisitionError",
    "SeriesHeader",
    "acquisition_event",
    "event_id",
    "patient_pseudonym",
]


IMAGE_MODALITIES = frozenset({"CT"})
CONTOUR_MODALITIES = ("RTSTRUCT", "SEG")
_NAMESPACE = uuid.UUID("2b0c7a8e-5d3f-4e61-9a7c-1f4e8d2b6c90")


class NotAnAcquisitionError(RefusedError, ValueError):
    """The study holds no CT image series irtmon scores (an SR-only study, an MR...)."""


@dataclass(frozen=True)
class SeriesHeader:
    """One series of the study: its UID, modality, the header of one of its instances and the
    SOP Instance UIDs of all of them (what the event id is made of)."""

    series_uid: str
    modality: str
    header: Dataset
    instance_uids: tuple[str, ...] = ()


def _when(header: Dataset) -> datetime:
    """Acquisition time from Study (or Series, Acquisition) Date and Time and the UTC offset."""
    for date_kw, time_kw in (
        ("AcquisitionDate", "AcquisitionTime"),
        ("SeriesDate", "SeriesTime"),
        ("StudyDate", "StudyTime"),
    ):
        date = str(header.get(date_kw, "") or "")
        if len(date) == 8 and date.isdigit():
            clock = (str(header.get(time_kw, "") or "").split(".")[0] + "000000")[:6]
            if not clock.isdigit():
                clock = "000000"
            tz = UTC
            offset = str(header.get("TimezoneOffsetFromUTC", "") or "")
            if len(offset) == 5 and offset[0] in "+-" and offset[1:].isdigit():
                sign = 1 if offset[0] == "+" else -1
                tz = timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5])))
            return datetime.strptime(date + clock, "%Y%m%d%H%M%S").replace(tzinfo=tz)
    raise NotAnAcquisitionError("the study's headers carry no acquisition, series or study date")


def _derived(header: Dataset) -> bool:
    return str(header.get("Manufacturer", "")).strip().lower() == DERIVED_MANUFACTURER


def patient_pseudonym(patient_id: str, key: str | bytes) -> str:
    """The keyed-hash pseudonym of ``patient_id``, always (also of an ID that looks like one)."""
    return pseudonymise(patient_id.strip(), key)


def event_id(study_uid: str, series: Sequence[SeriesHeader]) -> uuid.UUID:
    """The id of the event for ``study_uid`` holding ``series`` (irtmon's own left out): a name
    UUID over the study UID and the sorted SOP Instance UIDs of every series (a series without
    an instance list counts by its series UID)."""
    members = sorted(
        uid
        for s in series
        if not _derived(s.header)
        for uid in (s.instance_uids or (f"series:{s.series_uid}",))
    )
    return uuid.uuid5(_NAMESPACE, f"{study_uid}/{','.join(members)}")


def acquisition_event(
    patient_id: str,
    study_uid: str,
    series: Sequence[SeriesHeader],
    dicomweb_url: str,
    key: str | bytes,
) -> ImagingAcquired:
    """The ``imaging.acquired`` event of a stable study.

    Raises
    ------
    NotAnAcquisitionError
        No CT image series (only irtmon's own SEG/SR, only contours, another modality).
    ValueError
        An empty patient ID or a short pseudonym key (from :func:`pseudonymise`), or UIDs that
        the event contract refuses (:class:`schemas.InvalidEventError` is a ValueError).
    """

    images = sorted(
        (s for s in series if s.modality in IMAGE_MODALITIES and not _derived(s.header)),
        key=lambda s: s.series_uid,
    )
    if not images:
        found = ", ".join(sorted({s.modality for s in series})) or "nothing"
        raise NotAnAcquisitionError(f"study {study_uid} holds no CT image series (found {found})")
    lesion = None
    for wanted in CONTOUR_MODALITIES:
        for s in sorted(series, key=lambda s: s.series_uid):
            if s.modality == wanted and not _derived(s.header):
                lesion = LesionReference(
                    kind="rtstruct" if wanted == "RTSTRUCT" else "seg",
                    sop_instance_uid=str(s.header.get("SOPInstanceUID") or "") or None,
                )
                break
        if lesion is not None:
            break
    pcct = any(is_multi_energy(s.header) for s in images)
    uids = [s.series_uid for s in images][:64]
    return ImagingAcquired(
        event_id=event_id(study_uid, series),
        patient=patient_pseudonym(patient_id, key),
        occurred_at=_when(images[0].header),
        modality=Modality.PCCT if pcct else Modality.CT,
        study_uid=study_uid,
        series_uids=uids,
        location=DicomWebLocation(url=dicomweb_url),
        purpose=ImagingPurpose.PLANNING
        if lesion is not None and lesion.kind == "rtstruct"
        else ImagingPurpose.UNKNOWN,
        lesion=lesion,
        description=None,  # free text stays in the PACS (it may name the patient)
    )
