"""How far a slide lies from the slides the model was trained on (out-of-distribution measure).

A slide is summarised by its *bag embedding*: the mean and the standard deviation, over its
tissue tiles, of each tile feature the encoder gives (:func:`bag_embedding`). At training time
:meth:`OodReference.fit` standardises the training slides' embeddings, fits their mean and a
shrunk covariance (Ledoit-Wolf, :class:`sklearn.covariance.LedoitWolf`, well conditioned even
with fewer slides than dimensions), and records the *reference distances*: the Mahalanobis
distance of every training slide measured by a model fitted without it (K-fold, so the reference
is out of sample like a new slide's distance). It travels in the model's checkpoint.

At inference :meth:`OodReference.score` gives, for a slide:

- ``distance``: its Mahalanobis distance from the training slides;
- ``percentile``: the percentage of training slides (reference distances) closer than it;
- ``weight``: how far it lies beyond the training slides, from 0 to 1: 0 up to the reference
  distances' 95th percentile ``d95``, then rising linearly to 1 at ``2 x d95``
  (``clip((distance / d95 - 1) / (OOD_FULL_RATIO - 1), 0, 1)``);
- ``status``: ``in-distribution`` (weight 0), ``shifted`` (between), ``out-of-distribution``
  (weight 1), or ``unknown`` for a model saved without a reference (trained before this
  measure existed).

:func:`~models.pathology.inference.analyse_slide` widens its uncertainty by the weight ``w``:
the phenotype probabilities are blended towards the training class frequencies
(``(1 - w) p + w prior``) and the TIL spread grows towards the training population's
(``sqrt(s_mc^2 + (w s_train)^2)`` in ``log1p`` units).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, Self

import numpy as np

OOD_FORMAT = "irtmon-ood/1"
OOD_START_QUANTILE = 0.95
"""Reference-distance quantile up to which a slide counts as in distribution (weight 0)."""
OOD_FULL_RATIO = 2.0
"""A slide this many times farther than that quantile gets the full weight 1."""
_MIN_SLIDES = 4
_STD_FLOOR = 1e-6


class OodStatus(StrEnum):
    """Where a slide lies relative to the training slides."""

    IN_DISTRIBUTION = "in-distribution"
    SHIFTED = "shifted"
    OUT_OF_DISTRIBUTION = "out-of-distribution"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class OodScore:
    """The out-of-distribution measure of one slide (see the module docstring).

    ``distance``, ``percentile`` and ``reference_q95`` are None when the status is unknown.
    """

    status: OodStatus
    distance: float | None
    percentile: float | None
    weight: float
    reference_q95: float | None
    reference_slides: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        out = asdict(self)
        out["status"] = str(self.status)
        return out


UNKNOWN = OodScore(OodStatus.UNKNOWN, None, None, 0.0, None, 0)
"""The score of a slide scored by a model that carries no reference."""


def bag_embedding(features: np.ndarray) -> np.ndarray:
    """``(n_tiles, dim)`` tile features -> ``(2 dim,)``: their means, then their spreads."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or len(f) == 0:
        raise ValueError(f"bag_embedding needs (n_tiles, dim) features, got shape {f.shape}")
    return np.concatenate([f.mean(axis=0), f.std(axis=0)])


def weight_of(distance: float, q95: float) -> float:
    """The widening weight of a distance (0 up to ``q95``, 1 from ``OOD_FULL_RATIO * q95``)."""
    if not np.isfinite(distance):
        return 1.0
    return float(np.clip((distance / max(q95, 1e-12) - 1.0) / (OOD_FULL_RATIO - 1.0), 0.0, 1.0))


@dataclass(frozen=True)
class OodReference:
    """The training slides' embedding distribution, as the checkpoint keeps it.

    Attributes
    ----------
    center, scale
        Mean and standard deviation of each embedding dimension over the training slides.
    location, precision
        Mean and Ledoit-Wolf precision (inverse covariance) of the standardised embeddings.
    reference
        Sorted out-of-sample Mahalanobis distances of the training slides.
    """

    center: np.ndarray
    scale: np.ndarray
    location: np.ndarray
    precision: np.ndarray
    reference: np.ndarray

    @property
    def q95(self) -> float:
        """The reference distances' :data:`OOD_START_QUANTILE` quantile."""
        return float(np.quantile(self.reference, OOD_START_QUANTILE))

    @classmethod
    def fit(cls, embeddings: np.ndarray, *, folds: int = 5, seed: int = 0) -> Self:
        """Fit on the training slides' embeddings ``(n_slides, dim)``.

        Raises
        ------
        ValueError
            Fewer than four slides, or embeddings that are not finite.
        """
        from sklearn.covariance import LedoitWolf

        x = np.asarray(embeddings, dtype=np.float64)
        if x.ndim != 2 or len(x) < _MIN_SLIDES:
            raise ValueError(
                f"an OOD reference needs at least {_MIN_SLIDES} slides, got shape {x.shape}"
            )
        if not np.isfinite(x).all():
            raise ValueError("OOD reference: the embeddings hold NaN or infinite values")
        center = x.mean(axis=0)
        scale = np.maximum(x.std(axis=0), _STD_FLOOR)
        z = (x - center) / scale
        k = int(min(folds, len(z)))
        order = np.random.default_rng(seed).permutation(len(z))
        distances = np.empty(len(z))
        for part in np.array_split(order, k):
            rest = np.setdiff1d(order, part)
            lw = LedoitWolf().fit(z[rest])
            distances[part] = _mahalanobis(z[part], lw.location_, lw.precision_)
        full = LedoitWolf().fit(z)
        return cls(
            center=center,
            scale=scale,
            location=full.location_,
            precision=full.precision_,
            reference=np.sort(distances),
        )

    def distance(self, embedding: np.ndarray) -> float:
        """Mahalanobis distance of one slide's embedding from the training slides."""
        z = (np.asarray(embedding, dtype=np.float64) - self.center) / self.scale
        if z.shape != self.center.shape:
            raise ValueError(
                f"embedding of length {z.shape} does not match the reference ({self.center.shape})"
            )
        if not np.isfinite(z).all():
            return float("inf")
        return float(_mahalanobis(z[None], self.location, self.precision)[0])

    def score(self, features: np.ndarray) -> OodScore:
        """The OOD measure of a slide from its ``(n_tiles, dim)`` tile features."""
        d = self.distance(bag_embedding(features))
        q95 = self.q95
        weight = weight_of(d, q95)
        status = (
            OodStatus.IN_DISTRIBUTION
            if weight == 0.0
            else OodStatus.OUT_OF_DISTRIBUTION
            if weight >= 1.0
            else OodStatus.SHIFTED
        )
        below = float(np.searchsorted(self.reference, d, side="left"))
        return OodScore(
            status=status,
            distance=round(d, 4) if np.isfinite(d) else d,
            percentile=round(100.0 * below / len(self.reference), 2),
            weight=round(weight, 4),
            reference_q95=round(q95, 4),
            reference_slides=len(self.reference),
        )

    def to_state(self) -> dict[str, Any]:
        """What a torch checkpoint stores (tensors and plain values; ``weights_only`` loads it)."""
        import torch

        return {
            "format": OOD_FORMAT,
            **{
                name: torch.as_tensor(np.asarray(getattr(self, name)), dtype=torch.float64)
                for name in ("center", "scale", "location", "precision", "reference")
            },
        }

    @classmethod
    def from_state(cls, state: Any) -> Self | None:
        """The reference a checkpoint stored, or None when it has none (or an unknown format)."""
        if not isinstance(state, dict) or state.get("format") != OOD_FORMAT:
            return None
        try:
            arrays = {
                name: np.asarray(state[name], dtype=np.float64)
                for name in ("center", "scale", "location", "precision", "reference")
            }
        except (KeyError, TypeError, ValueError):
            return None
        p = arrays["center"].shape
        if (
            arrays["scale"].shape != p
            or arrays["location"].shape != p
            or arrays["precision"].shape != (p[0], p[0])
            or len(arrays["reference"]) == 0
        ):
            return None
        return cls(**arrays)


def _mahalanobis(z: np.ndarray, location: np.ndarray, precision: np.ndarray) -> np.ndarray:
    diff = z - location
    return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", diff, precision, diff), 0.0))


__all__ = [
    "OOD_FULL_RATIO",
    "OOD_START_QUANTILE",
    "UNKNOWN",
    "OodReference",
    "OodScore",
    "OodStatus",
    "bag_embedding",
    "weight_of",
]
