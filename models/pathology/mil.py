"""Gated attention multiple-instance learning over a slide's tiles (Ilse et al., ICML 2018).

A slide is a bag of tile feature vectors. Each tile is embedded (``h_k``), scored by the gated
attention ``a_k = softmax_k(w^T (tanh(V h_k) * sigmoid(U h_k)))``, and the bag is the weighted
sum ``z = sum_k a_k h_k``. With ``n_branches > 1`` there are several such attention branches
(as in CLAM's multi-branch pooling), their pooled vectors concatenated. Two heads read the
pooled vector: the immune phenotype (inflamed / excluded / desert logits) and the TIL density
(standardised log of TILs per mm²). Branch 0's attention is the heat map; training can guide
it towards tiles where a lymphocyte detector fires (``models.pathology.train``), so the map
shows where the immune cells are, while branch 1 is free to attend to, say, the tumour.

Feature standardisation (mean, std of the training tiles) and the TIL target's scaling live in
the module's buffers, so a saved state dict is the whole model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from schemas.enums import ImmunePhenotype

PHENOTYPES: tuple[ImmunePhenotype, ...] = (
    ImmunePhenotype.INFLAMED,
    ImmunePhenotype.EXCLUDED,
    ImmunePhenotype.DESERT,
)
"""Class order of the phenotype head."""


@dataclass(frozen=True)
class MILConfig:
    """Shape of a :class:`GatedAttentionMIL`.

    Parameters
    ----------
    in_dim
        Tile feature length (the encoder's ``dim``).
    hidden
        Tile embedding width.
    attention_dim
        Width of the gated attention's hidden layer.
    n_classes
        Phenotype classes.
    dropout
        Dropout on the embedding and before the heads (also used for MC-dropout).
    n_branches
        Attention branches; branch 0 is the one shown as the heat map.
    """

    in_dim: int
    hidden: int = 64
    attention_dim: int = 32
    n_classes: int = len(PHENOTYPES)
    dropout: float = 0.25
    n_branches: int = 2

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, for checkpoints."""
        return asdict(self)


@dataclass
class MILOutput:
    """What one forward pass gives.

    Attributes
    ----------
    logits
        ``(b, n_classes)`` phenotype logits.
    til
        ``(b,)`` standardised log TIL density.
    attention
        ``(b, n)`` attention weights of branch 0 (the heat map); zero on padding, summing to one
        over a bag's tiles.
    branches
        ``(b, n_branches, n)`` attention weights of every branch.
    """

    logits: torch.Tensor
    til: torch.Tensor
    attention: torch.Tensor
    branches: torch.Tensor


class GatedAttentionMIL(nn.Module):
    """Gated attention MIL with a phenotype head and a TIL-density head.

    Parameters
    ----------
    config
        Sizes; see :class:`MILConfig`.
    """

    def __init__(self, config: MILConfig):
        super().__init__()
        self.config = config
        d, h, a = config.in_dim, config.hidden, config.attention_dim
        self.register_buffer("feature_mean", torch.zeros(d))
        self.register_buffer("feature_std", torch.ones(d))
        self.register_buffer("til_mean", torch.zeros(()))
        self.register_buffer("til_std", torch.ones(()))
        self.embed = nn.Sequential(
            nn.Linear(d, h), nn.ReLU(), nn.Dropout(config.dropout), nn.Linear(h, h), nn.ReLU()
        )
        k = config.n_branches
        if k < 1:
            raise ValueError(f"n_branches must be at least 1, got {k}")
        self.attention_v = nn.Linear(h, a * k)
        self.attention_u = nn.Linear(h, a * k)
        self.attention_w = nn.Conv1d(a * k, k, kernel_size=1, groups=k)
        self.head_dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(h * k, config.n_classes)
        self.til_head = nn.Linear(h * k, 1)

    def set_normalisation(
        self, feature_mean: np.ndarray, feature_std: np.ndarray, til_mean: float, til_std: float
    ) -> None:
        """Store the training data's feature and target scaling in the module."""
        self.feature_mean.copy_(torch.as_tensor(feature_mean, dtype=torch.float32))
        self.feature_std.copy_(torch.as_tensor(np.maximum(feature_std, 1e-6), dtype=torch.float32))
        self.til_mean.fill_(float(til_mean))
        self.til_std.fill_(float(max(til_std, 1e-6)))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> MILOutput:
        """Score bags.

        Parameters
        ----------
        x
            ``(b, n, in_dim)`` raw tile features (or ``(n, in_dim)`` for one bag).
        mask
            ``(b, n)`` True where a tile is real, False on padding; None when all are real.
        """
        if x.ndim == 2:
            x = x.unsqueeze(0)
            mask = None if mask is None else mask.unsqueeze(0)
        if mask is None:
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        h = self.embed((x - self.feature_mean) / self.feature_std)
        gated = torch.tanh(self.attention_v(h)) * torch.sigmoid(self.attention_u(h))
        scores = self.attention_w(gated.transpose(1, 2))  # (b, k, n)
        scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf"))
        attention = torch.softmax(scores, dim=2)
        z = self.head_dropout(torch.einsum("bkn,bnh->bkh", attention, h).flatten(1))
        return MILOutput(
            logits=self.classifier(z),
            til=self.til_head(z).squeeze(-1),
            attention=attention[:, 0],
            branches=attention,
        )

    def til_to_density(self, til: torch.Tensor) -> torch.Tensor:
        """Standardised head output -> TILs per mm² of tumour."""
        return torch.expm1(til * self.til_std + self.til_mean).clamp(min=0.0)


def pad_bags(bags: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack bags of different sizes into ``(b, n_max, d)`` features and a ``(b, n_max)`` mask."""
    if not bags:
        raise ValueError("pad_bags needs at least one bag")
    n_max = max(len(b) for b in bags)
    d = bags[0].shape[1]
    x = torch.zeros((len(bags), n_max, d), dtype=torch.float32)
    mask = torch.zeros((len(bags), n_max), dtype=torch.bool)
    for i, b in enumerate(bags):
        x[i, : len(b)] = torch.as_tensor(b, dtype=torch.float32)
        mask[i, : len(b)] = True
    return x, mask
