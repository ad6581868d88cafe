"""Whole-slide reading: open a pyramidal TIFF or SVS, find the tissue, cut it into tiles.

A slide is opened through tiffslide (pyramidal TIFF, Aperio SVS and the other formats it reads).
Tiles are read at a chosen resolution (microns per pixel, or an objective magnification with
the usual convention 20x = 0.5 µm/px) from the best pyramid level and resized when the level
does not match exactly. The tissue mask is computed on a low-resolution thumbnail from optical
density (Otsu with a floor), closed and hole-filled; tiles whose footprint holds less than
``min_tissue`` of tissue are rejected as background.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage.filters import threshold_otsu

from models.exceptions import InsufficientDataError, UnreadableInputError
from models.pathology.stain import MacenkoNormalizer

DEFAULT_MPP = 0.5
"""Default reading resolution: 0.5 µm/px, a 20x scan."""
DEFAULT_TILE_PX = 256
_MASK_PX_PER_TILE = 16
_OD_FLOOR = 0.12


def magnification_to_mpp(magnification: float) -> float:
    """Microns per pixel of an objective magnification (20x -> 0.5 µm/px, 40x -> 0.25)."""
    if magnification <= 0:
        raise ValueError(f"magnification must be positive, got {magnification}")
    return 10.0 / magnification


@dataclass(frozen=True)
class TileSpec:
    """How a slide is tiled.

    Parameters
    ----------
    mpp
        Resolution the tiles are read at, in microns per pixel.
    tile_px
        Tile side in pixels at that resolution.
    min_tissue
        Smallest tissue fraction of a tile's footprint for it to be kept.
    min_tiles
        Fewest tissue tiles a slide must have to be analysed at all.
    max_tiles
        At most this many tiles (the most tissue-rich, ties by position); None for all.
    stain_normalise
        Map the tiles onto the reference H&E appearance with Macenko normalisation, fitted on
        the slide's own tissue tiles.
    """

    mpp: float = DEFAULT_MPP
    tile_px: int = DEFAULT_TILE_PX
    min_tissue: float = 0.5
    min_tiles: int = 4
    max_tiles: int | None = None
    stain_normalise: bool = False

    def __post_init__(self) -> None:
        if self.mpp <= 0 or self.tile_px < 16:
            raise ValueError(f"invalid tiling: mpp {self.mpp}, tile_px {self.tile_px}")
        if not 0.0 <= self.min_tissue <= 1.0:
            raise ValueError(f"min_tissue must be in [0, 1], got {self.min_tissue}")


@dataclass(frozen=True)
class TileSet:
    """The tissue tiles of one slide.

    Attributes
    ----------
    path
        The slide file.
    tiles
        ``(n, tile_px, tile_px, 3)`` uint8 RGB at ``spec.mpp``.
    coords
        ``(n, 2)`` int ``(x, y)`` of each tile's top-left corner at level 0.
    tile_size_level0
        Side of a tile's footprint at level 0, in pixels.
    tissue_fraction
        ``(n,)`` tissue fraction of each tile's footprint (from the mask).
    spec
        The tiling.
    base_mpp
        Resolution of level 0.
    level
        Pyramid level the tiles were read from.
    dimensions
        ``(width, height)`` of level 0.
    thumbnail
        RGB thumbnail for display (heat maps), at most ``thumbnail_px`` on its long side.
    mask
        Boolean tissue mask on a low-resolution grid (16 pixels per tile side).
    mask_downsample
        Level-0 pixels per mask pixel.
    """

    path: Path
    tiles: np.ndarray
    coords: np.ndarray
    tile_size_level0: int
    tissue_fraction: np.ndarray
    spec: TileSpec
    base_mpp: float
    level: int
    dimensions: tuple[int, int]
    thumbnail: np.ndarray
    mask: np.ndarray
    mask_downsample: float
    n_candidates: int = field(default=0)

    @property
    def n_tiles(self) -> int:
        """Number of tissue tiles."""
        return int(self.tiles.shape[0])

    @property
    def tissue_mm2(self) -> float:
        """Tissue area from the mask, in mm²."""
        px_mm = self.mask_downsample * self.base_mpp / 1000.0
        return float(self.mask.sum() * px_mm * px_mm)


def open_slide(path: Path | str):
    """Open a whole-slide image with tiffslide.

    Raises
    ------
    UnreadableInputError
        The file is missing, not a TIFF/SVS, truncated or corrupt; the message names it.
    """
    import tiffslide

    path = Path(path)
    if not path.is_file():
        raise UnreadableInputError(f"slide {path} does not exist or is not a file")
    try:
        slide = tiffslide.TiffSlide(path)
        _ = slide.dimensions, slide.level_count, slide.level_downsamples
    except (OSError, ValueError, KeyError, IndexError, TypeError, RuntimeError) as err:
        raise UnreadableInputError(
            f"slide {path} cannot be read as a whole-slide image (pyramidal TIFF or SVS): {err}"
        ) from err
    return slide


def base_mpp(slide, path: Path | str = "") -> float:
    """Microns per pixel at level 0, from the slide's metadata.

    Falls back on the objective power (20x = 0.5 µm/px) when no resolution is recorded.
    """
    props = slide.properties
    for key in ("tiffslide.mpp-x", "openslide.mpp-x"):
        value = props.get(key)
        if value not in (None, "") and float(value) > 0:
            return float(value)
    power = props.get("tiffslide.objective-power") or props.get("openslide.objective-power")
    if power not in (None, "") and float(power) > 0:
        return magnification_to_mpp(float(power))
    raise UnreadableInputError(
        f"slide {path} records neither its resolution (mpp) nor its objective power; "
        "re-export it with its resolution"
    )


def tissue_mask(rgb: np.ndarray, *, min_object_px: int = 16, max_hole_px: int = 64) -> np.ndarray:
    """Boolean tissue mask of a (thumbnail) RGB image from optical density.

    The summed optical density is smoothed, thresholded by Otsu (never below a floor, so that a
    blank slide stays blank), closed, cleared of holes smaller than ``max_hole_px`` pixels (large
    holes such as lumens or fat stay background) and of specks smaller than ``min_object_px``.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] < 3:
        raise ValueError(f"tissue_mask needs an RGB image, got shape {rgb.shape}")
    od = -np.log((rgb[..., :3].astype(np.float32) + 1.0) / 256.0).sum(axis=2)
    od = ndimage.gaussian_filter(od, 1.0)
    threshold = _OD_FLOOR
    if float(od.max()) > _OD_FLOOR and float(od.std()) > 1e-3:
        threshold = max(_OD_FLOOR, float(threshold_otsu(od)) * 0.5)
    mask = od > threshold
    mask = ndimage.binary_closing(mask, iterations=2, border_value=0)
    holes, n_holes = ndimage.label(~mask)
    if n_holes:
        hole_sizes = ndimage.sum(~mask, holes, index=np.arange(1, n_holes + 1))
        small = np.concatenate([[False], hole_sizes < max_hole_px])
        mask = mask | small[holes]
    labels, n = ndimage.label(mask)
    if n:
        sizes = ndimage.sum(mask, labels, index=np.arange(1, n + 1))
        keep = np.concatenate([[False], sizes >= min_object_px])
        mask = keep[labels]
    return mask


def _thumbnail(slide, downsample: float) -> np.ndarray:
    w, h = slide.dimensions
    size = (max(1, round(w / downsample)), max(1, round(h / downsample)))
    level = slide.get_best_level_for_downsample(downsample)
    lw, lh = slide.level_dimensions[level]
    region = slide.read_region((0, 0), level, (lw, lh), as_array=True)[..., :3]
    img = Image.fromarray(np.ascontiguousarray(region))
    if img.size != size:
        img = img.resize(size, Image.Resampling.BOX)
    return np.asarray(img)


def read_tiles(
    path: Path | str, spec: TileSpec | None = None, *, thumbnail_px: int = 1024
) -> TileSet:
    """Read the tissue tiles of a slide.

    Parameters
    ----------
    path
        A pyramidal TIFF or SVS file.
    spec
        The tiling (resolution, tile size, background rejection); default :class:`TileSpec`.
    thumbnail_px
        Long side of the display thumbnail kept in the result.

    Returns
    -------
    TileSet
        Tiles, their level-0 coordinates and tissue fractions, the thumbnail and the mask.

    Raises
    ------
    UnreadableInputError
        The file cannot be read as a slide, or a tile cannot be decoded.
    InsufficientDataError
        Fewer than ``spec.min_tiles`` tiles hold enough tissue.
    """
    spec = spec or TileSpec()
    path = Path(path)
    slide = open_slide(path)
    try:
        mpp0 = base_mpp(slide, path)
        factor = spec.mpp / mpp0
        tile0 = max(1, round(spec.tile_px * factor))  # footprint at level 0
        w, h = slide.dimensions
        nx, ny = w // tile0, h // tile0
        if nx == 0 or ny == 0:
            raise InsufficientDataError(
                f"slide {path} ({w} x {h} px) is smaller than one {spec.tile_px}-px tile at "
                f"{spec.mpp} µm/px: insufficient tissue"
            )
        mask_ds = max(1.0, tile0 / _MASK_PX_PER_TILE)
        try:
            thumb = _thumbnail(slide, mask_ds)
        except (OSError, ValueError, RuntimeError) as err:
            raise UnreadableInputError(f"slide {path}: thumbnail cannot be decoded: {err}") from err
        mask = tissue_mask(thumb)
        mask_ds = w / thumb.shape[1]
        display_ds = max(w, h) / thumbnail_px
        if display_ds > mask_ds * 1.01:
            display = np.asarray(
                Image.fromarray(thumb).resize(
                    (max(1, round(w / display_ds)), max(1, round(h / display_ds))),
                    Image.Resampling.BOX,
                )
            )
        else:
            try:
                display = _thumbnail(slide, max(1.0, display_ds))
            except (OSError, ValueError, RuntimeError) as err:
                raise UnreadableInputError(
                    f"slide {path}: thumbnail cannot be decoded: {err}"
                ) from err
        # tissue fraction per tile from the mask
        step = tile0 / mask_ds
        fractions = np.zeros((ny, nx), dtype=np.float32)
        for j in range(ny):
            r0, r1 = round(j * step), max(round((j + 1) * step), round(j * step) + 1)
            for i in range(nx):
                c0, c1 = round(i * step), max(round((i + 1) * step), round(i * step) + 1)
                fractions[j, i] = mask[r0:r1, c0:c1].mean() if r1 > r0 and c1 > c0 else 0.0
        jj, ii = np.nonzero(fractions >= spec.min_tissue)
        order = np.lexsort((ii, jj, -fractions[jj, ii]))
        if spec.max_tiles is not None:
            order = order[: spec.max_tiles]
        order = order[np.lexsort((ii[order], jj[order]))]  # back to raster order
        jj, ii = jj[order], ii[order]
        n_candidates = int((fractions > 0).sum())
        if len(jj) < spec.min_tiles:
            raise InsufficientDataError(
                f"slide {path}: insufficient tissue: {len(jj)} tile(s) hold at least "
                f"{spec.min_tissue:.0%} tissue, {spec.min_tiles} are needed"
            )
        level = slide.get_best_level_for_downsample(factor)
        ds = float(slide.level_downsamples[level])
        size_l = max(1, round(tile0 / ds))
        tiles = np.empty((len(jj), spec.tile_px, spec.tile_px, 3), dtype=np.uint8)
        for k, (j, i) in enumerate(zip(jj, ii, strict=True)):
            try:
                region = slide.read_region(
                    (int(i * tile0), int(j * tile0)), level, (size_l, size_l), as_array=True
                )[..., :3]
            except (OSError, ValueError, RuntimeError) as err:
                raise UnreadableInputError(
                    f"slide {path}: tile at ({i * tile0}, {j * tile0}) cannot be decoded: {err}"
                ) from err
            if size_l != spec.tile_px:
                region = np.asarray(
                    Image.fromarray(np.ascontiguousarray(region)).resize(
                        (spec.tile_px, spec.tile_px), Image.Resampling.BILINEAR
                    )
                )
            tiles[k] = region
    finally:
        slide.close()
    if spec.stain_normalise:
        tiles = MacenkoNormalizer().fit_transform(tiles)
    return TileSet(
        path=path,
        tiles=tiles,
        coords=np.column_stack([ii * tile0, jj * tile0]).astype(np.int64),
        tile_size_level0=int(tile0),
        tissue_fraction=fractions[jj, ii].astype(np.float32),
        spec=spec,
        base_mpp=float(mpp0),
        level=int(level),
        dimensions=(int(w), int(h)),
        thumbnail=display,
        mask=mask,
        mask_downsample=float(mask_ds),
        n_candidates=n_candidates,
    )


def tile_grid_shape(tileset: TileSet) -> tuple[int, int]:
    """``(rows, cols)`` of the full tile grid of the slide."""
    w, h = tileset.dimensions
    return h // tileset.tile_size_level0, w // tileset.tile_size_level0


def tile_index(tileset: TileSet) -> np.ndarray:
    """``(n, 2)`` grid ``(row, col)`` of each tile, matching the clinic's tile truth."""
    t = tileset.tile_size_level0
    return np.column_stack([tileset.coords[:, 1] // t, tileset.coords[:, 0] // t])


def mpp_for(magnification: float | None, mpp: float | None) -> float:
    """Resolve a resolution given as magnification or mpp (mpp wins; default 0.5 µm/px)."""
    if mpp is not None:
        return float(mpp)
    if magnification is not None:
        return magnification_to_mpp(magnification)
    return DEFAULT_MPP


__all__ = [
    "DEFAULT_MPP",
    "DEFAULT_TILE_PX",
    "TileSet",
    "TileSpec",
    "base_mpp",
    "magnification_to_mpp",
    "mpp_for",
    "open_slide",
    "read_tiles",
    "tile_grid_shape",
    "tile_index",
    "tissue_mask",
]
