"""H&E-like biopsy slides as pyramidal tiled TIFF, with tile-level ground truth.

Tissue, tumour nests and stroma come from thresholded smooth noise; nuclei are splatted as
Gaussian blobs of haematoxylin on an eosin background and turned into RGB by Beer-Lambert
colour deconvolution vectors (Ruifrok and Johnston). Lymphocytes (small, dark, round) are placed
by phenotype: inside the tumour nests when inflamed, held in the stroma near the nest border
when excluded, few anywhere when desert. Within that pattern their density is patchy: a smooth
log-normal hot-spot field (:func:`_hot_spots`) concentrates them in clusters, as real
infiltrates are, while the expected slide-level densities stay those asked for. Rendering runs
in horizontal strips so large slides stay within memory.

Ground truth per 256-px tile (:data:`TILE`): tissue fraction, tumour fraction, lymphocyte
count and density per mm2 of tissue, tumour nucleus count.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
from scipy import ndimage

from schemas.enums import ImmunePhenotype

TILE = 256
MPP = 0.5
"""Microns per pixel at full resolution (a 20x scan)."""
_LOW = 16  # low-resolution map factor
_H = np.array([0.65, 0.70, 0.29])
_E = np.array([0.07, 0.99, 0.11])
_TUMOUR_NUCLEI_PER_MM2 = 8000.0
_STROMA_NUCLEI_PER_MM2 = 700.0
_HOT_SIGMA_PX = 160.0  # spatial scale of lymphocyte hot spots (full-resolution px)
_HOT_GAIN = 1.1  # log-intensity spread of the hot-spot field (inflamed, excluded)


@dataclass(frozen=True)
class SlideTruth:
    """Slide-level ground truth, measured on what was drawn."""

    width: int
    height: int
    mpp: float
    tissue_mm2: float
    tumour_mm2: float
    lymphocytes: int
    til_intratumoral_per_mm2: float
    til_stromal_per_mm2: float


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    f = ndimage.gaussian_filter(rng.normal(0.0, 1.0, shape), sigma, mode="wrap")
    return (f - f.mean()) / (f.std() + 1e-9)


def _points(rng: np.random.Generator, weight: np.ndarray, per_px: float, size: int) -> np.ndarray:
    """Poisson points (row, col) at full resolution with intensity ``per_px * weight``."""
    expected = per_px * weight.sum() * _LOW * _LOW
    n = int(rng.poisson(max(expected, 0.0)))
    if n == 0:
        return np.zeros((0, 2))
    p = (weight / weight.sum()).ravel()
    cells = rng.choice(p.size, size=n, p=p)
    r, c = np.divmod(cells, weight.shape[1])
    pts = np.column_stack([r, c]) * _LOW + rng.uniform(0.0, _LOW, (n, 2))
    return pts[(pts[:, 0] < size) & (pts[:, 1] < size)]


def _hot_spots(rng: np.random.Generator, phenotype: ImmunePhenotype, n_low: int) -> np.ndarray:
    """Relative lymphocyte intensity (mean 1): smooth log-normal field with hot spots.

    Real infiltrates are patchy: lymphocytes gather in hot spots (and, in excluded tumours,
    in parts of the invasive margin) rather than spreading evenly. The field is drawn for
    every phenotype (so the random stream does not depend on it) and flattened for desert.
    """
    f = _smooth_field(rng, (n_low, n_low), _HOT_SIGMA_PX / _LOW)
    gain = 0.0 if phenotype is ImmunePhenotype.DESERT else _HOT_GAIN
    h = np.exp(gain * f)
    return h / h.mean()


def _upsample(low: np.ndarray, r0: int, r1: int, size: int) -> np.ndarray:
    rows = (np.arange(r0, r1) + 0.5) / _LOW - 0.5
    cols = (np.arange(size) + 0.5) / _LOW - 0.5
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    return ndimage.map_coordinates(low, [rr, cc], order=1, mode="nearest")


def _splat(pts: np.ndarray, r0: int, r1: int, size: int, sigma: float, halo: int) -> np.ndarray:
    img = np.zeros((r1 - r0 + 2 * halo, size), dtype=np.float32)
    sel = pts[(pts[:, 0] >= r0 - halo) & (pts[:, 0] < r1 + halo)]
    if len(sel):
        rr = np.clip((sel[:, 0] - r0 + halo).astype(int), 0, img.shape[0] - 1)
        cc = np.clip(sel[:, 1].astype(int), 0, size - 1)
        np.add.at(img, (rr, cc), 1.0)
    img = ndimage.gaussian_filter(img, sigma) * (2.0 * np.pi * sigma * sigma)
    return img[halo : halo + r1 - r0]


def render_slide(
    rng: np.random.Generator,
    phenotype: ImmunePhenotype,
    til_intratumoral_per_mm2: float,
    til_stromal_per_mm2: float,
    size: int = 2048,
    strip: int = 1024,
) -> tuple[np.ndarray, pd.DataFrame, SlideTruth]:
    """Render a ``size`` x ``size`` RGB slide; return (image, tile truth, slide truth)."""
    if size % TILE:
        raise ValueError(f"slide size must be a multiple of {TILE} px, got {size}")
    n_low = size // _LOW
    px_mm2 = (MPP / 1000.0) ** 2
    tissue_low = ndimage.gaussian_filter(
        (_smooth_field(rng, (n_low, n_low), n_low / 10) > -0.6).astype(float), 1.0
    )
    tumour_low = (_smooth_field(rng, (n_low, n_low), n_low / 24) > 0.1) * tissue_low
    tumour_low = ndimage.gaussian_filter(tumour_low.astype(float), 0.7)
    stroma_low = np.clip(tissue_low - tumour_low, 0.0, 1.0)
    dist_low = ndimage.distance_transform_edt(tumour_low < 0.5) * _LOW * MPP  # microns
    border = np.exp(-dist_low / 60.0) * stroma_low

    tumour_pts = _points(rng, tumour_low, _TUMOUR_NUCLEI_PER_MM2 * px_mm2, size)
    stroma_pts = _points(rng, stroma_low, _STROMA_NUCLEI_PER_MM2 * px_mm2, size)
    hot = _hot_spots(rng, phenotype, n_low)
    intra_weight = tumour_low * hot
    intra_scale = tumour_low.sum() / max(intra_weight.sum(), 1e-9)
    intra = _points(rng, intra_weight, til_intratumoral_per_mm2 * px_mm2 * intra_scale, size)
    stroma_weight = (border if phenotype is ImmunePhenotype.EXCLUDED else stroma_low) * hot
    scale = stroma_low.sum() / max(stroma_weight.sum(), 1e-9)
    stromal = _points(rng, stroma_weight, til_stromal_per_mm2 * px_mm2 * scale, size)
    lymph = np.vstack([intra, stromal])

    image = np.empty((size, size, 3), dtype=np.uint8)
    halo = 12
    for r0 in range(0, size, strip):
        r1 = min(size, r0 + strip)
        tissue = _upsample(tissue_low, r0, r1, size)
        tumour = _upsample(tumour_low, r0, r1, size)
        grain = rng.normal(0.0, 0.04, tissue.shape)
        hema = (
            0.6 * np.clip(_splat(tumour_pts, r0, r1, size, 3.6, halo), 0, 1.3)
            + 0.45 * np.clip(_splat(stroma_pts, r0, r1, size, 1.8, halo), 0, 1.2)
            + 1.5 * np.clip(_splat(lymph, r0, r1, size, 2.2, halo), 0, 1.4)
            + 0.06 * tumour
        ) * tissue
        eosin = tissue * (0.45 - 0.12 * tumour + grain)
        od = hema[..., None] * _H + np.clip(eosin, 0, None)[..., None] * _E + 0.02
        image[r0:r1] = np.clip(255.0 * np.exp(-od * 1.6), 0, 255).astype(np.uint8)

    tiles = _tile_truth(tissue_low, tumour_low, lymph, tumour_pts, size)
    tissue_mm2 = float(tissue_low.sum() * _LOW * _LOW * px_mm2)
    tumour_mm2 = float(tumour_low.sum() * _LOW * _LOW * px_mm2)
    stroma_mm2 = max(tissue_mm2 - tumour_mm2, 1e-9)
    truth = SlideTruth(
        width=size,
        height=size,
        mpp=MPP,
        tissue_mm2=tissue_mm2,
        tumour_mm2=tumour_mm2,
        lymphocytes=len(lymph),
        til_intratumoral_per_mm2=len(intra) / max(tumour_mm2, 1e-9),
        til_stromal_per_mm2=len(stromal) / stroma_mm2,
    )
    return image, tiles, truth


def _tile_truth(
    tissue_low: np.ndarray,
    tumour_low: np.ndarray,
    lymph: np.ndarray,
    tumour_pts: np.ndarray,
    size: int,
) -> pd.DataFrame:
    n = size // TILE
    f = TILE // _LOW
    tissue = tissue_low.reshape(n, f, n, f).mean(axis=(1, 3))
    tumour = tumour_low.reshape(n, f, n, f).mean(axis=(1, 3))

    def counts(pts: np.ndarray) -> np.ndarray:
        grid = np.zeros((n, n), dtype=np.int64)
        if len(pts):
            idx = np.clip((pts // TILE).astype(int), 0, n - 1)
            np.add.at(grid, (idx[:, 0], idx[:, 1]), 1)
        return grid

    lym = counts(lymph)
    tile_mm2 = (TILE * MPP / 1000.0) ** 2
    rows, cols = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    return pd.DataFrame(
        {
            "row": rows.ravel(),
            "col": cols.ravel(),
            "x_px": (cols * TILE).ravel(),
            "y_px": (rows * TILE).ravel(),
            "tissue_fraction": tissue.ravel(),
            "tumour_fraction": tumour.ravel(),
            "lymphocyte_count": lym.ravel(),
            "lymphocyte_density_per_mm2_tissue": (
                lym / np.maximum(tissue * tile_mm2, 1e-6) * (tissue > 0.05)
            ).ravel(),
            "tumour_nucleus_count": counts(tumour_pts).ravel(),
        }
    )


def write_pyramid(path: Path, image: np.ndarray, mpp: float = MPP, description: str = "") -> None:
    """Write a tiled, JPEG-compressed pyramidal TIFF (levels in SubIFDs) with its resolution."""
    levels = [image]
    while min(levels[-1].shape[:2]) > 2 * TILE:
        prev = levels[-1]
        h, w = prev.shape[0] // 2 * 2, prev.shape[1] // 2 * 2
        levels.append(
            prev[:h, :w].reshape(h // 2, 2, w // 2, 2, 3).mean(axis=(1, 3)).round().astype(np.uint8)
        )
    opts = {
        "tile": (TILE, TILE),
        "photometric": "rgb",
        "compression": "jpeg",
        "compressionargs": {"level": 85},
        "resolutionunit": "CENTIMETER",
        "metadata": None,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with tifffile.TiffWriter(path) as tif:
        res = 1e4 / mpp
        tif.write(
            levels[0],
            subifds=len(levels) - 1,
            resolution=(res, res),
            description=description,
            **opts,
        )
        for i, level in enumerate(levels[1:], start=1):
            r = res / 2**i
            tif.write(level, subfiletype=1, resolution=(r, r), **opts)


def write_biopsy_slide(
    folder: Path,
    rng: np.random.Generator,
    phenotype: ImmunePhenotype,
    til_intratumoral_per_mm2: float,
    til_stromal_per_mm2: float,
    size: int,
) -> tuple[Path, SlideTruth]:
    """Render a biopsy's slide into ``folder``: ``slide.tiff`` and its tile truth
    ``slide.tiles.parquet``; return the slide's path and truth."""
    image, tiles, truth = render_slide(
        rng, phenotype, til_intratumoral_per_mm2, til_stromal_per_mm2, size
    )
    path = folder / "slide.tiff"
    write_pyramid(path, image, description="irtmon virtual clinic H&E, synthetic")
    tiles.to_parquet(folder / "slide.tiles.parquet", index=False)
    return path, truth
