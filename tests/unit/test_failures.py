"""How the worker classifies failures, and the disk-full path: retried, then a clear reason."""

from __future__ import annotations

import asyncio
import errno
from pathlib import Path

import psycopg
import pytest

from models.pathology.heatmap import write_heatmap
from streams.failures import OutageOutlastedRetriesError, is_transient, with_retries


def test_outages_are_transient_and_faults_of_the_event_are_not() -> None:
    assert is_transient(psycopg.OperationalError("server closed the connection"))
    assert is_transient(ConnectionRefusedError())
    assert is_transient(OSError(errno.ENOSPC, "No space left on device", "/x"))
    assert is_transient(OSError(errno.EDQUOT, "Disk quota exceeded", "/x"))
    assert not is_transient(OSError(errno.EACCES, "Permission denied", "/x"))
    assert not is_transient(FileNotFoundError(errno.ENOENT, "No such file", "/x"))
    assert not is_transient(ValueError("bad"))


def test_a_disk_staying_full_ends_in_a_reason_that_says_so() -> None:
    calls = 0

    async def write() -> None:
        nonlocal calls
        calls += 1
        raise OSError(errno.ENOSPC, "No space left on device", "/derived/heatmaps/a.png")

    with pytest.raises(OutageOutlastedRetriesError) as info:
        asyncio.run(with_retries(write, window_s=0.3, what="write", first_delay_s=0.05))
    assert calls >= 2
    message = str(info.value)
    assert "No space left on device: '/derived/heatmaps/a.png'" in message
    assert "disk full" in message


def test_a_failed_heatmap_write_leaves_no_file_and_names_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "heatmaps" / "psn-0123456789abcdef" / "e-slide.attention.png"

    def full_disk(self: Path, data: bytes) -> int:  # a writer failing half way
        with open(self, "wb") as f:
            f.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full_disk)
    with pytest.raises(OSError) as info:
        write_heatmap(target, b"\x89PNG" + b"\0" * 1000)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert list(target.parent.iterdir()) == []  # neither a truncated PNG nor a partial file
    monkeypatch.undo()
    assert write_heatmap(target, b"\x89PNG").read_bytes() == b"\x89PNG"


def test_the_retry_window_starts_at_the_first_failure() -> None:
    import time

    calls = 0

    async def slow_then_fails_once() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(0.4)  # a first attempt longer than the whole window
            raise ConnectionRefusedError("database restarting")
        return "done"

    started = time.monotonic()
    result = asyncio.run(
        with_retries(slow_then_fails_once, window_s=0.2, what="store", first_delay_s=0.01)
    )
    assert result == "done" and calls == 2
    assert time.monotonic() - started < 2
