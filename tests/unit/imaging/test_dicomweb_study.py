"""Fetching a study (WADO-RS) into a folder and storing objects back (STOW-RS), against a
client fake with the methods of dicomweb_client (the real server is in test_pacs.py)."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
import requests
from pydicom.dataset import Dataset

from models.exceptions import UnreadableInputError
from models.imaging import index_folder
from models.imaging.dicomweb import fetch_study, store_instances
from tests.unit.imaging.synth import ct_datasets, phantom


class FakeServer:
    def __init__(self, datasets: list[Dataset], status: int | None = None) -> None:
        self.datasets, self.status, self.stored = datasets, status, []

    def _fail(self) -> None:
        if self.status is not None:
            response = requests.Response()
            response.status_code = self.status
            raise requests.HTTPError(str(self.status), response=response)

    def retrieve_study(self, study_instance_uid: str) -> list[Dataset]:
        self._fail()
        return self.datasets

    def store_instances(self, datasets: list[Dataset]) -> Dataset:
        self._fail()
        self.stored.extend(datasets)
        return Dataset()


def test_a_study_is_fetched_once_into_a_readable_folder(tmp_path: Path) -> None:
    hu, _ = phantom(shape=(5, 16, 16))
    ct = ct_datasets(hu)
    ours = ct_datasets(hu[:1])[0]
    ours.Manufacturer = "irtmon"  # a SEG/SR irtmon wrote back earlier: left out
    target = tmp_path / "dicomweb" / "1.2" / "event"
    folder = fetch_study(
        "http://pacs", "1.2", target, skip_manufacturer="irtmon", client=FakeServer([*ct, ours])
    )
    assert folder == target
    index = index_folder(folder)
    assert list(index.images) == [str(ct[0].SeriesInstanceUID)]
    assert len(index.images[str(ct[0].SeriesInstanceUID)]) == 5
    # a second fetch finds the folder and asks nothing of the server
    assert fetch_study("http://pacs", "1.2", target, client=FakeServer([], 500)) == target
    assert not [p for p in target.parent.iterdir() if p.name.endswith(".tmp")]


def test_failures_are_sorted_into_permanent_and_transient(tmp_path: Path) -> None:
    with pytest.raises(UnreadableInputError, match="HTTP 404"):
        fetch_study("http://pacs", "1.2", tmp_path / "a", client=FakeServer([], 404))
    with pytest.raises(ConnectionError, match="HTTP 503"):
        fetch_study("http://pacs", "1.2", tmp_path / "b", client=FakeServer([], 503))
    with pytest.raises(UnreadableInputError, match="no instance"):
        fetch_study("http://pacs", "1.2", tmp_path / "c", client=FakeServer([]))
    assert not (tmp_path / "a").exists()


def test_objects_are_stored_back(tmp_path: Path) -> None:
    hu, _ = phantom(shape=(2, 8, 8))
    paths = []
    for i, ds in enumerate(ct_datasets(hu)):
        paths.append(tmp_path / f"{i}.dcm")
        ds.save_as(paths[-1], enforce_file_format=True)
    server = FakeServer([])
    uids = store_instances("http://pacs", paths, client=server)
    assert uids == [str(pydicom.dcmread(p).SOPInstanceUID) for p in paths]
    assert len(server.stored) == 2
    with pytest.raises(UnreadableInputError, match="HTTP 400"):
        store_instances("http://pacs", paths, client=FakeServer([], 400))
    with pytest.raises(ConnectionError):
        store_instances("http://pacs", paths, client=FakeServer([], 502))


class MetadataServer(FakeServer):
    """A fake that, like dicomweb_client, also answers WADO-RS metadata (DICOM JSON headers)."""

    def __init__(self, datasets: list[Dataset], headers: list[Dataset]) -> None:
        super().__init__(datasets)
        self.headers, self.retrieved = headers, 0

    def retrieve_study_metadata(self, study_instance_uid: str) -> list[dict]:
        return [_json(ds) for ds in self.headers]

    def retrieve_series_metadata(
        self, study_instance_uid: str, series_instance_uid: str
    ) -> list[dict]:
        return [_json(ds) for ds in self.headers]

    def retrieve_study(self, study_instance_uid: str) -> list[Dataset]:
        self.retrieved += 1
        return super().retrieve_study(study_instance_uid)

    def retrieve_series(self, study_instance_uid: str, series_instance_uid: str) -> list[Dataset]:
        self.retrieved += 1
        return self.datasets


def _json(ds: Dataset) -> dict:
    header = Dataset()
    for elem in ds:
        if elem.tag != 0x7FE00010:
            header.add(elem)
    return header.to_json_dict()


def test_a_study_past_the_limits_is_refused_from_its_metadata(tmp_path: Path) -> None:
    from models.exceptions import LimitExceededError
    from models.limits import ReadLimits

    hu, _ = phantom(shape=(5, 16, 16))
    ct = ct_datasets(hu)
    forged = ct_datasets(hu[:1])[0]
    forged.NumberOfFrames = 8192
    forged.Rows = forged.Columns = 8192
    server = MetadataServer(ct, [*ct, forged])
    with pytest.raises(LimitExceededError, match="8192 frames, more than the limit dicom_max_fr"):
        fetch_study("http://pacs", "1.2", tmp_path / "a", client=server)
    assert server.retrieved == 0 and not (tmp_path / "a").exists()
    few = ReadLimits(dicom_max_files=4)
    server = MetadataServer(ct, ct)
    with pytest.raises(
        LimitExceededError, match="5 instances, more than the limit dicom_max_files"
    ):
        fetch_study("http://pacs", "1.2", tmp_path / "b", client=server, limits=few)
    assert server.retrieved == 0
    small = ReadLimits(dicom_max_study_bytes=5 * 16 * 16 * 2 - 1)
    with pytest.raises(LimitExceededError, match="dicom_max_study_bytes"):
        fetch_study("http://pacs", "1.2", tmp_path / "c", client=server, limits=small)
    # a client without metadata: the retrieved headers are checked before anything is written
    with pytest.raises(LimitExceededError, match="dicom_max_study_bytes"):
        fetch_study("http://pacs", "1.2", tmp_path / "d", client=FakeServer(ct), limits=small)
    assert not (tmp_path / "d").exists()
    assert fetch_study("http://pacs", "1.2", tmp_path / "e", client=MetadataServer(ct, ct)).is_dir()


def test_a_series_past_the_limits_is_refused_before_retrieval() -> None:
    from models.exceptions import LimitExceededError
    from models.imaging import read_series_dicomweb
    from models.limits import ReadLimits

    hu, _ = phantom(shape=(5, 16, 16))
    ct = ct_datasets(hu)
    server = MetadataServer(ct, ct)
    small = ReadLimits(dicom_max_series_bytes=5 * 16 * 16 * 2 - 1)
    with pytest.raises(LimitExceededError, match="dicom_max_series_bytes"):
        read_series_dicomweb("http://pacs", "1.2", "x", client=server, limits=small)
    assert server.retrieved == 0
    series = read_series_dicomweb("http://pacs", "1.2", "x", client=server)
    assert series.volume.array.shape == (5, 16, 16) and server.retrieved == 1
