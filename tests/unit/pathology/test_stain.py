"""The H&E check (synthetic, clinic and real IHC tissue) and Macenko stain normalisation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.exceptions import InsufficientDataError
from models.pathology import (
    MacenkoNormalizer,
    StainOutcome,
    check_stain,
    estimate_stain_vectors,
    glass_colour,
    read_tiles,
)
from models.pathology.stain import HE_REFERENCE


def test_recovers_the_clinic_stains(inflamed_slide: Path) -> None:
    tiles = read_tiles(inflamed_slide).tiles
    stains, max_conc = estimate_stain_vectors(tiles)
    h_true = np.array([0.65, 0.70, 0.29]) / np.linalg.norm([0.65, 0.70, 0.29])
    e_true = np.array([0.07, 0.99, 0.11]) / np.linalg.norm([0.07, 0.99, 0.11])
    assert stains[:, 0] @ h_true > 0.95
    assert stains[:, 1] @ e_true > 0.9
    assert (max_conc > 0).all()


def test_normalise_to_own_appearance_is_near_identity(inflamed_slide: Path) -> None:
    tiles = read_tiles(inflamed_slide).tiles[:4]
    same = MacenkoNormalizer.from_reference_image(tiles).fit_transform(tiles)
    assert same.shape == tiles.shape and same.dtype == np.uint8
    assert np.abs(same.astype(int) - tiles.astype(int)).mean() < 6


def test_normalise_to_reference_moves_the_stains(inflamed_slide: Path) -> None:
    tiles = read_tiles(inflamed_slide).tiles[:4]
    out = MacenkoNormalizer().fit_transform(tiles)
    stains, _ = estimate_stain_vectors(out)
    ref = HE_REFERENCE / np.linalg.norm(HE_REFERENCE, axis=0)
    assert stains[:, 0] @ ref[:, 0] > 0.95


def test_errors() -> None:
    with pytest.raises(ValueError, match="before fit"):
        MacenkoNormalizer().transform(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(InsufficientDataError):
        MacenkoNormalizer().fit(np.full((32, 32, 3), 250, np.uint8))


# ----------------------------------------------------------------------------- the H&E check


def _stained(h: np.ndarray, e: np.ndarray, d: np.ndarray) -> np.ndarray:
    """RGB tiles from stain concentrations (Ruifrok-Johnston vectors, as rgb2hed reads them)."""
    from skimage.color import hed2rgb

    rgb = hed2rgb(np.stack([h, e, d], axis=-1))
    return (np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def _blobs(rng: np.random.Generator, shape: tuple[int, ...], level: float) -> np.ndarray:
    from scipy import ndimage

    field = ndimage.gaussian_filter(rng.normal(0, 1, shape), (0, 3, 3))
    return level * np.clip(field / field.std() + 0.5, 0, None)


def test_synthetic_he_passes_and_dab_is_refused() -> None:
    rng = np.random.default_rng(0)
    shape = (4, 64, 64)
    h, e, d = _blobs(rng, shape, 0.06), _blobs(rng, shape, 0.05), _blobs(rng, shape, 0.08)
    zero = np.zeros(shape)
    he = check_stain(_stained(h, e, zero))
    assert he.outcome is StainOutcome.HE and he.dab_fraction < 0.01
    ihc = check_stain(_stained(h, zero, d))
    assert ihc.outcome is StainOutcome.NOT_HE
    assert ihc.dab_fraction > 0.5 and "immunohistochemistry (DAB)" in ihc.reason
    haematoxylin_only = check_stain(_stained(h, zero, zero))
    assert haematoxylin_only.outcome is StainOutcome.NOT_HE
    assert "no eosin" in haematoxylin_only.reason


def test_the_clinic_slides_are_he(inflamed_slide: Path, svs_slide: Path) -> None:
    for path in (inflamed_slide, svs_slide):
        ts = read_tiles(path)
        check = check_stain(ts.tiles, glass=glass_colour(ts.thumbnail))
        assert check.outcome is StainOutcome.HE, check.reason
        assert check.eosin_fraction > 0.9


def test_real_ihc_tissue_is_found_and_not_taken_for_he(ihc_slide: Path) -> None:
    ts = read_tiles(ihc_slide)
    assert ts.n_tiles >= 8  # the tissue detector finds the tissue ...
    check = check_stain(ts.tiles, glass=glass_colour(ts.thumbnail))
    assert check.outcome is StainOutcome.NOT_HE  # ... and the stain check refuses it
    assert check.dab_fraction > 0.5 and check.eosin_fraction < 0.05


def test_an_overstained_he_slide_is_still_he(overstained_slide: Path) -> None:
    ts = read_tiles(overstained_slide)
    assert check_stain(ts.tiles, glass=glass_colour(ts.thumbnail)).outcome is StainOutcome.HE


def test_a_blank_sample_cannot_tell_its_stain() -> None:
    with pytest.raises(InsufficientDataError, match="insufficient tissue"):
        check_stain(np.full((64, 64, 3), 246, np.uint8))
