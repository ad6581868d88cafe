"""Attention heat maps over the slide thumbnail, as PNG for the dashboard.

Attention weights sit on the tile grid; the grid is scaled to the thumbnail (bilinear
between tile centres), mapped through a perceptually ordered colour ramp (viridis anchors)
and blended over the thumbnail where there are tiles. Pure numpy + Pillow, no matplotlib, so
a worker process pays nothing extra.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

_VIRIDIS = np.array(
    [
        [68, 1, 84],
        [59, 82, 139],
        [33, 145, 140],
        [94, 201, 98],
        [253, 231, 37],
    ],
    dtype=np.float64,
)


def attention_grid(
    coords: np.ndarray,
    attention: np.ndarray,
    tile_size_level0: int,
    dimensions: tuple[int, int],
) -> np.ndarray:
    """Attention on the slide's tile grid, ``(rows, cols)``, NaN where no tile was used.

    Parameters
    ----------
    coords
        ``(n, 2)`` level-0 ``(x, y)`` of each tile.
    attention
        ``(n,)`` attention weights.
    tile_size_level0
        Tile footprint at level 0, in pixels.
    dimensions
        Level-0 ``(width, height)``.
    """
    w, h = dimensions
    grid = np.full((max(1, h // tile_size_level0), max(1, w // tile_size_level0)), np.nan)
    rows = np.asarray(coords)[:, 1] // tile_size_level0
    cols = np.asarray(coords)[:, 0] // tile_size_level0
    grid[rows, cols] = np.asarray(attention, dtype=np.float64)
    return grid


def colourise(values: np.ndarray) -> np.ndarray:
    """Values in ``[0, 1]`` -> RGB uint8 on the viridis ramp."""
    v = np.clip(np.nan_to_num(values, nan=0.0), 0.0, 1.0) * (len(_VIRIDIS) - 1)
    lo = np.floor(v).astype(int).clip(0, len(_VIRIDIS) - 2)
    frac = (v - lo)[..., None]
    return (_VIRIDIS[lo] * (1 - frac) + _VIRIDIS[lo + 1] * frac).round().astype(np.uint8)


def overlay(thumbnail: np.ndarray, grid: np.ndarray, *, alpha: float = 0.55) -> np.ndarray:
    """Blend the attention grid over a thumbnail.

    Attention is scaled to ``[0, 1]`` by its maximum, square-rooted for visibility, coloured on
    viridis and blended with an opacity that grows with it (up to ``alpha``), so the histology
    stays visible under low attention. Tiles that were not used are left as they are.
    """
    thumb = np.asarray(thumbnail)[..., :3]
    th, tw = thumb.shape[:2]
    valid = np.isfinite(grid)
    scaled = np.where(valid, grid, 0.0).astype(np.float32)
    top = float(scaled.max()) if valid.any() else 0.0
    scaled = scaled / top if top > 0 else scaled
    up = np.asarray(Image.fromarray(scaled, mode="F").resize((tw, th), Image.Resampling.BILINEAR))
    up_valid = (
        np.asarray(
            Image.fromarray(valid.astype(np.uint8) * 255).resize((tw, th), Image.Resampling.NEAREST)
        )
        > 0
    )
    up = np.sqrt(np.clip(up, 0.0, 1.0))  # lift the low end so secondary foci show
    colour = colourise(up).astype(np.float32)
    a = (alpha * (0.2 + 0.8 * up) * up_valid)[..., None].astype(np.float32)
    return (thumb * (1 - a) + colour * a).round().astype(np.uint8)


def to_png(image: np.ndarray) -> bytes:
    """RGB array -> PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


def heatmap_png(
    thumbnail: np.ndarray, grid: np.ndarray, *, max_px: int = 768, alpha: float = 0.55
) -> bytes:
    """PNG of the attention heat map over the thumbnail, at most ``max_px`` on its long side."""
    thumb = np.asarray(thumbnail)[..., :3]
    scale = max_px / max(thumb.shape[:2])
    if scale < 1:
        size = (max(1, round(thumb.shape[1] * scale)), max(1, round(thumb.shape[0] * scale)))
        thumb = np.asarray(Image.fromarray(thumb).resize(size, Image.Resampling.BOX))
    return to_png(overlay(thumb, grid, alpha=alpha))


def write_heatmap(path: Path, png: bytes) -> Path:
    """Write PNG bytes to ``path`` (parents created), atomically: a failed write (a full disk)
    leaves neither a truncated file at ``path`` nor a temporary one beside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_bytes(png)
        partial.replace(path)
    except OSError as err:  # name the file: a write error alone does not say where
        partial.unlink(missing_ok=True)
        raise OSError(err.errno, err.strerror, str(path)) from err
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path
