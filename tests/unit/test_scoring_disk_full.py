"""A full disk while the worker writes a study's SEG and SR is named in the error."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from streams.failures import is_disk_full
from streams.scoring import _named_on_a_full_disk


def test_a_full_disk_error_without_a_file_names_the_folder(tmp_path: Path) -> None:
    with pytest.raises(OSError) as raised, _named_on_a_full_disk(tmp_path):
        raise OSError(errno.ENOSPC, "No space left on device")  # as pydicom's close() raises
    assert raised.value.filename == str(tmp_path)
    assert str(tmp_path) in str(raised.value)
    assert is_disk_full(raised.value)  # still an outage: retried, then the worker stops


def test_other_errors_pass_unchanged(tmp_path: Path) -> None:
    named = OSError(errno.ENOSPC, "No space left on device", "/elsewhere/file")
    with pytest.raises(OSError) as raised, _named_on_a_full_disk(tmp_path):
        raise named
    assert raised.value is named
    with pytest.raises(PermissionError), _named_on_a_full_disk(tmp_path):
        raise PermissionError(errno.EACCES, "Permission denied")
    with pytest.raises(OSError) as raised, _named_on_a_full_disk(None):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert raised.value.filename is None
