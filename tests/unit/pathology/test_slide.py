"""Slide reading: formats, resolution, tissue mask, tiling, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.exceptions import InsufficientDataError, UnreadableInputError
from models.pathology import TileSpec, magnification_to_mpp, read_tiles, tissue_mask
from models.pathology.slide import tile_index


def test_reads_only_tissue_tiles(inflamed_slide: Path) -> None:
    ts = read_tiles(inflamed_slide)
    assert ts.tiles.dtype == np.uint8
    assert ts.tiles.shape[1:] == (256, 256, 3)
    assert ts.tile_size_level0 == 256
    assert ts.level == 0
    assert (ts.coords % 256 == 0).all()
    assert (ts.tissue_fraction >= 0.5).all()
    truth = pd.read_parquet(inflamed_slide.with_suffix(".tiles.parquet")).set_index(["row", "col"])
    kept = truth.loc[list(map(tuple, tile_index(ts)))]
    assert kept["tissue_fraction"].min() > 0.3
    dropped = truth.drop(index=kept.index)
    assert (dropped["tissue_fraction"] < 0.7).all()
    assert 0 < ts.tissue_mm2 < (1024 * 0.5e-3) ** 2 + 1e-9


def test_magnification_picks_the_pyramid_level(inflamed_slide: Path) -> None:
    assert magnification_to_mpp(20) == 0.5
    ts = read_tiles(inflamed_slide, TileSpec(mpp=magnification_to_mpp(10), tile_px=128))
    assert ts.level == 1
    assert ts.tile_size_level0 == 256
    assert ts.tiles.shape[1:] == (128, 128, 3)
    resized = read_tiles(inflamed_slide, TileSpec(mpp=0.75, tile_px=128))  # between levels
    assert resized.tiles.shape[1:] == (128, 128, 3)
    assert resized.tile_size_level0 == 192


def test_max_tiles_and_stain_normalisation(inflamed_slide: Path) -> None:
    ts = read_tiles(inflamed_slide, TileSpec(max_tiles=5, stain_normalise=True))
    assert ts.n_tiles == 5
    assert ts.tiles.dtype == np.uint8


def test_svs(svs_slide: Path) -> None:
    ts = read_tiles(svs_slide)
    assert ts.base_mpp == pytest.approx(0.5)
    assert ts.n_tiles >= 4


def test_blank_slide_is_insufficient(blank_slide: Path) -> None:
    with pytest.raises(InsufficientDataError, match="insufficient tissue"):
        read_tiles(blank_slide)


@pytest.mark.parametrize("fixture", ["corrupt_slide", "not_a_slide"])
def test_unreadable_slide_is_named(fixture: str, request: pytest.FixtureRequest) -> None:
    path = request.getfixturevalue(fixture)
    with pytest.raises(UnreadableInputError, match=path.name):
        read_tiles(path)


def test_missing_slide(tmp_path: Path) -> None:
    with pytest.raises(UnreadableInputError, match="does not exist"):
        read_tiles(tmp_path / "nope.svs")


def test_tissue_mask_of_glass_is_empty() -> None:
    assert not tissue_mask(np.full((64, 64, 3), 245, np.uint8)).any()
    img = np.full((64, 64, 3), 245, np.uint8)
    img[16:48, 16:48] = (170, 80, 160)
    mask = tissue_mask(img)
    assert mask[20:44, 20:44].all()
    assert not mask[:8].any()
