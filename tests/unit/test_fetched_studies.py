"""Fetched DICOMweb studies: pruned when unused, never while a worker reads them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from streams import fetched
from tests.conftest import REPO

DAY = 86400.0


def make_study(derived: Path, study: str, event: str, age_days: float, now: float) -> Path:
    folder = fetched.fetched_root(derived) / study / event
    (folder / "1.2.3").mkdir(parents=True)
    (folder / "1.2.3" / "1.2.3.4.dcm").write_bytes(b"DICM")
    when = now - age_days * DAY
    os.utime(folder, (when, when))
    return folder


def test_prunes_only_what_was_not_used_within_the_retention(tmp_path: Path) -> None:
    now = time.time()
    old = make_study(tmp_path, "1.1", "e-old", 10, now)
    recent = make_study(tmp_path, "1.2", "e-new", 2, now)
    reused = make_study(tmp_path, "1.3", "e-base", 30, now)
    with fetched.in_use(reused):  # read as a follow-up's baseline today
        pass
    tmp = fetched.fetched_root(tmp_path) / "1.2" / ".e-x.1a2b.tmp"
    tmp.mkdir()
    os.utime(tmp, (now - 10 * DAY, now - 10 * DAY))

    removed = fetched.prune(tmp_path, 7 * DAY, now=now)

    assert removed == [old]
    assert not old.exists() and not old.parent.exists()  # its empty study folder too
    assert recent.is_dir() and reused.is_dir()
    assert not tmp.exists()  # a dead fetch's leftovers
    assert fetched.prune(tmp_path, 7 * DAY, now=now) == []  # nothing more to do


def test_no_fetched_folder_is_nothing_to_prune(tmp_path: Path) -> None:
    assert fetched.prune(tmp_path, DAY) == []


HOLD = """
import sys
from pathlib import Path
from streams import fetched
from tests.conftest import REPO
with fetched.in_use(Path(sys.argv[1])):
    print("held", flush=True)
    sys.stdin.readline()
"""


def test_a_study_being_read_by_another_process_is_skipped(tmp_path: Path) -> None:
    now = time.time()
    folder = make_study(tmp_path, "2.1", "e1", 30, now)
    reader = subprocess.Popen(  # a worker process reading the study
        [sys.executable, "-c", HOLD, str(folder)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert reader.stdin is not None and reader.stdout is not None
    try:
        assert reader.stdout.readline().strip() == "held"
        # the reader's use refreshed the time: even a retention of 0 s may not take it now,
        # and with the time check out of the way (future "now"), its lock still protects it
        assert fetched.prune(tmp_path, 7 * DAY, now=now) == []
        assert fetched.prune(tmp_path, 0.0, now=time.time() + DAY) == []
        assert folder.is_dir()
    finally:
        reader.stdin.write("\n")
        reader.stdin.flush()
        assert reader.wait(30) == 0
    assert fetched.prune(tmp_path, 0.0, now=time.time() + DAY) == [folder]
    assert not folder.exists()
