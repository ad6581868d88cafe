"""DICOM outputs are written all or none: no truncated file, no SEG without its SR."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from models.imaging.writers import save_together


class _Written:
    """Stands in for a dataset: writes some bytes, then fails if told to (a full disk)."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    def save_as(self, path: Path, enforce_file_format: bool = True) -> None:
        Path(path).write_bytes(b"DICM" * 64)
        if self.fail:
            raise OSError(errno.ENOSPC, "No space left on device")


def test_both_files_appear_once_both_are_written(tmp_path: Path) -> None:
    seg, sr = tmp_path / "lesions-seg.dcm", tmp_path / "lesions-sr.dcm"
    save_together([(_Written(), seg), (_Written(), sr)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lesions-seg.dcm", "lesions-sr.dcm"]


def test_a_failed_write_leaves_nothing_behind(tmp_path: Path) -> None:
    seg, sr = tmp_path / "lesions-seg.dcm", tmp_path / "lesions-sr.dcm"
    with pytest.raises(OSError, match="No space left"):
        save_together([(_Written(), seg), (_Written(fail=True), sr)])
    assert list(tmp_path.iterdir()) == []


def test_a_failed_rewrite_keeps_the_previous_files(tmp_path: Path) -> None:
    seg, sr = tmp_path / "lesions-seg.dcm", tmp_path / "lesions-sr.dcm"
    seg.write_bytes(b"old seg")
    sr.write_bytes(b"old sr")
    with pytest.raises(OSError):
        save_together([(_Written(), seg), (_Written(fail=True), sr)])
    assert (seg.read_bytes(), sr.read_bytes()) == (b"old seg", b"old sr")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lesions-seg.dcm", "lesions-sr.dcm"]
