"""Send DICOM files to a PACS as a scanner does: dcmtk's ``storescu`` (C-STORE).

``-R`` proposes only the SOP classes of the files being sent, so SEG, RTSTRUCT and SR objects
are accepted (plain ``storescu`` proposes a fixed list of image classes and refuses them).

The PACS keys every PatientID it receives (:mod:`pacs.study`), so de-identified files whose
PatientID is already a pseudonym (the virtual clinic's) are sent as a hospital would hold them:
:func:`reidentified_copies` writes copies with the clear identifiers of the cohort's
``ground_truth/identities.csv``; keyed with the same ``IRTMON_PSEUDONYM_KEY`` the cohort was
made with, they come out of the PACS under the cohort's pseudonyms.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from schemas.errors import RefusedError, RetryableError
from schemas.pseudonym import is_pseudonym

__all__ = [
    "IDENTITIES_FILE",
    "PseudonymisedFilesError",
    "StoreError",
    "find_identities",
    "load_identities",
    "reidentified_copies",
    "send_folder",
    "storescu_command",
]

IDENTITIES_FILE = Path("ground_truth") / "identities.csv"
"""Where a virtual-clinic cohort keeps its clear identifiers (``clear_id``, ``pseudonym``)."""


class StoreError(RetryableError, RuntimeError):
    """storescu is missing, or the PACS refused or did not answer; the message says which."""


class PseudonymisedFilesError(RefusedError, ValueError):
    """The files carry pseudonyms as PatientID and no clear identifier is known for one."""


def find_identities(paths: Sequence[Path]) -> Path | None:
    """The cohort's identities table above the first of ``paths`` (None when there is none)."""
    for path in paths:
        for folder in [Path(path).resolve(), *Path(path).resolve().parents]:
            candidate = folder / IDENTITIES_FILE
            if candidate.is_file():
                return candidate
    return None


def load_identities(path: Path) -> dict[str, str]:
    """Pseudonym -> clear identifier, from a cohort's ``identities.csv``."""
    with path.open(newline="", encoding="utf-8") as fh:
        return {row["pseudonym"]: row["clear_id"] for row in csv.DictReader(fh)}


def _dicom_files(paths: Sequence[Path], pattern: str = "*.dcm") -> list[Path]:
    files: list[Path] = []
    for p in paths:
        files.extend([p] if p.is_file() else sorted(f for f in p.rglob(pattern) if f.is_file()))
    return files


def reidentified_copies(
    paths: Sequence[Path], identities: dict[str, str] | None, out: Path
) -> tuple[list[Path], int]:
    """Copies under ``out`` of the files whose PatientID is a pseudonym, with the clear
    identifier of ``identities`` in PatientID and PatientName; other files are sent as they
    are. Returns the paths to send and how many files were re-identified.

    Raises
    ------
    PseudonymisedFilesError
        A file's PatientID is a pseudonym that ``identities`` does not know.
    """
    files = _dicom_files(paths)
    keep: list[Path] = []
    changed = 0
    for i, path in enumerate(files):
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["PatientID"])
        except (InvalidDicomError, OSError):
            keep.append(path)  # storescu says what is wrong with it
            continue
        patient_id = str(header.get("PatientID", "") or "").strip()
        if not is_pseudonym(patient_id):
            keep.append(path)
            continue
        clear = (identities or {}).get(patient_id)
        if clear is None:
            raise PseudonymisedFilesError(
                f"{path}: its PatientID {patient_id} is already a pseudonym. The PACS keys "
                "every PatientID, so it would be filed under a pseudonym of the pseudonym: "
                "send the files with their clear identifiers (irtmon pacs send --identities "
                "COHORT/ground_truth/identities.csv)"
            )
        ds = pydicom.dcmread(path)
        ds.PatientID = clear
        ds.PatientName = f"{clear}^"
        target = out / f"{i:06d}.dcm"
        target.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(target, enforce_file_format=True)
        keep.append(target)
        changed += 1
    return keep, changed


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
    calling_aet: str = "IRTMON-SCU",
) -> int:
    """Send every ``*.dcm`` under ``paths`` as ``calling_aet``; return how many files were
    sent. The PACS refuses a calling AE title (or address) it does not allow."""
    resolved = [Path(p) for p in paths]
    missing = [str(p) for p in resolved if not p.exists()]
    if missing:
        raise FileNotFoundError(f"nothing to send at {', '.join(missing)}")
    count = sum(
        1 if p.is_file() else sum(1 for f in p.rglob("*.dcm") if f.is_file()) for p in resolved
    )
    if count == 0:
        raise ValueError(f"no *.dcm files under {', '.join(str(p) for p in resolved)}")
    command = storescu_command(resolved, host, port, called_aet, calling_aet=calling_aet)
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        raise StoreError(f"storescu to {called_aet}@{host}:{port} timed out") from err
    errors = [  # dcmtk's error and fatal lines: a refused association, a failed store
        line.strip()
        for line in (result.stdout + result.stderr).splitlines()
        if line.startswith(("E:", "F:"))
    ]
    if result.returncode != 0 or errors:
        detail = (errors or (result.stderr or result.stdout).strip().splitlines())[-5:]
        raise StoreError(
            f"storescu as {calling_aet} to {called_aet}@{host}:{port} failed "
            f"({result.returncode}): " + " | ".join(detail)
        )
    return count
