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


def test_every_patient_id_is_keyed_even_one_shaped_like_a_pseudonym() -> None:
    """Whoever can store into the PACS must not choose the pseudonym a study is filed under:
    an ID that already looks like one is keyed like any other."""
    forged = "psn-0123456789abcdef"
    assert patient_pseudonym(forged, KEY) == pseudonymise(forged, KEY) != forged
    event = acquisition_event(
        forged, "1.2.10", [SeriesHeader("1.2.10.1", "CT", header())], URL, KEY
    )
    assert event.patient == pseudonymise(forged, KEY)
    assert forged not in event.model_dump_json()


def test_empty_ids_or_short_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        patient_pseudonym("  ", KEY)
    with pytest.raises(ValueError, match="at least 16 bytes"):
        patient_pseudonym("MRN-6", "short")


def test_late_instances_make_a_new_event_and_irtmon_own_objects_do_not() -> None:
    """The id is over the SOP Instance UIDs: slices that arrive after the study was stable
    are a new acquisition event (scored again with every image); irtmon's SEG/SR are not."""
    first = [SeriesHeader("1.2.11.1", "CT", header(), ("1.2.11.1.1", "1.2.11.1.2"))]
    grown = [SeriesHeader("1.2.11.1", "CT", header(), ("1.2.11.1.1", "1.2.11.1.2", "1.2.11.1.3"))]
    a = acquisition_event("MRN-11", "1.2.11", first, URL, KEY)
    b = acquisition_event("MRN-11", "1.2.11", grown, URL, KEY)
    assert a.event_id != b.event_id
    assert a.series_uids == b.series_uids == ["1.2.11.1"]
    # the same instances listed in another order: the same event (a redelivery)
    shuffled = [SeriesHeader("1.2.11.1", "CT", header(), ("1.2.11.1.2", "1.2.11.1.1"))]
    assert acquisition_event("MRN-11", "1.2.11", shuffled, URL, KEY).event_id == a.event_id
    # a contour that arrives later is new input too
    contour = SeriesHeader(
        "1.2.11.2", "RTSTRUCT", header(SOPInstanceUID="1.2.11.2.1"), ("1.2.11.2.1",)
    )
    assert acquisition_event("MRN-11", "1.2.11", [*first, contour], URL, KEY).event_id not in (
        a.event_id,
        b.event_id,
    )
    ours = header(Manufacturer="irtmon")
    written_back = [
        *first,
        SeriesHeader("1.2.11.901", "SEG", ours, ("1.2.11.901.1",)),
        SeriesHeader("1.2.11.902", "SR", ours, ("1.2.11.902.1",)),
    ]
    assert acquisition_event("MRN-11", "1.2.11", written_back, URL, KEY).event_id == a.event_id


def test_free_text_of_the_headers_stays_out_of_the_event() -> None:
    named = header(
        StudyDescription="CT thorax Jane Doe follow-up",
        SeriesDescription="Doe^Jane 2mm",
        ImageComments="for Dr Smith, patient Jane Doe",
        PatientName="Doe^Jane",
    )
    event = acquisition_event("MRN-12", "1.2.12", [SeriesHeader("1.2.12.1", "CT", named)], URL, KEY)
    text = event.model_dump_json()
    assert event.description is None
    for word in ("Jane", "Doe", "Smith", "thorax"):
        assert word not in text, word
