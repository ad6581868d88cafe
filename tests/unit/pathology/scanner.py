"""What a slide scanner records where there is no tissue, and slides nobody here rendered.

Empty glass is not white: scanners record it at a uniform RGB of about 235 to 250, with sensor
noise, a slight colour cast, uneven illumination (vignetting), dust specks, and the thin grey
lines of a coverslip edge and a label's border. :func:`empty_glass` draws that, so that a tissue
detector can be tested on what it will meet rather than on pure white.

:func:`ihc_image` is scikit-image's ``immunohistochemistry`` sample: a real photograph of colon
tissue stained by immunohistochemistry (DAB, brown, with a haematoxylin counterstain), which
nobody in this project made. Mirrored copies make it large enough for the tiling.
"""

from __future__ import annotations

import numpy as np


def empty_glass(
    size: int = 1024,
    *,
    level: float = 244.0,
    cast: tuple[float, float, float] = (-3.0, 0.0, 4.0),
    noise: float = 2.5,
    specks: int = 12,
    edges: bool = True,
    seed: int = 0,
) -> np.ndarray:
    """A ``size`` x ``size`` RGB image of empty glass as a scanner records it."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    img = np.full((size, size, 3), float(level)) + np.asarray(cast, dtype=np.float64)
    r2 = ((xx / size - 0.5) ** 2 + (yy / size - 0.5) ** 2)[..., None]
    img -= 4.0 * r2  # vignetting: darker corners
    img += rng.normal(0.0, noise, img.shape)
    for _ in range(specks):  # dust: small grey specks, a few pixels across
        cy, cx = rng.uniform(0, size, 2)
        radius = rng.uniform(1.5, 7.0)
        img[np.hypot(yy - cy, xx - cx) < radius] = rng.uniform(60.0, 200.0)
    if edges:
        img[:, size - 40 : size - 37] = (148.0, 150.0, 155.0)  # coverslip edge
        img[size - 30 : size - 28, :] = (170.0, 171.0, 174.0)  # label border
        img[size - 28 :, :] = np.clip(img[size - 28 :, :] + 6.0, 0, 255)  # frosted label
    return np.clip(img, 0, 255).astype(np.uint8)


def ihc_image(size: int = 1024) -> np.ndarray:
    """scikit-image's real IHC (DAB + haematoxylin) colon image, mirrored to ``size`` pixels."""
    from skimage import data

    tile = data.immunohistochemistry()
    block = np.concatenate(
        [
            np.concatenate([tile, tile[:, ::-1]], axis=1),
            np.concatenate([tile[::-1], tile[::-1, ::-1]], axis=1),
        ],
        axis=0,
    )
    reps = -(-size // block.shape[0])
    return np.ascontiguousarray(np.tile(block, (reps, reps, 1))[:size, :size])


def restain(rgb: np.ndarray, factor: float) -> np.ndarray:
    """The same tissue with every stain's optical density multiplied by ``factor``."""
    od = -np.log((rgb.astype(np.float64) + 1.0) / 256.0)
    return np.clip(256.0 * np.exp(-factor * od) - 1.0, 0, 255).astype(np.uint8)
