"""Pixels for the Images page: a CT slice through the lesion with its mask, and slide views.

Conventions read here:

* A study folder (``acquisitions.location->>'path'``) holds one sub-folder per series with
  ``IM-*.dcm`` files; the virtual clinic also writes ``labels.npz`` (array ``labels``: slices x
  rows x cols, 0 background, ``n`` lesion ``n``, slice ``k`` = InstanceNumber ``k+1``) beside
  them. Without it the planning SEG (``payload.lesion.path``, or ``SEG.dcm``) gives the target.
* A biopsy's attention heat map is a PNG beside the slide: ``<slide stem>.attention.png``
  (``slide.tiff`` -> ``slide.attention.png``), the same size ratio as the slide; a score's
  ``inputs`` may also name one as ``attention:<path>``. Without it the slide thumbnail is shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

PREFERRED_SERIES = ("CT", "VMI_70keV", "VMI_65keV", "VMI_60keV")
LESION_COLOURS = [(255, 80, 60), (60, 200, 255), (255, 210, 60), (160, 255, 120)]


@dataclass(frozen=True)
class Study:
    """A CT volume in HU (slices x rows x cols) with its lesion labels, when found."""

    volume: np.ndarray
    labels: np.ndarray | None
    series: str
    pixel_mm: float
    label_source: str


def _series_folder(study: Path) -> Path:
    folders = [p for p in study.iterdir() if p.is_dir() and any(p.glob("*.dcm"))]
    if not folders:
        if any(study.glob("*.dcm")):
            return study
        raise FileNotFoundError(f"no DICOM series under {study}")
    by_name = {p.name: p for p in folders}
    for name in PREFERRED_SERIES:
        if name in by_name:
            return by_name[name]
    vmi = sorted(n for n in by_name if n.startswith("VMI_"))
    return by_name[vmi[len(vmi) // 2]] if vmi else sorted(folders)[0]


def read_study(study: Path, lesion_path: str | None = None) -> Study:
    """Read the preferred image series of a study folder and its lesion labels."""
    import pydicom

    folder = _series_folder(study)
    slices = []
    for f in folder.glob("*.dcm"):
        ds = pydicom.dcmread(f)
        if "PixelData" not in ds:
            continue
        hu = ds.pixel_array.astype(np.float32) * float(ds.get("RescaleSlope", 1)) + float(
            ds.get("RescaleIntercept", 0)
        )
        slices.append((int(ds.get("InstanceNumber", 0)), hu, float(ds.PixelSpacing[0])))
    if not slices:
        raise FileNotFoundError(f"no image in {folder}")
    slices.sort(key=lambda s: s[0])
    volume = np.stack([s[1] for s in slices]).round().clip(-32768, 32767).astype(np.int16)
    labels, source = None, "none"
    npz = study / "labels.npz"
    if npz.is_file():
        with np.load(npz) as z:
            candidate = z["labels"]
        if candidate.shape == volume.shape:
            labels, source = candidate, "labels.npz"
    if labels is None:
        seg = Path(lesion_path) if lesion_path else study / "SEG.dcm"
        if seg.is_file():
            try:
                from clinic.measure import seg_mask

                mask = seg_mask(seg)[0]
                if mask.shape == volume.shape:
                    labels, source = mask.astype(np.uint8), "SEG"
            except (ValueError, AttributeError, KeyError, OSError):
                labels = None
    return Study(volume, labels, folder.name, slices[0][2], source)


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
