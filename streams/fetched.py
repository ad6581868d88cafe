"""Studies fetched by DICOMweb: marked while in use, pruned once unused for a while.

A DICOMweb acquisition is fetched into ``<derived_dir>/dicomweb/<study UID>/<event id>`` and
stays there as the baseline of later follow-ups. Left alone, the folder would keep a copy of
every study the PACS ever sent: patient images on the worker's disk long after they are needed,
and a disk that fills. The PACS keeps the original, and scoring fetches a missing baseline
again, so a copy unused for ``IRTMON_DICOMWEB_RETENTION_DAYS`` is deleted.

While a worker reads a folder it holds a shared ``flock`` on ``.<event id>.lock`` beside it
(and refreshes that file's time: the last use). The pruner takes the lock exclusively, without
waiting, and skips a folder in use; it re-reads the last use once it holds the lock. A reader
that opened the lock just before the pruner removed it finds the folder gone and fetches it
again, so nothing is read half-deleted.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

log = logging.getLogger("irtmon.fetched")

FETCHED = "dicomweb"
"""Sub-folder of the derived folder that holds fetched studies."""


def fetched_root(derived_dir: Path) -> Path:
    return derived_dir / FETCHED


def _lock_path(folder: Path) -> Path:
    return folder.with_name(f".{folder.name}.lock")


@contextmanager
def in_use(folder: Path) -> Iterator[Path]:
    """Hold ``folder`` (fetched or about to be) against pruning, and mark it used now."""
    lock = _lock_path(folder)
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_SH)
        os.utime(lock)
        try:
            yield folder
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def last_use(folder: Path) -> float:
    """When the folder was last fetched or read (seconds since the epoch)."""
    times = [folder.stat().st_mtime]
    lock = _lock_path(folder)
    if lock.exists():
        times.append(lock.stat().st_mtime)
    return max(times)


def prune(derived_dir: Path, retention_s: float, now: float | None = None) -> list[Path]:
    """Delete the fetched studies not used for ``retention_s`` seconds; return them.

    Folders in use (a worker holds their lock) and temporary folders of a fetch in progress
    (their names start with a dot) are left alone; empty study folders go too.
    """
    root = fetched_root(derived_dir)
    if not root.is_dir():
        return []
    cutoff = (time.time() if now is None else now) - retention_s
    removed: list[Path] = []
    for study in sorted(p for p in root.iterdir() if p.is_dir()):
        for folder in sorted(p for p in study.iterdir() if p.is_dir()):
            if folder.name.startswith("."):
                if folder.name.endswith(".tmp") and folder.stat().st_mtime < cutoff:
                    shutil.rmtree(folder, ignore_errors=True)  # left by a fetch that died
                continue
            try:
                if last_use(folder) > cutoff:
                    continue
                if _remove_unless_used(folder, cutoff):
                    removed.append(folder)
            except FileNotFoundError:  # another worker pruned it first
                continue
        _remove_if_empty(study)
    if removed:
        log.info("pruned fetched studies", extra={"count": len(removed), "root": str(root)})
    return removed


def _remove_unless_used(folder: Path, cutoff: float) -> bool:
    lock = _lock_path(folder)
    existed = lock.exists()
    with open(lock, "a") as handle:
        if not existed:  # a lock made here is no use: keep the folder's own time
            when = folder.stat().st_mtime
            os.utime(lock, (when, when))
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # being read now
        try:
            if last_use(folder) > cutoff:  # used between the first look and the lock
                return False
            shutil.rmtree(folder)
            lock.unlink(missing_ok=True)
            return True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove_if_empty(study: Path) -> None:
    with suppress(OSError):  # not empty (or gone)
        study.rmdir()
