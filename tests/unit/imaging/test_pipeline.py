"""analyse_acquisition end to end on small synthetic studies; DICOMweb; the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from irtmon.cli_imaging import imaging_app
from models.exceptions import InsufficientDataError, IrtmonError, UnreadableInputError
from models.imaging import analyse_acquisition, read_series_dicomweb
from tests.unit.imaging.synth import ct_datasets, phantom, write_rtstruct, write_series

SPACING = (2.0, 1.0, 1.0)


@pytest.fixture(scope="module")
def planning(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("planning")
    hu, mask = phantom(shape=(24, 64, 64), spacing=SPACING, centre_mm=(24.0, 32.0, 30.0))
    ds = ct_datasets(hu, SPACING)
    write_series(root / "CT", ds)
    write_rtstruct(root / "RTSTRUCT.dcm", ds, mask, SPACING)
    return root


def test_contoured_study(planning: Path, tmp_path: Path) -> None:
    result = analyse_acquisition(planning, output_dir=tmp_path)
    expected = 4 / 3 * np.pi * 8 * 12 * 10 / 1000
    assert result.burden.volume_ml == pytest.approx(expected, rel=0.05)
    assert result.provenance["mask_source"] == "rtstruct"
    assert result.provenance["kernel"] == "Br40"
    assert result.provenance["feature_config_version"].startswith("irtmon-radiomics-")
    assert result.features["burden_volume_ml"].unit == "ml"
    # the phantom is uniform (40 HU): no rim, no core
    assert abs(result.features["enh_rim_minus_core_hu"].value) < 10.0
    assert result.features["enh_rim_hu"].family == "enhancement"
    assert all(f.series_uid == result.series_uid for f in result.features.values())
    assert Path(result.outputs["seg"]).is_file() and Path(result.outputs["sr"]).is_file()
    json.dumps(result.to_dict())  # JSON-ready


@pytest.mark.slow
def test_follow_up_is_propagated_from_the_baseline(planning: Path, tmp_path: Path) -> None:
    base = analyse_acquisition(planning, radiomics=False, peritumoural=False)
    # follow-up: patient shifted 6 mm, lesion grown by 15 per cent in each axis
    hu, mask = phantom(
        shape=(24, 64, 64),
        spacing=SPACING,
        centre_mm=(24.0, 38.0, 27.0),
        semi_axes_mm=(9.2, 13.8, 11.5),
        seed=5,
    )
    write_series(tmp_path / "fu", ct_datasets(hu, SPACING))
    result = analyse_acquisition(tmp_path / "fu", baseline=base.as_baseline(), radiomics=False)
    truth = mask.sum() * 2.0 / 1000
    assert result.provenance["mask_source"] == "propagated"
    reg = result.provenance["registration"]
    assert reg["registration_stage"] == "rigid"  # the B-spline stage only on request
    # the shift is undone (the grown lesion keeps the correlation below 1)
    assert reg["registration_ncc"] > reg["registration_ncc_before"] + 0.1
    assert result.burden.volume_ml == pytest.approx(truth, rel=0.10)
    again = analyse_acquisition(tmp_path / "fu", baseline=base.as_baseline(), radiomics=False)
    assert again.burden == result.burden  # registration is seeded and single-threaded
    assert again.provenance["registration"] == result.provenance["registration"]
    bspline = analyse_acquisition(
        tmp_path / "fu", baseline=base.as_baseline(), radiomics=False, deformable=True
    )
    assert bspline.provenance["registration"]["registration_ncc"] > 0.9
    assert bspline.burden.volume_ml == pytest.approx(truth, rel=0.10)


def test_no_lesion_and_no_baseline(tmp_path: Path) -> None:
    hu, _ = phantom(shape=(6, 16, 16))
    write_series(tmp_path / "ct", ct_datasets(hu))
    with pytest.raises(InsufficientDataError, match="no RTSTRUCT or SEG and no baseline"):
        analyse_acquisition(tmp_path / "ct")


@pytest.mark.parametrize("problem", ["missing", "duplicate", "non_ct", "truncated", "empty"])
def test_bad_inputs_raise_project_errors_only(tmp_path: Path, problem: str) -> None:
    hu, _ = phantom(shape=(8, 16, 16))
    ds = ct_datasets(hu, modality="MR" if problem == "non_ct" else "CT")
    if problem == "missing":
        del ds[3]
    if problem == "duplicate":
        ds[4].ImagePositionPatient = ds[3].ImagePositionPatient
    folder = write_series(tmp_path / "ct", ds)
    if problem == "truncated":
        victim = sorted(folder.iterdir())[0]
        victim.write_bytes(victim.read_bytes()[:400])
    if problem == "empty":
        for f in folder.iterdir():
            f.unlink()
    with pytest.raises(IrtmonError) as info:
        analyse_acquisition(folder)
    assert str(info.value)


class _FakeClient:
    def __init__(self, datasets: list, status: int | None = None) -> None:
        self.datasets, self.status = datasets, status

    def retrieve_series(self, study_instance_uid: str, series_instance_uid: str) -> list:
        if self.status is not None:
            from requests import HTTPError, Response

            response = Response()
            response.status_code = self.status
            raise HTTPError(f"{self.status}", response=response)
        return self.datasets


def test_dicomweb_reader() -> None:
    hu, _ = phantom(shape=(6, 16, 16))
    ds = ct_datasets(hu)
    uid = str(ds[0].SeriesInstanceUID)
    series = read_series_dicomweb(None, "1.2", uid, client=_FakeClient(ds[::-1]))
    assert series.volume.array.shape == hu.shape
    with pytest.raises(UnreadableInputError, match="HTTP 404"):
        read_series_dicomweb("http://pacs/dicom-web", "1.2", uid, client=_FakeClient([], 404))
    with pytest.raises(OSError):  # a server error is transient: retry
        read_series_dicomweb("http://pacs/dicom-web", "1.2", uid, client=_FakeClient([], 503))


def test_cli_prints_json(planning: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(imaging_app, ["features", str(planning), "--no-radiomics"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["burden"]["volume_ml"] > 0
    assert payload["provenance"]["mask_source"] == "rtstruct"


def test_cli_reports_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(imaging_app, ["features", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert "UnreadableInputError" in result.output
