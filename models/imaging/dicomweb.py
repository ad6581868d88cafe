"""DICOMweb with dicomweb-client: read a CT series (WADO-RS), fetch a whole study into a folder
(WADO-RS), store derived objects back (STOW-RS).

Failures are sorted for the caller: a 4xx answer (absent study, refused object) is an
:class:`UnreadableInputError`; a refused connection, a time-out or a 5xx answer is a
``ConnectionError`` or ``TimeoutError``, which the workers retry as transient.

Reading limits (:class:`~models.limits.ReadLimits`: instance count, frames and matrix per
instance, decoded bytes per series and per study) are checked on the study's or series'
metadata (WADO-RS ``/metadata``, headers without pixel data) before its instances are
retrieved, when the client offers it, and again on the retrieved headers before anything is
written or decoded; a refusal is a :class:`~models.exceptions.LimitExceededError` naming the
limit and the value.
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

from models.exceptions import LimitExceededError, UnreadableInputError
from models.imaging.series import CtSeries, check_instance, volume_from_datasets
from models.limits import DEFAULT_LIMITS, ReadLimits, human_bytes

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
    limits: ReadLimits | None = None,
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
    limits
        Reading limits (default :class:`~models.limits.ReadLimits`); checked on the series'
        metadata first when the client can retrieve it.

    Raises
    ------
    UnreadableInputError
        The server answered but the series is absent, empty or unreadable (a 404 included).
    LimitExceededError
        The series is past a reading limit (instances, frames, matrix, decoded bytes).
    OSError
        Connection failures are left to the caller to retry (transient).
    """
    if client is None:
        if not url:
            raise ValueError("either url or client is required")
        from dicomweb_client.api import DICOMwebClient

        client = DICOMwebClient(url=url, headers=headers)
    from requests import HTTPError

    limits = limits or DEFAULT_LIMITS
    try:
        metadata = getattr(client, "retrieve_series_metadata", None)
        if metadata is not None:
            _check_headers(
                [
                    _header_from_json(item)
                    for item in metadata(
                        study_instance_uid=study_uid, series_instance_uid=series_uid
                    )
                ],
                f"series {series_uid} of study {study_uid} from {url or 'DICOMweb'}",
                limits,
                study=False,
            )
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
    return volume_from_datasets(list(datasets), source=url or "DICOMweb", limits=limits)


_JSON_TAGS = {
    "Rows": "00280010",
    "Columns": "00280011",
    "NumberOfFrames": "00280008",
    "SamplesPerPixel": "00280002",
    "BitsAllocated": "00280100",
    "SOPInstanceUID": "00080018",
    "SeriesInstanceUID": "0020000E",
}


def _header_from_json(item: Any) -> Dataset:
    """The attributes the limits need, from one instance's DICOM JSON (WADO-RS metadata)."""
    ds = Dataset()
    if not isinstance(item, dict):
        return ds
    for keyword, tag in _JSON_TAGS.items():
        element = item.get(tag) or item.get(tag.lower())
        values = element.get("Value") if isinstance(element, dict) else None
        if not values:
            continue
        value = values[0]
        if keyword in ("SOPInstanceUID", "SeriesInstanceUID"):
            setattr(ds, keyword, str(value))
            continue
        try:
            setattr(ds, keyword, int(value))
        except (TypeError, ValueError):
            raise UnreadableInputError(
                f"instance metadata has a {keyword} of {value!r}, not a number"
            ) from None
    return ds


def _check_headers(
    headers: Sequence[Dataset], what: str, limits: ReadLimits, *, study: bool
) -> None:
    """Refuse headers past the limits: count, per-instance size, decoded bytes (per series and,
    for a study, in total)."""
    if len(headers) > limits.dicom_max_files:
        raise LimitExceededError(
            f"{what}: {len(headers):,} instances, more than the limit dicom_max_files of "
            f"{limits.dicom_max_files:,}; refused before retrieving them"
        )
    per_series: dict[str, int] = {}
    for ds in headers:
        size = check_instance(ds, f"{what}: ", limits)
        uid = str(ds.get("SeriesInstanceUID", "") or "")
        per_series[uid] = per_series.get(uid, 0) + size
    for uid, size in per_series.items():
        if size > limits.dicom_max_series_bytes:
            raise LimitExceededError(
                f"{what}: series {uid} holds {human_bytes(size)} ({size:,} bytes) of decoded "
                f"pixel data, more than the limit dicom_max_series_bytes of "
                f"{human_bytes(limits.dicom_max_series_bytes)}; refused before decoding"
            )
    total = sum(per_series.values())
    if study and total > limits.dicom_max_study_bytes:
        raise LimitExceededError(
            f"{what} holds {human_bytes(total)} ({total:,} bytes) of decoded pixel data, more "
            f"than the limit dicom_max_study_bytes of "
            f"{human_bytes(limits.dicom_max_study_bytes)}; refused before decoding"
        )


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
    limits: ReadLimits | None = None,
) -> Path:
    """Retrieve every instance of a study (WADO-RS) into ``dest/<series UID>/<SOP UID>.dcm``.

    A folder that exists already is taken as fetched (the study was stable when it was
    fetched). The study is written to a temporary sibling folder first and renamed, so a
    reader never sees half a study. Instances whose Manufacturer is ``skip_manufacturer``
    (irtmon's own SEG and SR written back earlier) are left out. The study's metadata is
    checked against ``limits`` (default :class:`~models.limits.ReadLimits`) before its
    instances are retrieved, when the client can retrieve metadata, and the retrieved headers
    again before anything is written.

    Raises
    ------
    UnreadableInputError
        The server has no such study (4xx) or returned no instance.
    LimitExceededError
        The study is past a reading limit (instances, frames, matrix, decoded bytes).
    ConnectionError, TimeoutError
        The server is down or slow (transient: retry).
    """
    import requests

    target = Path(dest)
    if target.is_dir():
        return target
    limits = limits or DEFAULT_LIMITS
    client = client if client is not None else _client(url, headers)
    what = f"study {study_uid} from {url}"
    try:
        metadata = getattr(client, "retrieve_study_metadata", None)
        if metadata is not None:
            items = metadata(study_instance_uid=study_uid)
            _check_headers([_header_from_json(i) for i in items], what, limits, study=True)
        datasets = list(client.retrieve_study(study_instance_uid=study_uid))
    except requests.RequestException as err:
        raise _sorted_failure(err, f"retrieving {what}") from err
    _check_headers(datasets, what, limits, study=True)
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
