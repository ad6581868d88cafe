"""Send DICOM files to a PACS as a scanner does: dcmtk's ``storescu`` (C-STORE).

``-R`` proposes only the SOP classes of the files being sent, so SEG, RTSTRUCT and SR objects
are accepted (plain ``storescu`` proposes a fixed list of image classes and refuses them).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from schemas.errors import RetryableError

__all__ = ["StoreError", "send_folder", "storescu_command"]


class StoreError(RetryableError, RuntimeError):
    """storescu is missing, or the PACS refused or did not answer; the message says which."""


def storescu_command(
    paths: Sequence[Path],
    host: str,
    port: int,
    called_aet: str,
    calling_aet: str = "IRTMON-SCU",
    pattern: str = "*.dcm",
) -> list[str]:
    """The ``storescu`` command line sending ``paths`` (files or folders, recursively)."""
    binary = shutil.which("storescu")
    if binary is None:
        raise StoreError("storescu is not installed: apt-get install dcmtk")
    return [
        binary,
        "-R",  # only the presentation contexts the files need (SEG, SR, RTSTRUCT too)
        "+sd",  # scan folders
        "+r",  # recursively
        "+sp",
        pattern,
        "-aet",
        calling_aet,
        "-aec",
        called_aet,
        host,
        str(port),
        *[str(p) for p in paths],
    ]


def send_folder(
    paths: Sequence[Path | str],
    host: str,
    port: int,
    called_aet: str,
    timeout: float = 600.0,
) -> int:
    """Send every ``*.dcm`` under ``paths``; return how many files were sent."""
    resolved = [Path(p) for p in paths]
    missing = [str(p) for p in resolved if not p.exists()]
    if missing:
        raise FileNotFoundError(f"nothing to send at {', '.join(missing)}")
    count = sum(
        1 if p.is_file() else sum(1 for f in p.rglob("*.dcm") if f.is_file()) for p in resolved
    )
    if count == 0:
        raise ValueError(f"no *.dcm files under {', '.join(str(p) for p in resolved)}")
    command = storescu_command(resolved, host, port, called_aet)
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        raise StoreError(f"storescu to {called_aet}@{host}:{port} timed out") from err
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise StoreError(
            f"storescu to {called_aet}@{host}:{port} failed ({result.returncode}): "
            + " | ".join(detail)
        )
    return count
