"""The CT "virtual biopsy": from a scan's features to the pathology immune signature.

Teacher-student: on timepoints where a biopsy and a scan are paired (the scan nearest the
biopsy within :data:`PAIR_WINDOW_DAYS`), the pathology model's output on the slide (phenotype
probabilities and TIL density) is the target; ground truth is used only to evaluate.

Inputs are the imaging features whose names start with one of ``SignatureConfig.inputs``:
by default the burden, the enhancement pattern (where in the lesion the contrast goes) and
the spectral features (``spec_*``, present when the scan is a PCCT study), plus an indicator
of the spectral block's presence. The 160-odd whole-lesion radiomics features and the
peritumoural ring are left out by default: on a few hundred paired scans the radiomics let
the networks fit noise (5-fold cross-validation on the training cohort only, 3 repeats,
balanced accuracy 0.62 with every feature, 0.72 with the ring, 0.74 without), but a site
with more paired scans can add ``"rad_"`` or ``"peri_"`` back.
During training the spectral block of PCCT rows is hidden at random, so the model learns to
work with and without it; a conventional CT simply has it missing.

The model is an ensemble of small networks over patient-level bootstrap samples; the spread
of its members is the uncertainty of the immune score. Its phenotype *call*
(:meth:`CtSignatureModel.phenotype_call`) divides the probabilities by the phenotypes'
frequencies in training before taking the largest, the decision that maximises balanced
accuracy; the stored probabilities are left as predicted.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from models.exceptions import InsufficientDataError
from models.response.history import PHENOTYPE_NAMES, History, Scan, Signature
from models.response.nets import (
    MlpConfig,
    Standardiser,
    bootstrap_patients,
    fit_mlp,
    load_checkpoint,
    load_members,
    state_to_lists,
)
from models.runtime import module_device

MODEL_NAME = "ct-signature"
WEIGHTS_FILE = "ct-signature.pt"
FORMAT = "irtmon-ct-signature/1"
PAIR_WINDOW_DAYS = 45.0
SPECTRAL_PREFIX = "spec_"


@dataclass(frozen=True)
class Pair:
    """A scan and the teacher's signature of the biopsy paired with it."""

    patient: str
    scan: Scan
    teacher: Signature


def pair_scans(histories: Mapping[str, History]) -> list[Pair]:
    """Each biopsy with the patient's scan nearest in time (within the window), if any."""
    pairs = []
    window = timedelta(days=PAIR_WINDOW_DAYS)
    for patient, h in sorted(histories.items()):
        for b in h.biopsies:
            near = [s for s in h.scans if abs(s.at - b.at) <= window]
            if near:
                scan = min(near, key=lambda s: abs(s.at - b.at))
                pairs.append(Pair(patient, scan, b.signature))
    return pairs


DEFAULT_INPUTS = ("burden_", "enh_", SPECTRAL_PREFIX)


@dataclass(frozen=True)
class SignatureConfig:
    """Training settings of the virtual biopsy."""

    members: int = 5
    inputs: tuple[str, ...] = DEFAULT_INPUTS  # feature-name prefixes
    spectral_dropout: float = 0.5
    til_weight: float = 0.5
    seed: int = 1
    mlp: MlpConfig = field(
        default_factory=lambda: MlpConfig(hidden=32, dropout=0.3, weight_decay=1e-2)
    )


class CtSignatureModel:
    """A trained virtual biopsy: feature names, scaling and an ensemble of networks."""

    def __init__(
        self,
        standardiser: Standardiser,
        spectral: list[bool],
        til_centre: float,
        til_scale: float,
        members: list[Any],
        config: SignatureConfig,
        prior: Sequence[float] | None = None,
    ) -> None:
        self.prior = np.asarray(prior if prior is not None else [1 / 3] * 3, dtype=float)
        self.standardiser = standardiser
        self.spectral = np.asarray(spectral, dtype=bool)
        self.til_centre = til_centre
        self.til_scale = til_scale
        self.members = members
        self.config = config

    @property
    def names(self) -> list[str]:
        return self.standardiser.names

    def matrix(self, scans: Sequence[Scan], use_spectral: bool = True) -> np.ndarray:
        """Scaled input rows of ``scans`` (spectral inputs missing unless PCCT and allowed)."""
        raw = feature_matrix(scans, self.names[:-1], use_spectral)
        return self.standardiser.transform(raw)

    def predict(
        self, scans: Sequence[Scan], use_spectral: bool = True
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Phenotype probabilities (n, 3), TIL density (n,), immune-score spread (n,)."""
        import torch

        x = torch.as_tensor(self.matrix(scans, use_spectral), device=module_device(self.members[0]))
        probs, tils = [], []
        with torch.no_grad():
            for m in self.members:
                out = m(x)
                probs.append(torch.softmax(out[:, :3], dim=1).cpu().numpy())
                tils.append(out[:, 3].cpu().numpy() * self.til_scale + self.til_centre)
        p = np.mean(probs, axis=0)
        til = np.expm1(np.clip(np.mean(tils, axis=0), 0.0, 12.0))
        scores = np.array([pm[:, 0] + 0.5 * pm[:, 1] for pm in probs])
        return p, til, scores.std(axis=0)

    def phenotype_call(self, probs: np.ndarray) -> np.ndarray:
        """Index (into :data:`PHENOTYPE_NAMES`) of each row's phenotype: the largest
        probability over the phenotype's training frequency (balanced decision)."""
        return np.asarray(probs / np.maximum(self.prior, 1e-6)).argmax(axis=1)

    def signature(self, scan: Scan) -> Signature:
        p, til, _ = self.predict([scan])
        return Signature(float(p[0, 0]), float(p[0, 1]), float(p[0, 2]), float(til[0]))


def feature_matrix(
    scans: Sequence[Scan], names: Sequence[str], use_spectral: bool = True
) -> np.ndarray:
    """Raw feature rows plus the spectral-presence column (NaN where missing)."""
    x = np.full((len(scans), len(names) + 1), np.nan)
    for i, s in enumerate(scans):
        spectral_ok = use_spectral and s.pcct
        for j, name in enumerate(names):
            if name.startswith(SPECTRAL_PREFIX) and not spectral_ok:
                continue
            v = s.features.get(name)
            if v is not None and math.isfinite(v):
                x[i, j] = v
        x[i, -1] = float(spectral_ok and any(n.startswith(SPECTRAL_PREFIX) for n in names))
    return x


def _feature_names(scans: Sequence[Scan]) -> list[str]:
    names: set[str] = set()
    for s in scans:
        names.update(k for k, v in s.features.items() if v is not None)
    return sorted(names)


def fit_signature(
    pairs: Sequence[Pair], config: SignatureConfig | None = None, *, device: str = "cpu"
) -> CtSignatureModel:
    """Fit the ensemble on paired scans (patient-level bootstrap per member); the networks
    train on ``device`` (:func:`models.runtime.device`) and come back on the CPU."""
    import torch

    config = config or SignatureConfig()
    if len(pairs) < 8:
        raise InsufficientDataError(f"only {len(pairs)} paired scans; the virtual biopsy needs 8+")
    scans = [p.scan for p in pairs]
    names = [n for n in _feature_names(scans) if n.startswith(tuple(config.inputs))]
    if not names:
        raise InsufficientDataError(
            f"no feature of the paired scans starts with {list(config.inputs)}"
        )
    raw = feature_matrix(scans, names)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        positive = np.nanmin(raw, axis=0) >= 0
        spread = np.nanpercentile(raw, 90, axis=0) / np.maximum(
            np.nanpercentile(raw, 10, axis=0), 1e-9
        )
    log_cols = list(positive & (spread > 10.0))
    std = Standardiser.fit(raw, [*names, "has_spectral"], [*log_cols[:-1], False])
    x = std.transform(raw)
    spectral = [n.startswith(SPECTRAL_PREFIX) for n in names] + [True]
    spectral_idx = torch.as_tensor(np.flatnonzero(spectral))
    probs = np.array(
        [[p.teacher.p_inflamed, p.teacher.p_excluded, p.teacher.p_desert] for p in pairs]
    )
    log_til = np.log1p(np.array([max(p.teacher.til_density, 0.0) for p in pairs]))
    til_centre, til_scale = float(log_til.mean()), float(log_til.std() or 1.0)
    y = np.column_stack([probs, (log_til - til_centre) / til_scale]).astype(np.float32)

    def loss(out: Any, target: Any) -> Any:
        ce = -(target[:, :3] * torch.log_softmax(out[:, :3], dim=1)).sum(dim=1).mean()
        return ce + config.til_weight * torch.mean((out[:, 3] - target[:, 3]) ** 2)

    def augment(xb: Any, gen: Any) -> Any:
        if config.spectral_dropout <= 0:
            return xb
        hide = torch.rand(xb.shape[0], generator=gen) < config.spectral_dropout
        xb = xb.clone()
        rows = hide.nonzero().flatten().to(xb.device)
        if len(rows):
            xb[rows.unsqueeze(1), spectral_idx.to(xb.device).unsqueeze(0)] = 0.0
        return xb

    rng = np.random.default_rng(config.seed)
    members = []
    patients = [p.patient for p in pairs]
    for k in range(config.members):
        bag, oob = bootstrap_patients(patients, rng)
        model, _, _ = fit_mlp(
            x[bag],
            y[bag],
            x[oob],
            y[oob],
            4,
            loss,
            config.mlp,
            config.seed * 100 + k,
            augment,
            device=device,
        )
        members.append(model)
    prior = probs.mean(axis=0)
    return CtSignatureModel(std, spectral, til_centre, til_scale, members, config, prior)


def save_signature(model: CtSignatureModel, path: Path) -> Path:
    import torch

    torch.save(
        {
            "format": FORMAT,
            "standardiser": model.standardiser.to_dict(),
            "spectral": model.spectral.tolist(),
            "til": [model.til_centre, model.til_scale],
            "prior": model.prior.tolist(),
            "config": {**asdict(model.config), "mlp": asdict(model.config.mlp)},
            "members": [state_to_lists(m) for m in model.members],
        },
        path,
    )
    return path


def load_signature(
    folder: Path | str, expected_sha256: str | None = None, *, device: str = "cpu"
) -> CtSignatureModel:
    """Load a verified ``ct-signature`` artefact (hash and version checked by the registry);
    its networks are read onto the CPU and run on ``device``."""
    ckpt = load_checkpoint(folder, expected_sha256, MODEL_NAME, FORMAT)
    cfg = {**ckpt.config, "mlp": ckpt.mlp}
    cfg["inputs"] = tuple(cfg.get("inputs") or ("",))  # earlier versions used every feature
    config = SignatureConfig(**cfg)
    members = load_members(ckpt, 4, device=device)
    return CtSignatureModel(
        ckpt.standardiser,
        ckpt.data["spectral"],
        *ckpt.data["til"],
        members,
        config,
        ckpt.data.get("prior"),
    )


def phenotype_index(names: Sequence[str]) -> np.ndarray:
    return np.array([PHENOTYPE_NAMES.index(n) for n in names])
