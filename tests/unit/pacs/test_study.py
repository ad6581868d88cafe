"""A stable study's series headers become one imaging.acquired event (pure, no Orthanc)."""

from __future__ import annotations

import uuid

import pytest
from pydicom.dataset import Dataset

from pacs.study import NotAnAcquisitionError, SeriesHeader, acquisition_event, patient_pseudonym
from schemas import ImagingAcquired, pseudonymise

KEY = "unit-test-key-0123456789abcdef"
URL = "http://pacs:8042/dicom-web"


def header(**tags: object) -> Dataset:
    ds = Dataset()
    ds.StudyDate, ds.StudyTime = "20260301", "101500"
    ds.Manufacturer = "Siemens Healthineers"
    ds.ManufacturerModelName = "SOMATOM Force"
    ds.StudyDescription = "CT thorax"
    ds.SOPInstanceUID = "1.2.3.99"
    for name, value in tags.items():
        setattr(ds, name, value)
    return ds


def test_a_ct_study_with_its_contour() -> None:
    series = [
        SeriesHeader("1.2.3.1", "CT", header()),
        SeriesHeader("1.2.3.2", "RTSTRUCT", header(SOPInstanceUID="1.2.3.2.1")),
    ]
    event = acquisition_event("MRN-001", "1.2.3", series, URL, KEY)
    assert isinstance(event, ImagingAcquired)
    assert event.patient == pseudonymise("MRN-001", KEY)  # never the clear identifier
    assert "MRN-001" not in event.model_dump_json()
    assert event.modality == "CT"
    assert event.series_uids == ["1.2.3.1"]  # the contour is a lesion reference, not a series
    assert event.lesion is not None and event.lesion.kind == "rtstruct"
    assert event.lesion.sop_instance_uid == "1.2.3.2.1"
    assert event.purpose == "planning"
    assert event.location.kind == "dicomweb" and str(event.location.url).startswith(URL)
    assert event.occurred_at.isoformat() == "2026-03-01T10:15:00+00:00"


def test_pcct_by_supplement_188_and_by_model_name() -> None:
    vmi = header(ImageType=["DERIVED", "PRIMARY", "AXIAL", "VMI"], SeriesDescription="VMI 70 keV")
    by_standard = acquisition_event(
        "MRN-2", "1.2.4", [SeriesHeader("1.2.4.1", "CT", vmi)], URL, KEY
    )
    assert by_standard.modality == "PCCT"
    naeotom = header(ManufacturerModelName="NAEOTOM Alpha", SeriesDescription="Qr40 3mm")
    by_model = acquisition_event(
        "MRN-2", "1.2.5", [SeriesHeader("1.2.5.1", "CT", naeotom)], URL, KEY
    )
    assert by_model.modality == "PCCT"


def test_irtmon_own_objects_do_not_make_an_event_nor_change_its_id() -> None:
    ct = SeriesHeader("1.2.6.1", "CT", header())
    first = acquisition_event("MRN-3", "1.2.6", [ct], URL, KEY)
    ours = header(Manufacturer="irtmon")
    again = acquisition_event(
        "MRN-3",
        "1.2.6",
        [ct, SeriesHeader("1.2.6.901", "SEG", ours), SeriesHeader("1.2.6.902", "SR", ours)],
        URL,
        KEY,
    )
    assert again.event_id == first.event_id  # stable again after write-back: a redelivery
    assert again.lesion is None  # irtmon's own SEG is not the hospital's contour
    assert isinstance(first.event_id, uuid.UUID)


def test_studies_without_ct_are_refused_with_the_reason() -> None:
    with pytest.raises(NotAnAcquisitionError, match=r"no CT image series.*MR, SR"):
        acquisition_event(
            "MRN-4",
            "1.2.7",
            [SeriesHeader("1.2.7.1", "MR", header()), SeriesHeader("1.2.7.2", "SR", header())],
            URL,
            KEY,
        )


def test_dates_and_offsets() -> None:
    ds = header(
        AcquisitionDate="20260302", AcquisitionTime="081000.25", TimezoneOffsetFromUTC="+0100"
    )
    event = acquisition_event("MRN-5", "1.2.8", [SeriesHeader("1.2.8.1", "CT", ds)], URL, KEY)
    assert event.occurred_at.isoformat() == "2026-03-02T08:10:00+01:00"
    undated = Dataset()
    with pytest.raises(NotAnAcquisitionError, match="date"):
        acquisition_event("MRN-5", "1.2.9", [SeriesHeader("1.2.9.1", "CT", undated)], URL, KEY)


def test_pseudonyms_are_kept_and_empty_ids_or_short_keys_refused() -> None:
    assert patient_pseudonym("psn-0123456789abcdef", KEY) == "psn-0123456789abcdef"
    with pytest.raises(ValueError, match="empty"):
        patient_pseudonym("  ", KEY)
    with pytest.raises(ValueError, match="at least 16 bytes"):
        patient_pseudonym("MRN-6", "short")
