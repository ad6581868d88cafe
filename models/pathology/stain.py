"""Macenko stain normalisation (Macenko et al., ISBI 2009).

The haematoxylin and eosin optical-density vectors of a slide are estimated from the plane of
the two largest eigenvectors of its tissue pixels' optical density (the robust extremes of the
angle in that plane), the stain concentrations are solved by least squares, scaled so their
99th percentile matches a reference, and re-rendered with the reference stain vectors.
"""

from __future__ import annotations

from typing import Self

import numpy as np

from models.exceptions import InsufficientDataError

HE_REFERENCE = np.array([[0.5626, 0.2159], [0.7201, 0.8012], [0.4062, 0.5581]])
"""Reference H and E optical-density vectors (columns), from Macenko's reference code."""
MAX_CONC_REFERENCE = np.array([1.9705, 1.0308])


def optical_density(rgb: np.ndarray, io: float = 240.0) -> np.ndarray:
    """Optical density ``-ln((I + 1) / Io)`` of RGB pixels (any leading shape, last axis 3)."""
    return -np.log((np.asarray(rgb, dtype=np.float64)[..., :3] + 1.0) / io)


def estimate_stain_vectors(
    rgb: np.ndarray,
    *,
    io: float = 240.0,
    beta: float = 0.15,
    alpha: float = 1.0,
    max_pixels: int = 200_000,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """H and E optical-density vectors of an image, and the 99th-percentile concentrations.

    Parameters
    ----------
    rgb
        ``(..., 3)`` uint8 pixels (a tile, a stack of tiles or a thumbnail).
    io
        Transmitted light intensity (background).
    beta
        Pixels with optical density below this in any channel are background.
    alpha
        Percentile of the extreme angles (robust minimum and maximum).
    max_pixels
        Pixels sampled (deterministically, by ``seed``) for the estimate.

    Returns
    -------
    stains, max_conc
        ``(3, 2)`` unit columns (H, E) and ``(2,)`` concentrations.

    Raises
    ------
    InsufficientDataError
        Too few tissue pixels to estimate the stains.
    """
    od = optical_density(rgb, io).reshape(-1, 3)
    od = od[~np.any(od < beta, axis=1)]
    if len(od) < 100:
        raise InsufficientDataError(
            f"Macenko: only {len(od)} tissue pixels (optical density >= {beta}); need 100"
        )
    if len(od) > max_pixels:
        od = od[np.random.default_rng(seed).choice(len(od), max_pixels, replace=False)]
    _, vecs = np.linalg.eigh(np.cov(od.T))
    plane = vecs[:, 1:3]  # two largest
    plane = plane * np.where(plane.sum(axis=0) < 0, -1.0, 1.0)
    proj = od @ plane
    phi = np.arctan2(proj[:, 1], proj[:, 0])
    lo, hi = np.percentile(phi, alpha), np.percentile(phi, 100 - alpha)
    v_lo = plane @ np.array([np.cos(lo), np.sin(lo)])
    v_hi = plane @ np.array([np.cos(hi), np.sin(hi)])
    # haematoxylin has the larger red component
    stains = np.column_stack([v_lo, v_hi]) if v_lo[0] > v_hi[0] else np.column_stack([v_hi, v_lo])
    stains = stains / np.linalg.norm(stains, axis=0, keepdims=True)
    conc = np.linalg.lstsq(stains, od.T, rcond=None)[0]
    max_conc = np.percentile(conc, 99, axis=1)
    return stains, np.maximum(max_conc, 1e-6)


class MacenkoNormalizer:
    """Map an image's stain appearance onto a reference.

    Parameters
    ----------
    reference_stains
        ``(3, 2)`` H and E vectors of the target appearance.
    reference_max_conc
        ``(2,)`` 99th-percentile concentrations of the target.
    io
        Transmitted light intensity.
    """

    def __init__(
        self,
        *,
        reference_stains: np.ndarray = HE_REFERENCE,
        reference_max_conc: np.ndarray = MAX_CONC_REFERENCE,
        io: float = 240.0,
    ):
        self.reference_stains = np.asarray(reference_stains, dtype=np.float64)
        self.reference_max_conc = np.asarray(reference_max_conc, dtype=np.float64)
        self.io = float(io)
        self.stains_: np.ndarray | None = None
        self.max_conc_: np.ndarray | None = None

    @classmethod
    def from_reference_image(cls, rgb: np.ndarray, io: float = 240.0) -> MacenkoNormalizer:
        """A normaliser whose target is the appearance of ``rgb``."""
        stains, max_conc = estimate_stain_vectors(rgb, io=io)
        return cls(reference_stains=stains, reference_max_conc=max_conc, io=io)

    def fit(self, rgb: np.ndarray) -> Self:
        """Estimate the source image's stains (tiles of one slide, or a thumbnail)."""
        self.stains_, self.max_conc_ = estimate_stain_vectors(rgb, io=self.io)
        return self

    def transform(self, rgb: np.ndarray) -> np.ndarray:
        """Re-render ``rgb`` (same stains as fitted) with the reference stains, uint8."""
        if self.stains_ is None or self.max_conc_ is None:
            raise ValueError("MacenkoNormalizer.transform called before fit")
        rgb = np.asarray(rgb)
        od = optical_density(rgb, self.io).reshape(-1, 3)
        conc = np.linalg.lstsq(self.stains_, od.T, rcond=None)[0]
        conc *= (self.reference_max_conc / self.max_conc_)[:, None]
        out = self.io * np.exp(-(self.reference_stains @ conc))
        return np.clip(out.T, 0, 255).reshape((*rgb.shape[:-1], 3)).astype(np.uint8)

    def fit_transform(self, rgb: np.ndarray) -> np.ndarray:
        """``fit(rgb).transform(rgb)``."""
        return self.fit(rgb).transform(rgb)
