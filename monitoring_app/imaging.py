"""Pixels for the Images page: a CT slice with its lesion outlines, and slide views.

Studies are read by :func:`models.imaging.study_view.read_study` (the workers' readers); this
module only draws. Conventions read here:

* A biopsy's attention heat map is a PNG beside the slide: ``<slide stem>.attention.png``
  (``slide.tiff`` -> ``slide.attention.png``), the same size ratio as the slide; a score's
  ``inputs`` may also name one as ``attention:<path>``. Without it the slide thumbnail is shown.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

LESION_COLOURS = [(255, 80, 60), (60, 200, 255), (255, 210, 60), (160, 255, 120)]


def lesion_slice(labels: np.ndarray | None, n_slices: int, lesion: int = 1) -> int:
    """Slice with the largest cross-section of ``lesion`` (any lesion if absent; else middle)."""
    if labels is None:
        return n_slices // 2
    area = (labels == lesion).sum(axis=(1, 2))
    if area.max() == 0:
        area = (labels > 0).sum(axis=(1, 2))
    return int(area.argmax()) if area.max() > 0 else n_slices // 2


def render_slice(
    hu: np.ndarray,
    window: tuple[float, float],
    labels: np.ndarray | None = None,
    size: int = 448,
    fill: float = 0.25,
) -> np.ndarray:
    """Windowed slice as RGB uint8, lesion outlines drawn (and lightly filled), upscaled."""
    centre, width = window
    lo = centre - width / 2.0
    grey = np.clip((hu.astype(np.float32) - lo) / width, 0.0, 1.0) * 255.0
    rgb = np.repeat(grey[..., None], 3, axis=2)
    if labels is not None:
        for value in np.unique(labels):
            if value == 0:
                continue
            mask = labels == value
            colour = np.array(LESION_COLOURS[(int(value) - 1) % len(LESION_COLOURS)], float)
            rgb[mask] = (1 - fill) * rgb[mask] + fill * colour
            edge = mask & ~ndimage.binary_erosion(mask)
            rgb[edge] = colour
    image = Image.fromarray(rgb.astype(np.uint8))
    scale = size / max(hu.shape)
    if scale > 1:
        image = image.resize(
            (round(hu.shape[1] * scale), round(hu.shape[0] * scale)), Image.Resampling.NEAREST
        )
    return np.asarray(image)


def attention_png(slide: Path, inputs: list[str] | None = None) -> Path | None:
    """The attention heat map of a slide, by the conventions in the module docstring."""
    for item in inputs or []:
        if item.startswith("attention:"):
            p = Path(item.removeprefix("attention:"))
            if p.is_file():
                return p
    for p in (slide.with_suffix(".attention.png"), Path(f"{slide}.attention.png")):
        if p.is_file():
            return p
    return None


def slide_thumbnail(slide: Path, size: int = 768) -> np.ndarray:
    """A thumbnail of a whole-slide image (tiffslide)."""
    import tiffslide

    with tiffslide.TiffSlide(str(slide)) as ts:
        return np.asarray(ts.get_thumbnail((size, size)).convert("RGB"))


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))
