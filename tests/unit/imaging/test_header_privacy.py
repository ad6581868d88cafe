"""DICOM headers are never logged or echoed whole: the clear identifiers a hospital's files
carry (name, ID, birth date, accession number) appear in no log record, no error message (which
becomes a dead-letter reason) and no stored provenance, whether the series reads or not."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pydicom
import pytest
from pydicom import examples

from models.exceptions import IrtmonError
from models.imaging import analyse_acquisition
from models.imaging.pipeline import _series_record
from models.imaging.series import index_folder, read_series

MARKERS = {
    "PatientName": "Clearname^Jane^Marker",
    "PatientID": "MRN-4711-MARKER",
    "PatientBirthDate": "19230417",
    "AccessionNumber": "ACC-MARKER-99",
    "ReferringPhysicianName": "Referrer^Marker",
    "InstitutionName": "Marker General Hospital",
}


def series(folder: Path, **changes: object) -> Path:
    folder.mkdir(parents=True)
    ds = pydicom.dcmread(examples.get_path("ct"))
    for keyword, value in {**MARKERS, **changes}.items():
        setattr(ds, keyword, value)
    ds.save_as(folder / "slice.dcm")
    return folder


def leaks(text: str) -> list[str]:
    return [m for m in MARKERS.values() if m in text]


def test_no_header_identifier_in_logs_errors_or_provenance(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    good = series(tmp_path / "good")
    seen = [repr(index_folder(good)), repr(read_series(good))]
    seen.append(json.dumps(_series_record(read_series(good)), default=str))
    for folder in (
        good,  # readable, but no lesion reference: refused
        series(tmp_path / "mr", Modality="MR"),
        series(tmp_path / "huge", Rows=60000, Columns=60000),
    ):
        with pytest.raises(IrtmonError) as info:
            analyse_acquisition(folder)
        seen.append(str(info.value))
    assert len(seen) == 6
    assert not leaks("\n".join(seen)), leaks("\n".join(seen))
    assert not leaks(caplog.text), leaks(caplog.text)
    shutil.rmtree(tmp_path)
