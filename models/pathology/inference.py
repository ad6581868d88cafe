"""Slide in, immune signature out: the one call the biopsy agent makes.

:func:`analyse_slide` is a pure function of a slide file and a model folder. Inputs (paths,
numbers) and the :class:`PathologyResult` it returns pickle, so a worker runs it in a process
pool; each process loads a model once and keeps it in a cache keyed by the artefact's resolved
path and weights sha256 (a changed file is a different key, and ``load_artifact`` refuses one
whose hash no longer matches its card).

Consumes: a pyramidal TIFF / SVS path, a ``pathology-mil`` artefact folder.
Produces: phenotype probabilities, TIL density, uncertainty (normalised entropy and MC-dropout
spread), the stain check, the out-of-distribution measure, the attention heat map (PNG bytes,
optionally written to a file) and provenance.
Raises: ``UnreadableInputError`` (not a slide; its subclass ``LimitExceededError`` for a slide
past a reading limit), ``InsufficientDataError`` (too little tissue: "insufficient tissue"),
``UnsuitableInputError`` (not H&E), ``ModelError`` (missing, altered or incompatible model).

Before the model is trusted with a slide, two checks run on the tiles it reads:

- the stain check (:func:`~models.pathology.stain.check_stain`): a slide that is not H&E (for
  example immunohistochemistry, DAB and haematoxylin) is refused with ``UnsuitableInputError``
  naming the reason, or, with ``stain_policy=StainPolicy.FLAG``, scored with its stain outcome
  recorded and its uncertainty widened to the maximum (weight 1 below);
- the out-of-distribution measure (:mod:`models.pathology.ood`): the Mahalanobis distance of the
  slide's bag embedding from the training slides, its percentile among them, and a weight ``w``
  from 0 (within the training slides' 95th-percentile distance) to 1 (twice that or more).

How the uncertainty is widened, with ``w`` the larger of the OOD weight and 1 for a flagged
non-H&E slide (``model_*`` fields keep the model's own values):

- ``probabilities = (1 - w) * model_probabilities + w * prior``, ``prior`` the phenotype
  frequencies of the training slides (uniform for a model saved without them); ``entropy``
  follows the widened probabilities, ``phenotype`` stays the model's most probable one (at
  ``w = 1`` the widened probabilities no longer single one out);
- ``til_log_std = sqrt(model_til_log_std**2 + (w * s_train)**2)``, ``s_train`` the spread of
  ``log1p(TIL density)`` over the training slides (the model's own normalisation): at ``w = 1``
  the TIL interval is as wide as the training population;
- ``til_score`` and ``mc_dropout_std`` stay the model's.

A model saved before the reference existed has no reference: its slides get the status
"unknown" and ``w = 0`` (no widening), never a crash.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from models.exceptions import ModelError, UnsuitableInputError
from models.limits import ReadLimits
from models.pathology.encoders import Encoder, encoder_from_spec
from models.pathology.heatmap import attention_grid, heatmap_png, write_heatmap
from models.pathology.mil import PHENOTYPES, GatedAttentionMIL, MILConfig
from models.pathology.ood import UNKNOWN, OodReference, OodScore
from models.pathology.slide import TileSpec, glass_colour, read_tiles
from models.pathology.stain import StainCheck, StainOutcome, check_stain
from models.registry import ModelArtifact, load_artifact
from models.runtime import device as torch_device
from models.runtime import module_device, set_threads
from schemas.enums import ImmunePhenotype

_FORMAT = "irtmon-pathology-mil/1"


class StainPolicy(StrEnum):
    """What :func:`analyse_slide` does with a slide the stain check finds not H&E."""

    REFUSE = "refuse"
    FLAG = "flag"


@dataclass(frozen=True)
class Provenance:
    """Where a pathology result came from."""

    model_name: str
    model_version: str
    model_sha256: str
    encoder: str
    encoder_kind: str
    tiles_used: int
    tiles_with_tissue: int
    magnification: float
    mpp: float
    tile_px: int
    pyramid_level: int
    slide_dimensions: tuple[int, int]
    mc_samples: int


@dataclass(frozen=True)
class PathologyResult:
    """The immune signature of one slide.

    Attributes
    ----------
    slide
        The slide path as given.
    phenotype
        The model's most probable immune phenotype (its widened probability is in
        ``probabilities``).
    probabilities
        Probability of each phenotype (``"inflamed"``, ``"excluded"``, ``"desert"``), widened
        towards the training frequencies by the OOD weight (the module docstring says how);
        equal to ``model_probabilities`` for a slide within the training distribution.
    til_score
        Predicted intratumoral TIL density, lymphocytes per mm² of tumour.
    entropy
        Entropy of ``probabilities`` over its maximum (0 = certain, 1 = uniform).
    mc_dropout_std
        Mean standard deviation of the phenotype probabilities over MC-dropout passes.
    til_log_std
        Spread of ``log1p(til_score)``: the MC-dropout spread widened by the OOD weight.
    stain
        The stain check (outcome ``h&e`` / ``doubtful`` / ``not h&e``, fractions, reason).
    ood
        The out-of-distribution measure (status, distance, percentile, weight).
    model_probabilities, model_til_log_std
        The model's own probabilities and MC-dropout TIL spread, before widening.
    attention_grid
        Attention on the slide's tile grid (rows, cols), NaN where no tile was used.
    heatmap_png
        The heat map over the thumbnail, PNG bytes.
    heatmap_path
        Where the PNG was written, when a path was given.
    provenance
        Model, encoder and tiling that produced the result.
    seconds
        Time spent per step (read, encode, model, heatmap).
    """

    slide: str
    phenotype: ImmunePhenotype
    probabilities: dict[str, float]
    til_score: float
    entropy: float
    mc_dropout_std: float
    til_log_std: float
    attention_grid: np.ndarray
    heatmap_png: bytes
    provenance: Provenance
    heatmap_path: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    stain: StainCheck | None = None
    ood: OodScore = UNKNOWN
    model_probabilities: dict[str, float] = field(default_factory=dict)
    model_til_log_std: float = 0.0

    @property
    def uncertainty_weight(self) -> float:
        """How far the uncertainty was widened, 0 to 1 (see the module docstring)."""
        flagged = self.stain is not None and self.stain.outcome is StainOutcome.NOT_HE
        return 1.0 if flagged else float(self.ood.weight)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (no image bytes), for events and the database."""
        from dataclasses import asdict

        return {
            "slide": self.slide,
            "phenotype": str(self.phenotype),
            "probabilities": dict(self.probabilities),
            "til_score": self.til_score,
            "entropy": self.entropy,
            "mc_dropout_std": self.mc_dropout_std,
            "til_log_std": self.til_log_std,
            "model_probabilities": dict(self.model_probabilities),
            "model_til_log_std": self.model_til_log_std,
            "uncertainty_weight": self.uncertainty_weight,
            "stain": self.stain.to_dict() if self.stain is not None else None,
            "ood": self.ood.to_dict(),
            "heatmap_path": self.heatmap_path,
            "provenance": asdict(self.provenance),
        }


@dataclass(frozen=True)
class LoadedPipeline:
    """A model with the encoder and tiling it was trained with."""

    artifact: ModelArtifact
    model: GatedAttentionMIL
    encoder: Encoder
    tile_spec: TileSpec
    ood: OodReference | None = None
    prior: np.ndarray | None = None
    """Phenotype frequencies of the training slides (None for a model saved without them)."""


def load_pipeline(
    artifact_folder: Path | str, expected_sha256: str | None = None, *, device: str = "cpu"
) -> LoadedPipeline:
    """Load (or reuse, in this process) the model of an artefact folder.

    The folder is verified every call (its weights hash must match its card, and
    ``expected_sha256`` when given); the torch model is built once per path, hash and device.
    The checkpoint is read onto the CPU (``map_location``), then the model and a checkpoint
    encoder are moved to ``device`` (:func:`models.runtime.device`).
    """
    folder = Path(artifact_folder).resolve()
    artifact = load_artifact(folder, expected_sha256)
    return _load_cached(str(folder), artifact.sha256, str(torch_device(device)))


@lru_cache(maxsize=4)
def _load_cached(folder: str, sha256: str, device: str = "cpu") -> LoadedPipeline:
    import torch

    set_threads(1)
    artifact = load_artifact(Path(folder), sha256)
    try:
        ckpt = torch.load(str(artifact.weights_path), map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, ValueError) as err:
        raise ModelError(
            f"{artifact.weights_path} is not a loadable torch checkpoint: {err}"
        ) from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != _FORMAT:
        raise ModelError(
            f"{artifact.weights_path} is not a {_FORMAT} checkpoint "
            f"(format {ckpt.get('format') if isinstance(ckpt, dict) else type(ckpt).__name__!r})"
        )
    if list(ckpt["classes"]) != [str(p) for p in PHENOTYPES]:
        raise ModelError(
            f"{artifact.name} {artifact.version} has unknown classes {ckpt['classes']}"
        )
    model = GatedAttentionMIL(MILConfig(**ckpt["config"]))
    try:
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except RuntimeError as err:
        raise ModelError(f"{artifact.name} {artifact.version}: weights do not fit: {err}") from err
    model.to(device)
    model.eval()
    encoder = encoder_from_spec(ckpt["encoder"], device=device)
    if encoder.dim != model.config.in_dim:
        raise ModelError(
            f"encoder {encoder.name} gives {encoder.dim} features, the model expects "
            f"{model.config.in_dim}"
        )
    prior = None
    raw_prior = ckpt.get("class_prior")
    if isinstance(raw_prior, list) and len(raw_prior) == len(PHENOTYPES):
        prior = np.asarray(raw_prior, dtype=np.float64)
        prior = prior / prior.sum() if prior.sum() > 0 and (prior >= 0).all() else None
    return LoadedPipeline(
        artifact,
        model,
        encoder,
        TileSpec(**ckpt["tiles"]),
        ood=OodReference.from_state(ckpt.get("ood")),
        prior=prior,
    )


def clear_cache() -> None:
    """Forget the models loaded in this process."""
    _load_cached.cache_clear()


def analyse_slide(
    path: Path | str,
    artifact_folder: Path | str,
    *,
    expected_sha256: str | None = None,
    heatmap_path: Path | str | None = None,
    mc_samples: int = 16,
    heatmap_px: int = 768,
    stain_policy: StainPolicy | str = StainPolicy.REFUSE,
    limits: ReadLimits | None = None,
    device: str = "cpu",
) -> PathologyResult:
    """Immune signature of one slide.

    Parameters
    ----------
    path
        Pyramidal TIFF or SVS slide.
    artifact_folder
        ``<models_dir>/pathology-mil/<version>`` folder (see :mod:`models.registry`).
    expected_sha256
        The registered weights hash, when the caller knows it (the database's registry).
    heatmap_path
        Also write the heat-map PNG there.
    mc_samples
        MC-dropout passes for the uncertainty (0 to skip).
    heatmap_px
        Long side of the heat-map image.
    stain_policy
        ``refuse`` (default): a slide the stain check finds not H&E raises
        ``UnsuitableInputError``; ``flag``: it is scored, its stain outcome recorded and its
        uncertainty widened to the maximum.
    limits
        Reading limits (:class:`~models.limits.ReadLimits`; default its defaults).
    device
        Where torch runs the encoder and the model (:func:`models.runtime.device`).

    Returns
    -------
    PathologyResult

    Raises
    ------
    UnreadableInputError
        The slide cannot be read.
    LimitExceededError
        The slide is past a reading limit (pixel count, resolution range, no pyramid).
    InsufficientDataError
        The slide holds too little tissue to analyse ("insufficient tissue").
    UnsuitableInputError
        The slide is not H&E (with the default ``stain_policy``), or scanned too coarsely.
    ModelError
        The model folder is missing, altered or incompatible.
    """
    import torch

    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    pipe = load_pipeline(artifact_folder, expected_sha256, device=device)
    seconds["load"] = time.perf_counter() - t0

    policy = StainPolicy(stain_policy)
    t0 = time.perf_counter()
    tiles = read_tiles(path, pipe.tile_spec, limits=limits)
    seconds["read"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    stain = check_stain(tiles.tiles, glass=glass_colour(tiles.thumbnail))
    if stain.outcome is StainOutcome.NOT_HE and policy is StainPolicy.REFUSE:
        raise UnsuitableInputError(
            f"slide {path}: {stain.reason}; the {pipe.artifact.name} model reads H&E only"
        )
    seconds["stain"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    feats = pipe.encoder.encode(tiles.tiles, pipe.tile_spec.mpp)
    seconds["encode"] = time.perf_counter() - t0
    ood = pipe.ood.score(feats) if pipe.ood is not None else UNKNOWN

    t0 = time.perf_counter()
    model = pipe.model
    on = module_device(model)
    x = torch.as_tensor(feats, dtype=torch.float32, device=on)
    with torch.no_grad():
        model.eval()
        out = model(x)
        probs = torch.softmax(out.logits, dim=1)[0].cpu().numpy().astype(np.float64)
        til = float(model.til_to_density(out.til)[0])
        attention = out.attention[0].cpu().numpy().astype(np.float64)
        mc_std = til_std = 0.0
        if mc_samples > 0:
            gpus = [on.index or 0] if on.type == "cuda" else []
            with torch.random.fork_rng(devices=gpus):
                torch.manual_seed(0)
                model.train()
                try:
                    mc = model(x.unsqueeze(0).expand(mc_samples, -1, -1))
                finally:
                    model.eval()
            mc_probs = torch.softmax(mc.logits, dim=1).cpu().numpy()
            mc_std = float(mc_probs.std(axis=0).mean())
            til_std = float((mc.til * model.til_std).cpu().numpy().std())
        til_train_std = float(model.til_std)
    weight = 1.0 if stain.outcome is StainOutcome.NOT_HE else float(ood.weight)
    prior = pipe.prior if pipe.prior is not None else np.full(len(probs), 1.0 / len(probs))
    widened = (1.0 - weight) * probs + weight * prior
    til_std_widened = float(np.hypot(til_std, weight * til_train_std))
    entropy = float(-(widened * np.log(np.clip(widened, 1e-12, 1.0))).sum() / np.log(len(widened)))
    seconds["model"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    grid = attention_grid(tiles.coords, attention, tiles.tile_size_level0, tiles.dimensions)
    png = heatmap_png(tiles.thumbnail, grid, max_px=heatmap_px)
    written = None
    if heatmap_path is not None:
        written = str(write_heatmap(Path(heatmap_path), png))
    seconds["heatmap"] = time.perf_counter() - t0

    spec = pipe.tile_spec
    return PathologyResult(
        slide=str(path),
        phenotype=PHENOTYPES[int(np.argmax(probs))],
        probabilities={str(p): float(v) for p, v in zip(PHENOTYPES, widened, strict=True)},
        til_score=til,
        entropy=entropy,
        mc_dropout_std=mc_std,
        til_log_std=til_std_widened,
        stain=stain,
        ood=ood,
        model_probabilities={str(p): float(v) for p, v in zip(PHENOTYPES, probs, strict=True)},
        model_til_log_std=til_std,
        attention_grid=grid.astype(np.float32),
        heatmap_png=png,
        heatmap_path=written,
        provenance=Provenance(
            model_name=pipe.artifact.name,
            model_version=pipe.artifact.version,
            model_sha256=pipe.artifact.sha256,
            encoder=pipe.encoder.name,
            encoder_kind=pipe.encoder.kind,
            tiles_used=tiles.n_tiles,
            tiles_with_tissue=tiles.n_candidates,
            magnification=round(10.0 / spec.mpp, 3),
            mpp=spec.mpp,
            tile_px=spec.tile_px,
            pyramid_level=tiles.level,
            slide_dimensions=tiles.dimensions,
            mc_samples=mc_samples,
        ),
        seconds={k: round(v, 4) for k, v in seconds.items()},
    )
