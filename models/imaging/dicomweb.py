"""DICOMweb with dicomweb-client: read a CT series (WADO-RS), fetch a whole study into a folder
(WADO-RS), store derived objects back (STOW-RS).

Failures are sorted for the caller: a 4xx answer (absent study, refused object) is an
:class:`UnreadableInputError`; a refused connection, a time-out or a 5xx answer is a
``ConnectionError`` or ``TimeoutError``, which the workers retry as transient.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from models.exceptions import UnreadableInputError
from models.imaging.series import CtSeries, volume_from_datasets

__all__ = [
    "SeriesRetriever",
    "fetch_study",
    "read_series_dicomweb",
    "store_instances",
]


class SeriesRetriever(Protocol):
    """What the reader needs of a DICOMweb client (``dicomweb_client.DICOMwebClient``)."""

    def retrieve_series(self, study_instance_uid: str, series_instance_uid: str) -> list[Dataset]:
        """All instances of one series."""
        ...


def read_series_dicomweb(
    url: str | None,
    study_uid: str,
    series_uid: str,
    *,
    client: SeriesRetriever | None = None,
    headers: dict[str, str] | None = None,
) -> CtSeries:
    """Retrieve one series with WADO-RS and read it like a folder series.

    Parameters
    ----------
    url
        The DICOMweb root (e.g. ``http://pacs:8042/dicom-web``); ignored when ``client`` is given.
    study_uid, series_uid
        The series to read.
    client
        A ready client (tests pass a fake with the same method).
    headers
        Extra HTTP headers (authorisation).

    Raises
    ------
    UnreadableInputError
        The server answered but the series is absent, empty or unreadable (a 404 included).
    OSError
        Connection failures are left to the caller to retry (transient).
    """
    if client is None:
        if not url:
            raise ValueError("either url or client is required")
        from dicomweb_client.api import DICOMwebClient

        client = DICOMwebClient(url=url, headers=headers)
    from requests import HTTPError

    try:
        datasets: Any = client.retrieve_series(
            study_instance_uid=study_uid, series_instance_uid=series_uid
        )
    except HTTPError as err:
        status = getattr(err.response, "status_code", None)
        if status is not None and 400 <= int(status) < 500:
            raise UnreadableInputError(
                f"series {series_uid} of study {study_uid} not retrievable from {url}: "
                f"HTTP {status}"
            ) from err
        raise  # 5xx: an OSError, transient, the caller retries
    return volume_from_datasets(list(datasets), source=url or "DICOMweb")


def _client(url: str, headers: dict[str, str] | None) -> Any:
    from dicomweb_client.api import DICOMwebClient

    return DICOMwebClient(url=url, headers=headers)


def _sorted_failure(err: Exception, what: str) -> Exception:
    """An HTTP failure as UnreadableInputError (4xx) or a transient ConnectionError/TimeoutError."""
    import requests

    if isinstance(err, requests.Timeout):
        return TimeoutError(f"{what}: timed out ({err})")
    if isinstance(err, requests.HTTPError):
        status = getattr(err.response, "status_code", None)
        if status is not None and 400 <= int(status) < 500:
            return UnreadableInputError(f"{what}: HTTP {status}")
        return ConnectionError(f"{what}: HTTP {status}")
    return ConnectionError(f"{what}: {err}")


def fetch_study(
    url: str,
    study_uid: str,
    dest: str | Path,
    *,
    skip_manufacturer: str | None = None,
    client: Any = None,
    headers: dict[str, str] | None = None,
) -> Path:
    """Retrieve every instance of a study (WADO-RS) into ``dest/<series UID>/<SOP UID>.dcm``.

    A folder that exists already is taken as fetched (the study was stable when it was
    fetched). The study is written to a temporary sibling folder first and renamed, so a
    reader never sees half a study. Instances whose Manufacturer is ``skip_manufacturer``
    (irtmon's own SEG and SR written back earlier) are left out.

    Raises
    ------
    UnreadableInputError
        The server has no such study (4xx) or returned no instance.
    ConnectionError, TimeoutError
        The server is down or slow (transient: retry).
    """
    import requests

    target = Path(dest)
    if target.is_dir():
        return target
    client = client if client is not None else _client(url, headers)
    what = f"study {study_uid} from {url}"
    try:
        datasets = list(client.retrieve_study(study_instance_uid=study_uid))
    except requests.RequestException as err:
        raise _sorted_failure(err, f"retrieving {what}") from err
    kept = [
        ds
        for ds in datasets
        if skip_manufacturer is None
        or str(ds.get("Manufacturer", "")).strip().lower() != skip_manufacturer.lower()
    ]
    if not kept:
        raise UnreadableInputError(f"{what}: no instance to read ({len(datasets)} retrieved)")
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        for ds in kept:
            series_uid = str(ds.get("SeriesInstanceUID", "") or "")
            sop_uid = str(ds.get("SOPInstanceUID", "") or "")
            if not (series_uid and sop_uid) or "/" in series_uid + sop_uid:
                raise UnreadableInputError(f"{what}: an instance without usable UIDs")
            folder = tmp / series_uid
            folder.mkdir(parents=True, exist_ok=True)
            _with_file_meta(ds).save_as(folder / f"{sop_uid}.dcm", enforce_file_format=True)
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():  # not another worker that won the race
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _with_file_meta(ds: Dataset) -> Dataset:
    meta = getattr(ds, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:
        meta = FileMetaDataset()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def store_instances(
    url: str,
    paths: Sequence[str | Path],
    *,
    client: Any = None,
    headers: dict[str, str] | None = None,
) -> list[str]:
    """Store DICOM files on a DICOMweb server (STOW-RS); return their SOP Instance UIDs.

    Raises
    ------
    UnreadableInputError
        The server refused an object (4xx, or a failed SOP in its answer).
    ConnectionError, TimeoutError
        The server is down or slow (transient: retry; a repeated store is harmless, the same
        SOP Instance UID is replaced).
    """
    import requests

    datasets = [pydicom.dcmread(str(p)) for p in paths]
    client = client if client is not None else _client(url, headers)
    what = f"storing {len(datasets)} objects to {url}"
    try:
        answer = client.store_instances(datasets=datasets)
    except requests.RequestException as err:
        raise _sorted_failure(err, what) from err
    failed = getattr(answer, "FailedSOPSequence", None) or []
    if failed:
        raise UnreadableInputError(f"{what}: the server refused {len(failed)} of them")
    return [str(ds.SOPInstanceUID) for ds in datasets]
