"""Stains: the H&E check (is this slide what the model was made for?) and Macenko normalisation.

:func:`check_stain` separates each tissue pixel into haematoxylin, eosin and DAB by colour
deconvolution with Ruifrok and Johnston's vectors (:func:`skimage.color.rgb2hed`) after white
balance against the slide's glass, and counts two kinds of pixel: *brown* ones, where DAB
dominates and eosin is nearly absent (the chromogen of immunohistochemistry), and *eosin* ones.
In H&E, real eosin also absorbs some blue, so the DAB channel alone is not a test (pink stroma
reads about half DAB); brown pixels, with eosin below a quarter of the DAB, are. An H&E slide has
almost no brown pixels and eosin in most of its tissue; an IHC slide (DAB and a haematoxylin
counterstain) is brown in much of it and has no eosin; a haematoxylin-only or special stain has
no eosin. The outcome is :class:`StainOutcome`: ``h&e``, ``doubtful`` (flagged) or ``not h&e``
(refused by :func:`~models.pathology.inference.analyse_slide` unless told to flag it).

Macenko stain normalisation (Macenko et al., ISBI 2009): the haematoxylin and eosin
optical-density vectors of a slide are estimated from the plane of the two largest eigenvectors
of its tissue pixels' optical density (the robust extremes of the angle in that plane), the stain
concentrations are solved by least squares, scaled so their 99th percentile matches a
reference, and re-rendered with the reference stain vectors.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, Self

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


# ----------------------------------------------------------------------------- stain check

_TISSUE_HED = 0.03
"""Least total stain (sum of rgb2hed's H, E and DAB, its units) of a pixel counted as stained
tissue; balanced glass is below 0.01."""
_BROWN_DAB = 0.02
"""Least DAB of a brown pixel (rgb2hed units; light brown IHC is about 0.07)."""
_BROWN_EOSIN_RATIO = 0.25
"""A pixel is brown when its eosin is below this fraction of its DAB (H&E's pink is about 1)."""
_EOSIN_MIN = 0.01
_EOSIN_DAB_RATIO = 0.5
"""A pixel carries eosin when its eosin exceeds ``_EOSIN_MIN`` and half its DAB."""
DAB_REFUSE = 0.10
"""Brown in at least this fraction of the tissue: immunohistochemistry, not H&E."""
DAB_DOUBT = 0.03
"""Brown in at least this fraction (pigment, or a weakly positive IHC): doubtful, flagged."""
EOSIN_REFUSE = 0.20
"""Eosin in less than this fraction of the tissue: not an H&E stain."""
EOSIN_DOUBT = 0.40
"""Eosin in less than this fraction: doubtful, flagged."""


class StainOutcome(StrEnum):
    """What the stain check concluded."""

    HE = "h&e"
    DOUBTFUL = "doubtful"
    NOT_HE = "not h&e"


@dataclass(frozen=True)
class StainCheck:
    """The stain check of one slide.

    Attributes
    ----------
    outcome
        ``h&e``, ``doubtful`` or ``not h&e``.
    dab_fraction
        Fraction of stained tissue pixels that are brown (DAB dominant, eosin nearly absent).
    eosin_fraction
        Fraction of stained tissue pixels that carry eosin.
    tissue_pixels
        Stained pixels the fractions were counted over.
    reason
        One sentence: why the outcome, with the fractions.
    """

    outcome: StainOutcome
    dab_fraction: float
    eosin_fraction: float
    tissue_pixels: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        out = asdict(self)
        out["outcome"] = str(self.outcome)
        return out


def check_stain(
    rgb: np.ndarray,
    *,
    glass: np.ndarray | None = None,
    max_pixels: int = 400_000,
    seed: int = 0,
) -> StainCheck:
    """Is this H&E? Colour-deconvolution statistics of a slide's tissue pixels.

    Parameters
    ----------
    rgb
        ``(..., 3)`` uint8 pixels: a slide's tissue tiles (or a thumbnail).
    glass
        The slide's glass colour (:func:`~models.pathology.slide.glass_colour`) to white-balance
        against; None for none.
    max_pixels
        Pixels sampled (deterministically, by ``seed``) for the statistics.

    Returns
    -------
    StainCheck
        ``not h&e`` when brown covers at least :data:`DAB_REFUSE` of the tissue or eosin less
        than :data:`EOSIN_REFUSE`; ``doubtful`` past :data:`DAB_DOUBT` or below
        :data:`EOSIN_DOUBT`; ``h&e`` otherwise.

    Raises
    ------
    InsufficientDataError
        Fewer than 100 stained pixels.
    """
    from skimage.color import rgb2hed

    px = np.asarray(rgb)[..., :3].reshape(-1, 3)
    if len(px) > max_pixels:
        px = px[np.random.default_rng(seed).choice(len(px), max_pixels, replace=False)]
    px = px.astype(np.float64)
    if glass is not None:
        px = np.clip(px * (255.0 / np.asarray(glass, dtype=np.float64)), 0.0, 255.0)
    hed = rgb2hed(px[None] / 255.0)[0]
    stained = hed.sum(axis=1) > _TISSUE_HED
    n = int(stained.sum())
    if n < 100:
        raise InsufficientDataError(
            f"stain check: only {n} stained pixels; insufficient tissue to tell the stain"
        )
    e, d = hed[stained, 1], hed[stained, 2]
    dab = float(((d > _BROWN_DAB) & (e < _BROWN_EOSIN_RATIO * d)).mean())
    eosin = float(((e > _EOSIN_MIN) & (e >= _EOSIN_DAB_RATIO * d)).mean())
    facts = f"brown (DAB) in {dab:.0%} of the stained tissue, eosin in {eosin:.0%}"
    if dab >= DAB_REFUSE:
        outcome = StainOutcome.NOT_HE
        reason = f"immunohistochemistry (DAB), not H&E: {facts}"
    elif eosin < EOSIN_REFUSE:
        outcome = StainOutcome.NOT_HE
        reason = (
            "no eosin: not an H&E stain (haematoxylin only, a counterstain or a special "
            f"stain): {facts}"
        )
    elif dab >= DAB_DOUBT or eosin < EOSIN_DOUBT:
        outcome = StainOutcome.DOUBTFUL
        reason = f"doubtful H&E: {facts}"
    else:
        outcome = StainOutcome.HE
        reason = f"H&E: {facts}"
    return StainCheck(outcome, round(dab, 4), round(eosin, 4), n, reason)
