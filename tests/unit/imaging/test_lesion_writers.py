"""Lesion masks from RTSTRUCT and SEG, and the SEG / SR written for the PACS."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from models.exceptions import InsufficientDataError, UnreadableInputError
from models.imaging import (
    MaskSource,
    build_seg,
    build_sr,
    mask_from_rtstruct,
    mask_from_seg,
    measure_burden,
    read_lesion,
    read_series,
    refine_mask,
)
from tests.unit.imaging.synth import ct_datasets, phantom, write_rtstruct, write_series

SPACING = (2.0, 1.0, 1.0)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    root = tmp_path_factory.mktemp("study")
    hu, mask = phantom(spacing=SPACING)
    ds = ct_datasets(hu, SPACING)
    write_series(root / "CT", ds)
    write_rtstruct(root / "RTSTRUCT.dcm", ds, mask, SPACING)
    return root, mask


def test_rtstruct_rasterises_to_the_drawn_mask(study: tuple[Path, np.ndarray]) -> None:
    root, mask = study
    series = read_series(root / "CT")
    lesion = mask_from_rtstruct(root / "RTSTRUCT.dcm", series.volume)
    assert lesion.source is MaskSource.RTSTRUCT and lesion.label == "GTV"
    dice = 2 * (lesion.mask & mask).sum() / (lesion.mask.sum() + mask.sum())
    assert dice > 0.97
    assert lesion.mask.sum() == pytest.approx(mask.sum(), rel=0.03)


def test_rtstruct_errors(study: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    root, _ = study
    series = read_series(root / "CT")
    with pytest.raises(UnreadableInputError, match="no ROI or segment named 'Liver'"):
        mask_from_rtstruct(root / "RTSTRUCT.dcm", series.volume, "Liver")
    with pytest.raises(UnreadableInputError, match="frame of reference"):
        mask_from_rtstruct(root / "RTSTRUCT.dcm", series.volume, frame_of_reference="1.2.3")
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"\0" * 128 + b"DICM" + b"\x01" * 10)
    with pytest.raises(UnreadableInputError):
        read_lesion(bad, series.volume)


def test_seg_and_sr_round_trip(study: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    root, mask = study
    series = read_series(root / "CT")
    seg = build_seg(series.headers, mask, MaskSource.PROPAGATED, "GTV")
    seg_path = tmp_path / "seg.dcm"
    seg.save_as(seg_path, enforce_file_format=True)
    back = mask_from_seg(seg_path, series.volume)
    assert back.source is MaskSource.SEG
    assert np.array_equal(back.mask, mask)
    burden = measure_burden(mask, series.volume.geometry)
    sr = build_sr(series.headers, seg, burden)
    sr_path = tmp_path / "sr.dcm"
    sr.save_as(sr_path, enforce_file_format=True)
    ds = pydicom.dcmread(sr_path)
    assert ds.Modality == "SR"
    assert ds.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    text = str(ds)
    assert f"{round(burden.volume_ml, 3)}" in text
    assert "Long axis" in text and "Volume" in text


def test_refine_recovers_a_grown_lesion() -> None:
    hu, truth = phantom(semi_axes_mm=(9.0, 14.0, 12.0), spacing=SPACING)
    _, small = phantom(semi_axes_mm=(7.0, 11.0, 9.0), spacing=SPACING)
    from models.imaging import Geometry, Volume

    geometry = Geometry((0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1), SPACING, hu.shape)
    refined = refine_mask(Volume(hu, geometry), small, lesion_hu=40.0)
    dice = 2 * (refined & truth).sum() / (refined.sum() + truth.sum())
    assert dice > 0.95
    with pytest.raises(InsufficientDataError):
        refine_mask(Volume(hu, geometry), np.zeros_like(small), 40.0)
