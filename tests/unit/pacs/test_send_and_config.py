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
    )
    config = orthanc_config(settings, tmp_path / "storage")
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
