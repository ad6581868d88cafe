"""The storescu command line and the Orthanc configuration irtmon writes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from core.settings import Settings
from irtmon.stack.orthanc import PLUGINS, orthanc_config, write_config
from pacs.send import send_folder, storescu_command


@pytest.mark.skipif(shutil.which("storescu") is None, reason="needs dcmtk")
def test_storescu_sends_seg_and_sr_too(tmp_path: Path) -> None:
    command = storescu_command([tmp_path], "127.0.0.1", 4242, "IRTMON")
    assert "-R" in command  # SEG, RTSTRUCT and SR are refused without it
    assert command[-3:] == ["127.0.0.1", "4242", str(tmp_path)]
    assert command[command.index("-aec") + 1] == "IRTMON"


def test_send_refuses_empty_or_missing_folders(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothing to send"):
        send_folder([tmp_path / "absent"], "127.0.0.1", 4242, "IRTMON")
    with pytest.raises(ValueError, match=r"no \*\.dcm files"):
        send_folder([tmp_path], "127.0.0.1", 4242, "IRTMON")


def test_the_configuration_follows_the_settings(tmp_path: Path) -> None:
    settings = Settings(
        orthanc_http_port=18100,
        orthanc_dicom_port=14300,
        orthanc_aet="PACS1",
        orthanc_stable_age_s=7,
        pacs_password="rest-password-0123",
        orthanc_allowed_callers=["CT1@10.0.4.21", "IRTMON-SCU@127.0.0.1"],
    )
    config = orthanc_config(settings, tmp_path / "storage")
    # who may store: the allowed callers only, by AE title and address, to our AE title only
    assert config["DicomCheckCalledAet"] is True
    assert config["DicomAlwaysAllowStore"] is False and config["DicomCheckModalityHost"] is True
    assert not any(config[f"DicomAlwaysAllow{c}"] for c in ("Echo", "Find", "Get", "Move"))
    callers = {(m["AET"], m["Host"]) for m in config["DicomModalities"].values()}
    assert callers == {("CT1", "10.0.4.21"), ("IRTMON-SCU", "127.0.0.1")}
    for modality in config["DicomModalities"].values():
        assert modality["AllowStore"] and not modality["AllowMove"] and not modality["AllowFind"]
    # the REST API and DICOMweb: authenticated, one user
    assert config["AuthenticationEnabled"] is True
    assert config["RegisteredUsers"] == {"irtmon": "rest-password-0123"}
    assert (config["HttpPort"], config["DicomPort"], config["DicomAet"]) == (18100, 14300, "PACS1")
    assert config["StableAge"] == 7
    assert config["DicomWeb"]["Enable"] is True
    assert config["DicomWeb"]["Root"] == "/dicom-web/"
    assert {Path(p).name for p in config["Plugins"]} == set(PLUGINS)
    assert Path(config["PythonScript"]).is_file()
    assert config["PythonScript"].endswith("pacs/orthanc_plugin.py")
    assert any(p.endswith("site-packages") for p in config["Irtmon"]["PythonPaths"])
    assert settings.dicomweb_url == "http://127.0.0.1:18100/dicom-web"
    written = write_config(settings, tmp_path / "orthanc.json")
    assert json.loads(written.read_text())["HttpPort"] == 18100
    assert written.stat().st_mode & 0o777 == 0o600  # it holds the password


def test_a_pacs_elsewhere() -> None:
    settings = Settings(pacs_url="http://orthanc:8042/", pacs_public_url="http://pacs.example:8042")
    assert not settings.local_pacs
    assert settings.pacs_http == "http://orthanc:8042"
    assert settings.dicomweb_url == "http://pacs.example:8042/dicom-web"


def test_the_pacs_does_not_start_without_a_pseudonym_key(tmp_path: Path) -> None:
    from irtmon.stack import orthanc
    from irtmon.stack.process import StackError

    with pytest.raises(StackError, match="IRTMON_PSEUDONYM_KEY"):
        orthanc.start(Settings(state_dir=tmp_path))


def test_the_pacs_does_not_start_or_configure_without_a_rest_password(tmp_path: Path) -> None:
    from irtmon.stack import orthanc
    from irtmon.stack.process import StackError

    keyed = Settings(state_dir=tmp_path, pseudonym_key="a-long-pseudonym-key-0123")
    with pytest.raises(StackError, match="IRTMON_PACS_PASSWORD"):
        orthanc.start(keyed)
    with pytest.raises(ValueError, match="IRTMON_PACS_PASSWORD"):
        orthanc_config(keyed, tmp_path)


@pytest.mark.parametrize(
    "entry", ["CT1", "CT1@scanner.hospital.example", "@10.0.0.1", "A-VERY-LONG-AE-TITLE-X@10.0.0.1"]
)
def test_allowed_callers_are_ae_titles_at_ip_addresses(entry: str) -> None:
    with pytest.raises(ValueError, match="orthanc_allowed_callers"):
        Settings(orthanc_allowed_callers=[entry])


def _dicom(path: Path, patient_id: str) -> Path:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = CTImageStorage
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.PatientID = patient_id
    ds.PatientName = f"{patient_id}^"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def test_pseudonymised_files_are_sent_with_their_clear_identifiers(tmp_path: Path) -> None:
    """The virtual clinic's files carry pseudonyms; the PACS keys every PatientID, so they go
    with the cohort's clear identifiers (keyed with the cohort's key, the same pseudonym)."""
    import pydicom

    from pacs.send import (
        PseudonymisedFilesError,
        find_identities,
        load_identities,
        reidentified_copies,
    )
    from schemas import pseudonymise

    key = "cohort-key-0123456789abcdef"
    psn = pseudonymise("VC-0001", key)
    cohort = tmp_path / "cohort"
    (cohort / "ground_truth").mkdir(parents=True)
    (cohort / "ground_truth" / "identities.csv").write_text(f"clear_id,pseudonym\nVC-0001,{psn}\n")
    study = cohort / "patients" / psn / "tp0"
    _dicom(study / "a.dcm", psn)
    _dicom(study / "b.dcm", "HOSP-1")  # already a clear identifier: sent as it is
    table = find_identities([study])
    assert table == cohort / "ground_truth" / "identities.csv"
    files, changed = reidentified_copies([study], load_identities(table), tmp_path / "out")
    assert changed == 1 and len(files) == 2
    ids = sorted(str(pydicom.dcmread(f).PatientID) for f in files)
    assert ids == ["HOSP-1", "VC-0001"]
    assert pseudonymise("VC-0001", key) == psn  # what the PACS will make of it
    assert pydicom.dcmread(study / "a.dcm").PatientID == psn  # the originals are untouched
    with pytest.raises(PseudonymisedFilesError, match="--identities"):
        reidentified_copies([study], None, tmp_path / "out2")
