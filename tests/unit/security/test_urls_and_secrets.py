"""Secrets never shown (URLs masked, secret files), and DICOMweb only to configured PACSs."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from core.paths import UntrustedLocationError, check_dicomweb_url
from core.settings import Settings, mask_url
from schemas import DicomWebLocation, ImagingAcquired, Modality
from streams.scoring import imaging_request

PACS = "http://orthanc:8042/dicom-web"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://irtmon:s3cret@db:5432/irtmon", "postgresql://irtmon:***@db:5432/irtmon"),
        ("postgresql://irtmon@db:5432/irtmon", "postgresql://irtmon@db:5432/irtmon"),
        ("postgresql://u:p%40ss@db/x?sslmode=require", "postgresql://u:***@db/x?sslmode=require"),
        ("postgresql://db/x?user=u&password=s3cret", "postgresql://db/x?user=u&password=***"),
        ("https://user:tok@hooks.example/a", "https://user:***@hooks.example/a"),
        (None, ""),
    ],
)
def test_mask_url(url: str | None, shown: str) -> None:
    assert mask_url(url) == shown


def test_the_database_password_from_a_file_is_used_and_never_shown(tmp_path: Path) -> None:
    secret = tmp_path / "db_password"
    secret.write_text("p@ss/word:1\n")  # a trailing newline is not part of it
    s = Settings(database_url="postgresql://worker@db:5432/irtmon", database_password_file=secret)
    assert s.dsn == "postgresql://worker:p%40ss%2Fword%3A1@db:5432/irtmon"
    assert s.dsn_masked == "postgresql://worker:***@db:5432/irtmon"
    assert "p@ss" not in repr(s) and "p@ss" not in s.shown("database_password")
    with pytest.raises(ValueError, match="needs a user"):
        _ = Settings(database_url="postgresql://db/irtmon", database_password="x").dsn


def test_secret_files_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="IRTMON_PSEUDONYM_KEY_FILE: cannot read"):
        Settings(pseudonym_key_file=tmp_path / "absent")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ValueError, match="is empty"):
        Settings(pacs_password_file=empty)
    key = tmp_path / "key"
    key.write_text("a-long-pseudonym-key-0123")
    with pytest.raises(ValueError, match="set only one"):
        Settings(pseudonym_key="another-key-0123456789", pseudonym_key_file=key)
    assert Settings(pseudonym_key_file=key).pseudonym_key.get_secret_value() == (  # type: ignore[union-attr]
        "a-long-pseudonym-key-0123"
    )


def test_irtmon_config_masks_secrets_and_url_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    from irtmon.cli import app
    from irtmon.common import get_settings

    monkeypatch.setenv("IRTMON_DATABASE_URL", "postgresql://irtmon:Db-S3cret-77@db:5432/irtmon")
    monkeypatch.setenv("IRTMON_PSEUDONYM_KEY", "Key-S3cret-0123456789")
    monkeypatch.setenv("IRTMON_PACS_PASSWORD", "Pacs-S3cret-0123")
    get_settings.cache_clear()
    try:
        table = CliRunner().invoke(app, ["config"])
        listed = CliRunner().invoke(app, ["config", "--json"])
    finally:
        get_settings.cache_clear()
    # the table wraps long values at the console's width (80 columns without a terminal):
    # the secrets are looked for in both outputs, the exact masked values in the JSON
    for result in (table, listed):
        assert result.exit_code == 0, result.output
        for secret in ("Db-S3cret-77", "Key-S3cret-0123456789", "Pacs-S3cret-0123"):
            assert secret not in result.output
    shown = json.loads(listed.output)
    assert shown["IRTMON_DATABASE_URL"] == "postgresql://irtmon:***@db:5432/irtmon"
    assert shown["IRTMON_PSEUDONYM_KEY"] == shown["IRTMON_PACS_PASSWORD"] == "********"
    assert "IRTMON_DATABASE_URL" in table.output


# ----------------------------------------------------------------------------- DICOMweb


def acquisition(url: str) -> ImagingAcquired:
    return ImagingAcquired(
        event_id=uuid.uuid4(),
        patient="psn-0123456789abcdef",
        occurred_at=datetime(2026, 3, 1, tzinfo=UTC),
        modality=Modality.CT,
        study_uid="1.2.3",
        series_uids=["1.2.3.1"],
        location=DicomWebLocation(url=url),
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://evil.example:8042/dicom-web",  # another host
        "http://orthanc:8043/dicom-web",  # another port
        "https://orthanc:8042/dicom-web",  # another scheme
        "http://orthanc:8042/other-root",  # another path on it
        "http://orthanc:8042@evil.example/dicom-web",  # user-info trick: the host is evil
        "http://169.254.169.254/latest/meta-data",  # a cloud metadata service
    ],
)
def test_a_dicomweb_location_elsewhere_is_refused_before_anything_runs(
    url: str, tmp_path: Path
) -> None:
    with pytest.raises(UntrustedLocationError, match="not a configured PACS"):
        imaging_request(acquisition(url), [tmp_path], derived_dir=tmp_path, dicomweb_allowed=[PACS])
    assert not (tmp_path / "dicomweb").exists()


def test_the_configured_pacs_is_allowed_whatever_the_case_or_trailing_slash(
    tmp_path: Path,
) -> None:
    for url in (PACS, "HTTP://Orthanc:8042/dicom-web/", "http://orthanc/dicom-web"):
        allowed = [PACS, "http://orthanc:80/dicom-web"]
        request = imaging_request(
            acquisition(url),
            [tmp_path],
            derived_dir=tmp_path,
            write_back=True,
            dicomweb_allowed=allowed,
            dicomweb_headers={"Authorization": "Basic eA=="},
        )
        assert request.write_back and request.dicomweb_headers == {"Authorization": "Basic eA=="}
    with pytest.raises(UntrustedLocationError, match="allowed: none"):
        check_dicomweb_url(PACS, [])  # nothing configured: nothing allowed


def test_the_allowed_roots_come_from_the_settings() -> None:
    s = Settings(
        pacs_url="http://orthanc:8042",
        pacs_public_url="https://pacs.hospital.example",
        pacs_allowed_urls=["https://pacs2.hospital.example/dicom-web/"],
    )
    assert s.dicomweb_allowed == [
        "https://pacs.hospital.example/dicom-web",
        "http://orthanc:8042/dicom-web",
        "https://pacs2.hospital.example/dicom-web",
    ]
    local = Settings(orthanc_http_port=18100)
    assert local.dicomweb_allowed == ["http://127.0.0.1:18100/dicom-web"]
    with pytest.raises(ValueError, match="not an http"):
        Settings(pacs_allowed_urls=["ftp://pacs/dicom-web"])
