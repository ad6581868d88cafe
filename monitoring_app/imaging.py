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
from PIL import Image, ImageDraw, ImageFont
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


IN_FIELD_RGB = [(255, 120, 40), (255, 70, 70), (255, 200, 60), (230, 140, 90)]
"""Outlines of lesions in the radiotherapy field (warm), as on the timeline."""
OUT_FIELD_RGB = [(60, 170, 255), (90, 230, 140), (190, 140, 255), (60, 220, 230), (130, 150, 255)]
"""Outlines of lesions outside the field (cool)."""


def lesion_colours(in_field: list[bool | None]) -> list[tuple[int, int, int]]:
    """One colour per lesion: warm for lesions in the radiotherapy field, cool otherwise."""
    warm = cool = 0
    out = []
    for flag in in_field:
        if flag:
            out.append(IN_FIELD_RGB[warm % len(IN_FIELD_RGB)])
            warm += 1
        else:
            out.append(OUT_FIELD_RGB[cool % len(OUT_FIELD_RGB)])
            cool += 1
    return out


def lesion_slice_of(mask: np.ndarray) -> int:
    """The slice with the largest cross-section of a 3-D mask."""
    area = mask.sum(axis=(1, 2))
    return int(area.argmax()) if area.max() > 0 else mask.shape[0] // 2


def render_slice(
    hu: np.ndarray,
    window: tuple[float, float],
    labels: np.ndarray | None = None,
    size: int = 448,
    fill: float = 0.25,
    colours: dict[int, tuple[int, int, int]] | None = None,
    names: dict[int, str] | None = None,
) -> np.ndarray:
    """Windowed slice as RGB uint8, lesion outlines drawn (and lightly filled), upscaled.

    ``colours`` and ``names`` (by label value) colour each outline and write its name (the
    tracking identifier) beside it."""
    centre, width = window
    lo = centre - width / 2.0
    grey = np.clip((hu.astype(np.float32) - lo) / width, 0.0, 1.0) * 255.0
    rgb = np.repeat(grey[..., None], 3, axis=2)
    placed: list[tuple[int, float, float, tuple[int, int, int]]] = []
    if labels is not None:
        for value in np.unique(labels):
            if value == 0:
                continue
            mask = labels == value
            rgb_colour = (colours or {}).get(
                int(value), LESION_COLOURS[(int(value) - 1) % len(LESION_COLOURS)]
            )
            colour = np.array(rgb_colour, float)
            rgb[mask] = (1 - fill) * rgb[mask] + fill * colour
            edge = mask & ~ndimage.binary_erosion(mask)
            rgb[edge] = colour
            ys, xs = np.nonzero(mask)
            placed.append((int(value), float(ys.min()), float(xs.max()), rgb_colour))
    image = Image.fromarray(rgb.astype(np.uint8))
    scale = size / max(hu.shape)
    if scale > 1:
        image = image.resize(
            (round(hu.shape[1] * scale), round(hu.shape[0] * scale)), Image.Resampling.NEAREST
        )
    else:
        scale = 1.0
    if names:
        draw = ImageDraw.Draw(image)
        font = _font(max(12, round(image.size[0] / 34)))
        for value, top, right, colour in placed:
            text = names.get(value)
            if not text:
                continue
            x = min(right * scale + 4, image.size[0] - 6 * len(text) - 8)
            y = max(top * scale - 4 - font.size, 2)  # type: ignore[union-attr]
            box = draw.textbbox((x, y), text, font=font)
            draw.rectangle((box[0] - 2, box[1] - 1, box[2] + 2, box[3] + 1), fill=(0, 0, 0))
            draw.text((x, y), text, fill=colour, font=font)
    return np.asarray(image)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans Bold (Debian's fonts-dejavu) when present, else Pillow's own font."""
    for path in (
        "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
        "/usr/share/fonts/dejavu/DejaVuSans-Bold.ttf",
    ):
        if Path(path).is_file():
            return ImageFont.truetype(path, size)
    return ImageFont.load_default(size)


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
