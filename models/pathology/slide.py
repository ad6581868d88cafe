"""Whole-slide reading: open a pyramidal TIFF or SVS, find the tissue, cut it into tiles.

A slide is opened through tiffslide (pyramidal TIFF, Aperio SVS and the other formats it reads).
Tiles are read at a chosen resolution (microns per pixel, or an objective magnification with
the usual convention 20x = 0.5 µm/px) from the best pyramid level and resized when the level
does not match exactly. Tiles whose footprint holds less than ``min_tissue`` of tissue are
rejected as background.

The tissue mask (:func:`tissue_mask`) is computed on a low-resolution thumbnail and holds on a
scanner's empty glass, which is not white: uniform RGB about 235 to 250 with sensor noise, a
slight colour cast, dust specks and the thin grey lines of a coverslip or label edge. The glass
colour is estimated from the brightest pixels and divided out (white balance); a pixel is tissue
when, relative to that glass, it is both coloured (HSV saturation above a floor, as CLAM's
segmentation thresholds saturation) and absorbing (optical density of its strongest channel
above a floor, raised by Otsu's threshold on bimodal images, as HistomicsTK and histolab
threshold the image). Grey dust and edges fail the saturation test; noise on glass fails both;
thin lines and specks are removed by a morphological opening and a minimum object size. A slide
without enough tissue tiles is refused with :class:`~models.exceptions.InsufficientDataError`
("insufficient tissue").

Reading is bounded (:class:`~models.limits.ReadLimits`): a slide whose level 0 is larger than
``slide_max_pixels`` or whose resolution is outside ``slide_min_mpp`` to ``slide_max_mpp`` (an
infinite, zero, negative or NaN mpp included) is refused with
:class:`~models.exceptions.LimitExceededError` before any pixel is decoded; the thumbnail is
made from the smallest pyramid level at or above its size, read in bands, and a slide whose
level is larger than ``slide_max_read_pixels`` (no usable pyramid) is refused. At most
``slide_max_tiles`` tiles are read (the most tissue-rich, as ``TileSpec.max_tiles`` picks them),
so a large resection cannot fill the memory; ``TileSet.n_candidates`` keeps the count of tiles
with tissue.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage.filters import threshold_otsu

from models.exceptions import (
    InsufficientDataError,
    LimitExceededError,
    UnreadableInputError,
    UnsuitableInputError,
)
from models.limits import DEFAULT_LIMITS, ReadLimits
from models.pathology.stain import MacenkoNormalizer

DEFAULT_MPP = 0.5
"""Default reading resolution: 0.5 µm/px, a 20x scan."""
DEFAULT_TILE_PX = 256
_MASK_PX_PER_TILE = 16
_MAX_MASK_PX = 1 << 22
"""Most pixels of the tissue-mask thumbnail (2048 x 2048); larger slides get fewer mask pixels
per tile (at least about 2.5 per tile side within ``slide_max_pixels``)."""
_BAND_PX = 1 << 24
"""Pixels of one band read at a time to make a thumbnail (16 megapixels, 64 MiB as RGBA)."""
OD_FLOOR = 0.10
"""Least optical density (natural log) of a tissue pixel's strongest channel, relative to the
glass: about 10 per cent of the light absorbed. Balanced glass stays below 0.03."""
SATURATION_FLOOR = 0.07
"""Least HSV saturation of a tissue pixel after white balance. Stained tissue (eosin-pink stroma
to haematoxylin-purple nuclei) lies far above it (pale stroma about 0.15, the virtual clinic's
tissue 0.3 to 0.5); balanced glass, dust and coverslip edges are grey (below 0.04)."""
_GLASS_MIN = 200.0
"""Darkest channel of a credible glass colour (scanners record glass at RGB 235 to 250)."""
_GLASS_MAX_CAST = 0.12
"""Largest colour cast of glass, as saturation; a brightest-pixel estimate more coloured than
this is pale tissue (no glass in view), and the image is left unbalanced."""


def magnification_to_mpp(magnification: float) -> float:
    """Microns per pixel of an objective magnification (20x -> 0.5 µm/px, 40x -> 0.25)."""
    if not (math.isfinite(magnification) and magnification > 0):
        raise ValueError(f"magnification must be positive and finite, got {magnification}")
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
        At most this many tiles (the most tissue-rich, ties by position); None for all (within
        the reading limit ``ReadLimits.slide_max_tiles``).
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
        if not (math.isfinite(self.mpp) and self.mpp > 0) or self.tile_px < 16:
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


def _number(value: object, key: str, path: Path | str) -> float | None:
    """A metadata value as a float; None when absent.

    Raises
    ------
    UnreadableInputError
        The value is present but not a number.
    """
    if value is None or value == "":
        return None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise UnreadableInputError(
            f"slide {path} records {key} = {value!r}, which is not a number; re-export it with "
            "its resolution"
        ) from None


def base_mpp(slide, path: Path | str = "", *, limits: ReadLimits | None = None) -> float:
    """Microns per pixel at level 0, from the slide's metadata.

    Falls back on the objective power (20x = 0.5 µm/px) when no resolution is recorded.

    Raises
    ------
    LimitExceededError
        The recorded resolution is not finite or outside ``limits.slide_min_mpp`` to
        ``limits.slide_max_mpp`` (an mpp of infinity, 0, a negative value or NaN); the message
        names the value and the range.
    UnreadableInputError
        Neither a resolution nor an objective power is recorded.
    """
    limits = limits or DEFAULT_LIMITS
    props = slide.properties
    found: tuple[str, float] | None = None
    for key in ("tiffslide.mpp-x", "openslide.mpp-x"):
        value = _number(props.get(key), key, path)
        if value is not None:
            found = (f"resolution ({key}) of {value:g} µm/px", value)
            break
    if found is None:
        for key in ("tiffslide.objective-power", "openslide.objective-power"):
            power = _number(props.get(key), key, path)
            if power is not None:
                mpp = 10.0 / power if math.isfinite(power) and power > 0 else math.nan
                found = (f"objective power of {power:g}x ({mpp:g} µm/px)", mpp)
                break
    if found is None:
        raise UnreadableInputError(
            f"slide {path} records neither its resolution (mpp) nor its objective power; "
            "re-export it with its resolution"
        )
    what, mpp = found
    if not (math.isfinite(mpp) and limits.slide_min_mpp <= mpp <= limits.slide_max_mpp):
        raise LimitExceededError(
            f"slide {path} records a {what}, outside the credible range "
            f"{limits.slide_min_mpp:g} to {limits.slide_max_mpp:g} µm/px (limits slide_min_mpp, "
            "slide_max_mpp); re-export it with its true resolution"
        )
    return float(mpp)


def glass_colour(rgb: np.ndarray) -> np.ndarray:
    """The empty glass's RGB colour in an image, or white when no glass is in view.

    The per-channel median of the brightest 5 per cent of pixels, accepted as glass only when it
    is bright (every channel at least 200) and nearly grey (a cast below 12 per cent saturation);
    otherwise the brightest pixels are pale tissue and ``(255, 255, 255)`` is returned.
    """
    flat = np.asarray(rgb)[..., :3].reshape(-1, 3).astype(np.float32)
    if len(flat) == 0:
        return np.full(3, 255.0, np.float32)
    brightness = flat.sum(axis=1)
    glass = np.median(flat[brightness >= np.percentile(brightness, 95)], axis=0)
    cast = float(glass.max() - glass.min()) / max(float(glass.max()), 1.0)
    if float(glass.min()) < _GLASS_MIN or cast > _GLASS_MAX_CAST:
        return np.full(3, 255.0, np.float32)
    return glass.astype(np.float32)


def tissue_mask(rgb: np.ndarray, *, min_object_px: int = 16, max_hole_px: int = 64) -> np.ndarray:
    """Boolean tissue mask of a (thumbnail) RGB image, robust to a scanner's empty glass.

    The image is white-balanced against its glass colour (:func:`glass_colour`). A pixel is
    tissue when its smoothed saturation exceeds :data:`SATURATION_FLOOR` and its smoothed
    optical density (strongest channel, relative to the glass) exceeds :data:`OD_FLOOR`, or half
    the Otsu threshold of that density when that is higher. The mask is then opened (thin lines
    and specks go), closed, cleared of holes smaller than ``max_hole_px`` pixels (large holes
    such as lumens or fat stay background) and of objects smaller than ``min_object_px``.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] < 3:
        raise ValueError(f"tissue_mask needs an RGB image, got shape {rgb.shape}")
    glass = glass_colour(rgb)
    balanced = np.clip(rgb[..., :3].astype(np.float32) * (255.0 / glass), 0.0, 255.0)
    od = (-np.log((balanced + 1.0) / 256.0)).max(axis=2)
    top = balanced.max(axis=2)
    saturation = (top - balanced.min(axis=2)) / np.maximum(top, 1.0)
    od = ndimage.gaussian_filter(od, 1.0)
    saturation = ndimage.gaussian_filter(saturation, 1.0)
    threshold = OD_FLOOR
    if float(od.max()) > OD_FLOOR and float(od.std()) > 1e-3:
        threshold = max(OD_FLOOR, float(threshold_otsu(od)) * 0.5)
    mask = (od > threshold) & (saturation > SATURATION_FLOOR)
    mask = ndimage.binary_opening(mask, iterations=1)
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


def _thumbnail(
    slide, downsample: float, *, path: Path | str = "", limits: ReadLimits | None = None
) -> np.ndarray:
    """The slide at ``downsample`` (level-0 pixels per thumbnail pixel), RGB.

    Made from the smallest pyramid level at or above the thumbnail's size, read in horizontal
    bands of at most :data:`_BAND_PX` pixels, each reduced by box filtering, so memory stays
    bounded whatever the level's size.

    Raises
    ------
    LimitExceededError
        That level holds more than ``limits.slide_max_read_pixels`` pixels (a slide with no
        usable pyramid).
    """
    limits = limits or DEFAULT_LIMITS
    w, h = slide.dimensions
    size = (max(1, round(w / downsample)), max(1, round(h / downsample)))
    level = slide.get_best_level_for_downsample(downsample)
    lw, lh = slide.level_dimensions[level]
    if lw * lh > limits.slide_max_read_pixels:
        raise LimitExceededError(
            f"slide {path}: a {size[0]} x {size[1]} px thumbnail must be made from pyramid level "
            f"{level} of {lw} x {lh} px = {lw * lh:,} px, more than the limit "
            f"slide_max_read_pixels of {limits.slide_max_read_pixels:,} px; re-export the slide "
            "as a pyramid (tiled, with reduced levels)"
        )
    if (lw, lh) == size:
        return np.ascontiguousarray(
            slide.read_region((0, 0), level, (lw, lh), as_array=True)[..., :3]
        )
    ds = float(slide.level_downsamples[level])
    scale = lh / size[1]  # level rows per thumbnail row
    out_rows = max(1, int(_BAND_PX // max(lw, 1) / max(scale, 1.0)))
    bands = []
    for o0 in range(0, size[1], out_rows):
        o1 = min(size[1], o0 + out_rows)
        y0, y1 = math.floor(o0 * scale), min(lh, math.ceil(o1 * scale))
        region = slide.read_region(
            (0, round(y0 * ds)), level, (lw, max(1, y1 - y0)), as_array=True
        )[..., :3]
        img = Image.fromarray(np.ascontiguousarray(region))
        box = (0.0, o0 * scale - y0, float(lw), min(o1 * scale, lh) - y0)
        bands.append(np.asarray(img.resize((size[0], o1 - o0), Image.Resampling.BOX, box=box)))
    return np.concatenate(bands, axis=0)


def _tile_fractions(mask: np.ndarray, step: float, ny: int, nx: int) -> np.ndarray:
    """Tissue fraction of each tile's footprint on the mask (``step`` mask pixels per tile)."""

    def edges(n: int, limit: int) -> tuple[np.ndarray, np.ndarray]:
        lo = np.array([round(k * step) for k in range(n)], dtype=np.int64)
        hi = np.array([round((k + 1) * step) for k in range(n)], dtype=np.int64)
        hi = np.maximum(hi, lo + 1)
        return np.minimum(lo, limit), np.minimum(hi, limit)

    r0, r1 = edges(ny, mask.shape[0])
    c0, c1 = edges(nx, mask.shape[1])
    integral = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), dtype=np.int64)
    integral[1:, 1:] = mask.astype(np.int64).cumsum(axis=0).cumsum(axis=1)
    total = (
        integral[np.ix_(r1, c1)]
        - integral[np.ix_(r0, c1)]
        - integral[np.ix_(r1, c0)]
        + integral[np.ix_(r0, c0)]
    )
    area = np.outer(r1 - r0, c1 - c0)
    return np.where(area > 0, total / np.maximum(area, 1), 0.0).astype(np.float32)


def read_tiles(
    path: Path | str,
    spec: TileSpec | None = None,
    *,
    thumbnail_px: int = 1024,
    limits: ReadLimits | None = None,
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
    limits
        Reading limits (slide pixel count, resolution range, thumbnail source size); default
        :class:`~models.limits.ReadLimits`.

    Returns
    -------
    TileSet
        Tiles, their level-0 coordinates and tissue fractions, the thumbnail and the mask.

    Raises
    ------
    UnreadableInputError
        The file cannot be read as a slide, or a tile cannot be decoded.
    LimitExceededError
        Level 0 holds more than ``limits.slide_max_pixels`` pixels, the recorded resolution is
        outside the credible range, or no pyramid level is small enough for the thumbnail.
    UnsuitableInputError
        The slide was scanned more than twice as coarsely as the tiles are read.
    InsufficientDataError
        Fewer than ``spec.min_tiles`` tiles hold enough tissue ("insufficient tissue").
    """
    spec = spec or TileSpec()
    limits = limits or DEFAULT_LIMITS
    path = Path(path)
    slide = open_slide(path)
    try:
        w, h = slide.dimensions
        if w * h > limits.slide_max_pixels:
            raise LimitExceededError(
                f"slide {path}: level 0 is {w} x {h} px = {w * h:,} px, more than the limit "
                f"slide_max_pixels of {limits.slide_max_pixels:,} px"
            )
        mpp0 = base_mpp(slide, path, limits=limits)
        factor = spec.mpp / mpp0
        if factor < 0.5:
            raise UnsuitableInputError(
                f"slide {path} was scanned at {mpp0:g} µm/px; the model reads tiles at "
                f"{spec.mpp:g} µm/px, and a scan at least {2 * spec.mpp:g} µm/px fine is needed"
            )
        tile0 = max(1, round(spec.tile_px * factor))  # footprint at level 0
        nx, ny = w // tile0, h // tile0
        if nx == 0 or ny == 0:
            raise InsufficientDataError(
                f"slide {path} ({w} x {h} px) is smaller than one {spec.tile_px}-px tile at "
                f"{spec.mpp} µm/px: insufficient tissue"
            )
        mask_ds = max(1.0, tile0 / _MASK_PX_PER_TILE, math.sqrt(w * h / _MAX_MASK_PX))
        try:
            thumb = _thumbnail(slide, mask_ds, path=path, limits=limits)
        except (OSError, ValueError, RuntimeError) as err:
            if isinstance(err, LimitExceededError):
                raise
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
                display = _thumbnail(slide, max(1.0, display_ds), path=path, limits=limits)
            except (OSError, ValueError, RuntimeError) as err:
                if isinstance(err, LimitExceededError):
                    raise
                raise UnreadableInputError(
                    f"slide {path}: thumbnail cannot be decoded: {err}"
                ) from err
        fractions = _tile_fractions(mask, tile0 / mask_ds, ny, nx)
        jj, ii = np.nonzero(fractions >= spec.min_tissue)
        order = np.lexsort((ii, jj, -fractions[jj, ii]))
        cap = limits.slide_max_tiles
        if spec.max_tiles is not None:
            cap = min(cap, spec.max_tiles)
        order = order[:cap]
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
    "OD_FLOOR",
    "SATURATION_FLOOR",
    "TileSet",
    "TileSpec",
    "base_mpp",
    "glass_colour",
    "magnification_to_mpp",
    "mpp_for",
    "open_slide",
    "read_tiles",
    "tile_grid_shape",
    "tile_index",
    "tissue_mask",
]
