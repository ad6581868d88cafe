"""Slide reading: formats, resolution, tissue mask, tiling, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clinic.slides import write_pyramid
from models.exceptions import (
    InsufficientDataError,
    LimitExceededError,
    UnreadableInputError,
    UnsuitableInputError,
)
from models.limits import ReadLimits
from models.pathology import TileSpec, magnification_to_mpp, read_tiles, tissue_mask
from models.pathology.slide import glass_colour, open_slide, tile_index
from tests.unit.pathology.scanner import empty_glass


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


# ----------------------------------------------------------------------------- empty glass


@pytest.mark.parametrize(
    ("level", "cast", "noise", "seed"),
    [
        (244.0, (-3.0, 0.0, 4.0), 2.5, 0),  # the slide of the report: RGB about 244
        (235.0, (4.0, 0.0, -5.0), 3.0, 1),  # dim, warm glass
        (250.0, (0.0, -2.0, 3.0), 1.5, 2),  # bright, cool glass
        (240.0, (6.0, 2.0, -8.0), 4.0, 3),  # a stronger yellow cast, noisier sensor
    ],
)
def test_empty_glass_is_insufficient_tissue(
    tmp_path: Path, level: float, cast: tuple[float, float, float], noise: float, seed: int
) -> None:
    path = tmp_path / "glass.tiff"
    write_pyramid(path, empty_glass(1024, level=level, cast=cast, noise=noise, seed=seed))
    with pytest.raises(InsufficientDataError, match="insufficient tissue: 0 tile"):
        read_tiles(path)


def test_tissue_on_scanner_glass_is_found_and_the_glass_is_not() -> None:
    glass = empty_glass(512, specks=30, seed=4)
    assert not tissue_mask(glass[::8, ::8]).any()
    assert glass_colour(glass)[2] > glass_colour(glass)[0]  # the cool cast is measured
    slide = glass.copy()
    slide[128:384, 96:352] = (226, 150, 205)  # a pale H&E section on that glass
    slide[200:260, 150:210] = (120, 70, 150)  # a nest of nuclei
    mask = tissue_mask(slide[::8, ::8])
    assert mask[18:46, 14:42].all()
    assert 30 * 30 <= mask.sum() <= 36 * 36  # the section, give or take a pixel at its border
    assert not mask[:, 48:].any() and not mask[:12].any()


def test_the_clinic_tissue_is_kept(inflamed_slide: Path) -> None:
    truth = pd.read_parquet(inflamed_slide.with_suffix(".tiles.parquet"))
    assert read_tiles(inflamed_slide).n_tiles >= (truth["tissue_fraction"] >= 0.7).sum()


# ----------------------------------------------------------------------------- limits


def _svs(path: Path, mpp: str, power: str = "20") -> Path:
    """An Aperio-style file whose description records ``MPP = mpp``."""
    import tifffile

    image = np.full((512, 512, 3), 200, np.uint8)
    head = "Aperio Image Library v12.0.0\r\n"
    with tifffile.TiffWriter(path) as tif:
        tif.write(
            image,
            tile=(256, 256),
            photometric="rgb",
            metadata=None,
            description=head + f"512x512 (256x256) RGB|AppMag = {power}|MPP = {mpp}",
        )
    return path


@pytest.mark.parametrize("mpp", ["inf", "0", "nan", "-0.5", "25", "0.01"])
def test_an_incredible_resolution_is_refused_naming_it(tmp_path: Path, mpp: str) -> None:
    path = _svs(tmp_path / "slide.svs", mpp)
    with pytest.raises(LimitExceededError, match=rf"{float(mpp):g} µm/px, outside .*0.1 to 10"):
        read_tiles(path)


def test_a_resolution_that_is_not_a_number_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UnreadableInputError, match="'abc', which is not a number"):
        read_tiles(_svs(tmp_path / "slide.svs", "abc"))


def test_an_infinite_objective_power_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LimitExceededError, match="objective power of infx"):
        read_tiles(_svs(tmp_path / "slide.svs", "", power="inf"))


def test_a_scan_too_coarse_for_the_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UnsuitableInputError, match="scanned at 2 µm/px"):
        read_tiles(_svs(tmp_path / "slide.svs", "2"))


def test_a_slide_past_the_pixel_cap_is_refused_before_reading(inflamed_slide: Path) -> None:
    limits = ReadLimits(slide_max_pixels=1024 * 1024 - 1)
    with pytest.raises(LimitExceededError, match="1,048,576 px, more than the limit slide_max_pix"):
        read_tiles(inflamed_slide, limits=limits)
    assert read_tiles(inflamed_slide, limits=ReadLimits(slide_max_pixels=1024 * 1024)).n_tiles


def test_the_mask_is_made_from_a_reduced_level(inflamed_slide: Path) -> None:
    # levels of 1024 and 512 px: the mask (64 px) is made from the 512-px level alone
    slide = open_slide(inflamed_slide)
    assert slide.level_dimensions == ((1024, 1024), (512, 512))
    slide.close()
    limits = ReadLimits(slide_max_read_pixels=512 * 512)
    ts = read_tiles(inflamed_slide, thumbnail_px=256, limits=limits)
    assert ts.mask.shape == (64, 64)
    assert ts.n_tiles == read_tiles(inflamed_slide).n_tiles


def test_a_slide_without_a_pyramid_is_refused_past_the_read_cap(tmp_path: Path) -> None:
    import tifffile

    from clinic.slides import render_slide
    from schemas.enums import ImmunePhenotype

    image, _, _ = render_slide(np.random.default_rng(3), ImmunePhenotype.DESERT, 25, 40, 1024)
    path = tmp_path / "flat.tiff"
    tifffile.imwrite(
        path,
        image,
        tile=(256, 256),
        photometric="rgb",
        resolution=(2e4, 2e4),
        resolutionunit="CENTIMETER",
        metadata=None,
    )
    with pytest.raises(LimitExceededError, match="slide_max_read_pixels of 500,000 px"):
        read_tiles(path, limits=ReadLimits(slide_max_read_pixels=500_000))
    assert read_tiles(path).n_tiles >= 4


def test_a_thumbnail_read_in_bands_matches_one_read(
    inflamed_slide: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import models.pathology.slide as slide_module

    whole = read_tiles(inflamed_slide, thumbnail_px=300)
    monkeypatch.setattr(slide_module, "_BAND_PX", 1024 * 7)  # bands of 7 rows
    banded = read_tiles(inflamed_slide, thumbnail_px=300)
    assert banded.thumbnail.shape == whole.thumbnail.shape
    assert np.abs(banded.thumbnail.astype(int) - whole.thumbnail.astype(int)).max() <= 1
    assert (banded.mask == whole.mask).all()


def test_tile_spec_refuses_a_nan_resolution() -> None:
    with pytest.raises(ValueError, match="invalid tiling"):
        TileSpec(mpp=float("nan"))


def test_tiles_read_are_capped_at_the_most_tissue_rich(inflamed_slide: Path) -> None:
    every = read_tiles(inflamed_slide)
    capped = read_tiles(inflamed_slide, limits=ReadLimits(slide_max_tiles=5))
    assert capped.n_tiles == 5 and capped.n_candidates == every.n_candidates
    assert capped.tissue_fraction.min() >= np.sort(every.tissue_fraction)[-5] - 1e-6
