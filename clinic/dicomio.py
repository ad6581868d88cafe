"""DICOM building blocks shared by the CT, PCCT, RTSTRUCT and SEG writers.

Deterministic UIDs (:func:`uid`), and the patient / study / equipment attributes
(:class:`StudyInfo`) that every object of one study carries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

IMPLEMENTATION_VERSION = "IRTMON_CLINIC_1"


def uid(*parts: object) -> str:
    """A deterministic DICOM UID (``2.25.<int>``) from ``parts`` (e.g. seed, patient, series)."""
    return generate_uid(prefix=None, entropy_srcs=[str(p) for p in parts])


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
