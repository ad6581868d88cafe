"""DICOM building blocks shared by the CT, PCCT, RTSTRUCT and SEG writers.

Deterministic UIDs (:func:`uid`), the patient / study / equipment attributes
(:class:`StudyInfo`, :func:`add_patient_study`) that every object of one study carries, the
series and frame-of-reference attributes of an object written with pydicom (:func:`add_series`),
and :func:`pin_generated`, which replaces what highdicom draws at random or reads from the clock
when it builds an object.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian

IMPLEMENTATION_VERSION = "IRTMON_CLINIC_1"
_UID_NAMESPACE = uuid.UUID("5b0f5c1e-9a7d-4c35-8f0e-2d6a1c9b7e41")
_HIGHDICOM_UID_ROOT = "1.2.826.0.1.3680043.10.511."
"""Root of the UIDs highdicom draws itself (e.g. the Dimension Organization UID of a SEG)."""


def uid(*parts: object) -> str:
    """A deterministic DICOM UID (``2.25.<int>``) from ``parts`` (e.g. seed, patient, series).

    The integer is a name-based (version 5) UUID of the parts, as ISO/IEC 9834-8 allows under
    the ``2.25`` root. (Until story v2 this called pydicom's ``generate_uid(prefix=None, ...)``,
    which ignores its entropy sources and returns a random UUID: no two runs had the same UIDs.)
    """
    return f"2.25.{uuid.uuid5(_UID_NAMESPACE, '/'.join(str(p) for p in parts)).int}"


@dataclass(frozen=True)
class StudyInfo:
    """Attributes shared by every object of one imaging study."""

    patient_id: str  # the pseudonym, never the clear identifier
    patient_sex: str
    patient_birth_date: str
    study_uid: str
    study_id: str
    accession: str
    acquired: datetime
    frame_of_reference_uid: str
    description: str
    manufacturer: str = "Siemens Healthineers"
    model: str = "SOMATOM Definition AS"
    station: str = "VCLINIC-CT1"
    software: str = "irtmon-clinic 0.1"
    institution: str = "Virtual Clinic"

    @property
    def date(self) -> str:
        return self.acquired.strftime("%Y%m%d")

    @property
    def time(self) -> str:
        return self.acquired.strftime("%H%M%S")


def new_dataset(sop_class_uid: str, sop_instance_uid: str) -> Dataset:
    """An empty little-endian explicit-VR dataset with its file meta information."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class_uid
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = sop_instance_uid
    return ds


def add_patient_study(ds: Dataset, study: StudyInfo) -> None:
    """Patient, General Study and General Equipment attributes."""
    ds.PatientName = f"{study.patient_id}^"  # family-name component: the pseudonym
    ds.PatientID = study.patient_id
    ds.PatientBirthDate = study.patient_birth_date
    ds.PatientSex = study.patient_sex
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "irtmon virtual clinic: synthetic patient, keyed-hash pseudonym"
    ds.StudyInstanceUID = study.study_uid
    ds.StudyDate = study.date
    ds.StudyTime = study.time
    ds.StudyID = study.study_id
    ds.AccessionNumber = study.accession
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = study.description
    ds.Manufacturer = study.manufacturer
    ds.ManufacturerModelName = study.model
    ds.StationName = study.station
    ds.InstitutionName = study.institution
    ds.SoftwareVersions = study.software


def add_series(
    ds: Dataset,
    study: StudyInfo,
    *,
    modality: str,
    series_uid: str,
    number: int,
    description: str,
    instance_number: int = 1,
) -> None:
    """General Series and Frame of Reference attributes, and the Instance Number.

    The series date and time are the study's; the frame of reference is the study's, with an
    empty Position Reference Indicator.
    """
    ds.Modality = modality
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = number
    ds.SeriesDescription = description
    ds.SeriesDate = study.date
    ds.SeriesTime = study.time
    ds.FrameOfReferenceUID = study.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.InstanceNumber = instance_number


def pin_generated(ds: Dataset, study: StudyInfo, *parts: object) -> Dataset:
    """Make a highdicom object reproducible: no random UID, no wall-clock time.

    Every UID under highdicom's own root is replaced by :func:`uid` of ``parts`` and the
    order in which it first appears; the instance creation date and time, and every
    Contribution DateTime, become the study's date and time. Returns ``ds``.
    """
    names: dict[str, str] = {}

    def walk(item: Dataset) -> None:
        for elem in item:
            if elem.VR == "SQ":
                for child in elem.value:
                    walk(child)
            elif elem.VR == "UI" and str(elem.value).startswith(_HIGHDICOM_UID_ROOT):
                elem.value = names.setdefault(str(elem.value), uid(*parts, "generated", len(names)))

    walk(ds)
    ds.InstanceCreationDate = study.date
    ds.InstanceCreationTime = study.time
    for equipment in ds.get("ContributingEquipmentSequence", []):
        if "ContributionDateTime" in equipment:
            equipment.ContributionDateTime = f"{study.date}{study.time}"
    return ds
