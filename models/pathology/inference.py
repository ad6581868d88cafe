"""Slide in, immune signature out: the one call the biopsy agent makes.

:func:`analyse_slide` is a pure function of a slide file and a model folder. Inputs (paths,
numbers) and the :class:`PathologyResult` it returns pickle, so a worker runs it in a process
pool; each process loads a model once and keeps it in a cache keyed by the artefact's resolved
path and weights sha256 (a changed file is a different key, and ``load_artifact`` refuses one
whose hash no longer matches its card).

Consumes: a pyramidal TIFF / SVS path, a ``pathology-mil`` artefact folder.
Produces: phenotype probabilities, TIL density, uncertainty (normalised entropy and MC-dropout
spread), the attention heat map (PNG bytes, optionally written to a file) and provenance.
Raises: ``UnreadableInputError`` (not a slide), ``InsufficientDataError`` (too little tissue),
``ModelError`` (missing, altered or incompatible model).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from models.exceptions import ModelError
from models.pathology.encoders import Encoder, encoder_from_spec
from models.pathology.heatmap import attention_grid, heatmap_png, write_heatmap
from models.pathology.mil import PHENOTYPES, GatedAttentionMIL, MILConfig
from models.pathology.slide import TileSpec, read_tiles
from models.registry import ModelArtifact, load_artifact
from models.runtime import set_threads
from schemas.enums import ImmunePhenotype

_FORMAT = "irtmon-pathology-mil/1"


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
        Most probable immune phenotype.
    probabilities
        Probability of each phenotype (``"inflamed"``, ``"excluded"``, ``"desert"``).
    til_score
        Predicted intratumoral TIL density, lymphocytes per mm² of tumour.
    entropy
        Entropy of the phenotype probabilities over its maximum (0 = certain, 1 = uniform).
    mc_dropout_std
        Mean standard deviation of the phenotype probabilities over MC-dropout passes.
    til_log_std
        Standard deviation of ``log1p(til_score)`` over MC-dropout passes.
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


def load_pipeline(
    artifact_folder: Path | str, expected_sha256: str | None = None
) -> LoadedPipeline:
    """Load (or reuse, in this process) the model of an artefact folder.

    The folder is verified every call (its weights hash must match its card, and
    ``expected_sha256`` when given); the torch model is built once per path and hash.
    """
    folder = Path(artifact_folder).resolve()
    artifact = load_artifact(folder, expected_sha256)
    return _load_cached(str(folder), artifact.sha256)


@lru_cache(maxsize=4)
def _load_cached(folder: str, sha256: str) -> LoadedPipeline:
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
    model.eval()
    encoder = encoder_from_spec(ckpt["encoder"])
    if encoder.dim != model.config.in_dim:
        raise ModelError(
            f"encoder {encoder.name} gives {encoder.dim} features, the model expects "
            f"{model.config.in_dim}"
        )
    return LoadedPipeline(artifact, model, encoder, TileSpec(**ckpt["tiles"]))


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

    Returns
    -------
    PathologyResult

    Raises
    ------
    UnreadableInputError
        The slide cannot be read.
    InsufficientDataError
        The slide holds too little tissue to analyse.
    ModelError
        The model folder is missing, altered or incompatible.
    """
    import torch

    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    pipe = load_pipeline(artifact_folder, expected_sha256)
    seconds["load"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    tiles = read_tiles(path, pipe.tile_spec)
    seconds["read"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    feats = pipe.encoder.encode(tiles.tiles, pipe.tile_spec.mpp)
    seconds["encode"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    x = torch.as_tensor(feats, dtype=torch.float32)
    model = pipe.model
    with torch.no_grad():
        model.eval()
        out = model(x)
        probs = torch.softmax(out.logits, dim=1)[0].numpy().astype(np.float64)
        til = float(model.til_to_density(out.til)[0])
        attention = out.attention[0].numpy().astype(np.float64)
        mc_std = til_std = 0.0
        if mc_samples > 0:
            with torch.random.fork_rng():
                torch.manual_seed(0)
                model.train()
                try:
                    mc = model(x.unsqueeze(0).expand(mc_samples, -1, -1))
                finally:
                    model.eval()
            mc_probs = torch.softmax(mc.logits, dim=1).numpy()
            mc_std = float(mc_probs.std(axis=0).mean())
            til_std = float((mc.til * model.til_std).numpy().std())
    entropy = float(-(probs * np.log(np.clip(probs, 1e-12, 1.0))).sum() / np.log(len(probs)))
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
        probabilities={str(p): float(v) for p, v in zip(PHENOTYPES, probs, strict=True)},
        til_score=til,
        entropy=entropy,
        mc_dropout_std=mc_std,
        til_log_std=til_std,
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
