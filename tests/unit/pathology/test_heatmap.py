"""Attention heat maps."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from models.pathology import attention_grid, heatmap_png, overlay


def test_grid_places_tiles() -> None:
    grid = attention_grid(np.array([[0, 0], [512, 256]]), np.array([0.25, 0.75]), 256, (1024, 768))
    assert grid.shape == (3, 4)
    assert grid[0, 0] == 0.25 and grid[1, 2] == 0.75
    assert np.isnan(grid).sum() == 10


def test_overlay_and_png() -> None:
    thumb = np.full((60, 80, 3), 240, np.uint8)
    grid = np.full((3, 4), np.nan)
    grid[1, 1] = 1.0
    grid[2, 3] = 0.1
    img = overlay(thumb, grid)
    assert img.shape == thumb.shape
    assert (img[0, 0] == 240).all()  # no tile there: untouched
    assert not (img[30, 30] == 240).all()
    png = heatmap_png(np.zeros((2000, 1000, 3), np.uint8), grid, max_px=200)
    assert png[:4] == b"\x89PNG"
    assert Image.open(io.BytesIO(png)).size == (100, 200)
