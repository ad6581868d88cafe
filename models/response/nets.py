"""Small torch networks shared by the virtual biopsy and the response model.

A :class:`Standardiser` (signed log, then robust centring and scaling with the training
rows' median and inter-quartile range; missing values become 0 after scaling) and
:func:`fit_mlp`, a seeded, early-stopped fit of a one-hidden-layer network. Both models are
ensembles of such networks over patient-level bootstrap samples, which gives their
uncertainty.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from models.exceptions import ModelError
from models.registry import load_artifact
from models.runtime import device as torch_device
from models.runtime import set_threads


@dataclass
class Standardiser:
    """Column-wise signed-log, median/IQR scaling; NaN (missing) maps to 0."""

    names: list[str]
    centre: list[float]
    scale: list[float]
    log: list[bool]

    @classmethod
    def fit(cls, x: np.ndarray, names: Sequence[str], log_columns: Sequence[bool]) -> Standardiser:
        x = _signed_log(np.asarray(x, dtype=np.float64), np.asarray(log_columns, dtype=bool))
        with warnings.catch_warnings():  # all-missing columns (no PCCT rows) are allowed
            warnings.simplefilter("ignore", RuntimeWarning)
            centre = np.nanmedian(x, axis=0)
            q75, q25 = np.nanpercentile(x, [75, 25], axis=0)
            std = np.nanstd(x, axis=0)
        scale = (q75 - q25) / 1.349
        scale = np.where(scale > 1e-9, scale, np.where(std > 1e-9, std, 1.0))
        centre = np.where(np.isfinite(centre), centre, 0.0)
        scale = np.where(np.isfinite(scale), scale, 1.0)
        return cls(list(names), centre.tolist(), scale.tolist(), [bool(v) for v in log_columns])

    def transform(self, x: np.ndarray) -> np.ndarray:
        x = _signed_log(np.asarray(x, dtype=np.float64), np.asarray(self.log, dtype=bool))
        z = (x - np.asarray(self.centre)) / np.asarray(self.scale)
        z = np.clip(z, -8.0, 8.0)
        return np.where(np.isfinite(z), z, 0.0).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _signed_log(x: np.ndarray, which: np.ndarray) -> np.ndarray:
    out = x.copy()
    out[:, which] = np.sign(x[:, which]) * np.log1p(np.abs(x[:, which]))
    return out


@dataclass(frozen=True)
class MlpConfig:
    """Hyper-parameters of one network."""

    hidden: int = 16
    dropout: float = 0.2
    lr: float = 3e-3
    weight_decay: float = 1e-3
    max_epochs: int = 400
    patience: int = 40


def build_mlp(n_in: int, n_out: int, config: MlpConfig) -> Any:
    import torch.nn as nn

    return nn.Sequential(
        nn.Linear(n_in, config.hidden),
        nn.GELU(),
        nn.Dropout(config.dropout),
        nn.Linear(config.hidden, n_out),
    )


Loss = Callable[[Any, Any], Any]
"""``loss(output, target)`` on tensors."""


def fit_mlp(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    n_out: int,
    loss: Loss,
    config: MlpConfig,
    seed: int,
    augment: Callable[[Any, Any], Any] | None = None,
    *,
    device: str = "cpu",
) -> tuple[Any, int, float]:
    """Full-batch Adam with early stopping on the validation loss, on ``device``
    (:func:`models.runtime.device`); the model comes back on the CPU. ``augment(x, generator)``
    gets a CPU generator, so its draws are the same on every device.

    Returns
    -------
    model, best_epoch, best_validation_loss
    """
    import torch

    set_threads(1)  # tiny full-batch networks: one thread is fastest, and reproducible
    dev = torch_device(device)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = build_mlp(x_train.shape[1], n_out, config).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    xt, yt = torch.as_tensor(x_train, device=dev), torch.as_tensor(y_train, device=dev)
    xv, yv = torch.as_tensor(x_val, device=dev), torch.as_tensor(y_val, device=dev)
    best, best_epoch, best_state, waited = math.inf, 0, copy.deepcopy(model.state_dict()), 0
    for epoch in range(1, config.max_epochs + 1):
        model.train()
        opt.zero_grad()
        xb = augment(xt, gen) if augment is not None else xt
        loss(model(xb), yt).backward()
        opt.step()
        model.eval()
        with torch.no_grad():
            v = float(loss(model(xv), yv))
        if v < best - 1e-5:
            best, best_epoch, best_state, waited = v, epoch, copy.deepcopy(model.state_dict()), 0
        else:
            waited += 1
            if waited >= config.patience:
                break
    model.load_state_dict(best_state)
    model.to("cpu")
    model.eval()
    return model, best_epoch, best


def bootstrap_patients(
    patients: Sequence[str], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Row masks (in-bag, out-of-bag) of a patient-level bootstrap sample.

    In-bag rows are drawn with replacement by patient (returned as row indices, repeats
    kept); out-of-bag rows are those of patients never drawn (the early-stopping set).
    """
    ids = np.asarray(patients)
    unique = np.unique(ids)
    drawn = rng.choice(unique, size=len(unique), replace=True)
    rows = {p: np.flatnonzero(ids == p) for p in unique}
    in_bag = np.concatenate([rows[p] for p in drawn])
    oob = np.concatenate([rows[p] for p in unique if p not in set(drawn)] or [np.array([], int)])
    if len(oob) == 0:  # tiny cohorts: validate on a copy of the bag
        oob = in_bag
    return in_bag, oob


def state_to_lists(model: Any) -> dict[str, Any]:
    """A network's weights as nested lists (JSON-free, torch.load(weights_only) safe)."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def load_mlp(
    state: dict[str, Any], n_in: int, n_out: int, config: MlpConfig, *, device: str = "cpu"
) -> Any:
    model = build_mlp(n_in, n_out, config)
    model.load_state_dict(state, strict=True)
    model.to(torch_device(device))
    model.eval()
    return model


@dataclass(frozen=True)
class Checkpoint:
    """A verified artefact's checkpoint: its contents, MLP settings and standardiser."""

    data: dict[str, Any]
    config: dict[str, Any]
    mlp: MlpConfig
    standardiser: Standardiser
    label: str  # "<name> <version>", for messages


def load_checkpoint(folder: Any, expected_sha256: str | None, name: str, fmt: str) -> Checkpoint:
    """Verify the artefact in ``folder`` (hash, version: :func:`models.registry.load_artifact`),
    check it holds a ``name`` model in format ``fmt``, and read its checkpoint (tensors only,
    ``weights_only``)."""
    from pathlib import Path

    import torch

    artifact = load_artifact(Path(folder), expected_sha256)
    if artifact.name != name:
        raise ModelError(f"{artifact.folder} holds {artifact.name}, not a {name} model")
    try:
        ckpt = torch.load(str(artifact.weights_path), map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, ValueError) as err:
        raise ModelError(f"{artifact.weights_path} is not a loadable checkpoint: {err}") from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != fmt:
        raise ModelError(f"{artifact.weights_path} is not a {fmt} checkpoint")
    cfg = dict(ckpt["config"])
    return Checkpoint(
        ckpt,
        cfg,
        MlpConfig(**cfg["mlp"]),
        Standardiser(**ckpt["standardiser"]),
        f"{artifact.name} {artifact.version}",
    )


def load_members(ckpt: Checkpoint, n_out: int, *, device: str = "cpu") -> list[Any]:
    """The ensemble's networks from ``ckpt``, on ``device``; a shape mismatch is a
    :class:`ModelError`."""

    try:
        return [
            load_mlp(s, len(ckpt.standardiser.names), n_out, ckpt.mlp, device=device)
            for s in ckpt.data["members"]
        ]
    except RuntimeError as err:
        raise ModelError(f"{ckpt.label}: weights do not fit: {err}") from err
