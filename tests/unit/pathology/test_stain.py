"""Macenko stain estimation and normalisation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.exceptions import InsufficientDataError
from models.pathology import MacenkoNormalizer, estimate_stain_vectors, read_tiles
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
