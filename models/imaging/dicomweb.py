"""Read a CT series from a DICOMweb server (WADO-RS) with dicomweb-client."""

from __future__ import annotations

from typing import Any, Protocol

from pydicom.dataset import Dataset

from models.exceptions import UnreadableInputError
from models.imaging.series import CtSeries, volume_from_datasets

__all__ = ["SeriesRetriever", "read_series_dicomweb"]


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
