"""Tile encoders behind one interface: tiles in, one feature vector per tile out.

Every encoder has a ``kind`` (its registry key), a ``name``, a ``dim``, ``encode(tiles, mpp)``
and ``spec()``, a JSON-able description from which :func:`encoder_from_spec` rebuilds it (the
trained MIL model stores it, so inference uses the encoder it was trained with).

- :class:`HandcraftedEncoder` needs no weights: nuclear morphology from colour deconvolution
  (Ruifrok-Johnston haematoxylin / eosin, :func:`skimage.color.rgb2hed`), with lymphocytes
  counted as small, round, dark haematoxylin blobs.
- :class:`CheckpointEncoder` runs a pathology foundation model (or any CNN / ViT) from a local
  checkpoint the user gives: a ``torch.export`` program (``.pt2``), a TorchScript file, or a
  state dict plus a ``module:callable`` that builds the architecture. Nothing is downloaded.

A new encoder is one class with a ``kind`` attribute, registered in :data:`ENCODERS`.
"""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
from scipy import ndimage
from skimage.color import rgb2hed

from models.exceptions import ModelError
from models.registry import sha256_file
from models.runtime import device as torch_device
from models.runtime import set_threads

_LOG_ADJUST = float(-np.log(1e-6))  # rgb2hed divides optical density by this
_NUCLEUS_OD = 0.6  # haematoxylin optical density (natural log) of any nucleus
_DARK_OD = 1.3
_LYMPHOCYTE_OD = 1.5  # lymphocytes are the darkest, smallest nuclei
_TISSUE_OD = 0.25


@runtime_checkable
class Encoder(Protocol):
    """What the MIL pipeline needs of a tile encoder."""

    kind: ClassVar[str]
    name: str

    @property
    def dim(self) -> int:
        """Length of one tile's feature vector."""
        ...

    def encode(self, tiles: np.ndarray, mpp: float) -> np.ndarray:
        """``(n, h, w, 3)`` uint8 RGB tiles at ``mpp`` µm/px -> ``(n, dim)`` float32."""
        ...

    def spec(self) -> dict[str, Any]:
        """A JSON-able description that :func:`encoder_from_spec` turns back into the encoder."""
        ...


class HandcraftedEncoder:
    """Nuclei and lymphocyte morphology from haematoxylin-eosin colour deconvolution.

    Per tile: tissue fraction; haematoxylin and eosin optical density (mean, spread, 90th
    percentile); nucleus area fraction; densities (per mm² of tissue, log) of all nuclei, dark
    nuclei and lymphocytes; mean nucleus area; large-nucleus and lymphocyte fractions; coarse
    haematoxylin texture. Works with no weights at all.

    Parameters
    ----------
    lymphocyte_od
        Haematoxylin optical density (natural log) above which a blob counts as a lymphocyte.
    lymphocyte_max_um2
        Largest dark-blob area, in µm², that counts as one lymphocyte; a larger blob counts as
        ``round(area / lymphocyte_max_um2)`` touching lymphocytes.
    """

    kind: ClassVar[str] = "handcrafted"
    FEATURES: ClassVar[tuple[str, ...]] = (
        "tissue_fraction",
        "h_mean",
        "h_std",
        "h_p90",
        "e_mean",
        "e_std",
        "nucleus_area_fraction",
        "log_nuclei_per_mm2",
        "log_dark_nuclei_per_mm2",
        "log_lymphocytes_per_mm2",
        "mean_nucleus_um2",
        "large_nucleus_fraction",
        "lymphocyte_fraction",
        "h_coarse_std",
        "h_coarse_mean",
        "lymphocyte_area_fraction",
    )

    def __init__(self, *, lymphocyte_od: float = _LYMPHOCYTE_OD, lymphocyte_max_um2: float = 6.0):
        self.lymphocyte_od = float(lymphocyte_od)
        self.lymphocyte_max_um2 = float(lymphocyte_max_um2)
        self.name = "handcrafted-hed-v1"

    @property
    def dim(self) -> int:
        """Number of features per tile."""
        return len(self.FEATURES)

    def spec(self) -> dict[str, Any]:
        """Rebuildable description."""
        return {
            "kind": self.kind,
            "name": self.name,
            "lymphocyte_od": self.lymphocyte_od,
            "lymphocyte_max_um2": self.lymphocyte_max_um2,
        }

    def encode(self, tiles: np.ndarray, mpp: float) -> np.ndarray:
        """Features of each tile, ``(n, 16)`` float32."""
        tiles = _check_tiles(tiles)
        out = np.zeros((len(tiles), self.dim), dtype=np.float32)
        for k, tile in enumerate(tiles):
            out[k] = self._one(tile, mpp)
        return out

    def _one(self, tile: np.ndarray, mpp: float) -> np.ndarray:
        hed = rgb2hed(tile) * _LOG_ADJUST  # natural-log optical density per stain
        h, e = hed[..., 0], hed[..., 1]
        od = -np.log((tile.astype(np.float32) + 1.0) / 256.0).sum(axis=2)
        tissue = od > _TISSUE_OD
        px_um2 = mpp * mpp
        tissue_mm2 = max(float(tissue.sum()) * px_um2 * 1e-6, 1e-4)
        hs = ndimage.gaussian_filter(h, 1.0)
        hv, ev = h[tissue], e[tissue]
        if hv.size == 0:
            hv = ev = np.zeros(1)

        nuclei, n_nuc = ndimage.label(hs > _NUCLEUS_OD)
        areas = (
            ndimage.sum(np.ones_like(hs), nuclei, np.arange(1, n_nuc + 1)) * px_um2
            if n_nuc
            else np.zeros(0)
        )
        _dark, n_dark = ndimage.label(hs > _DARK_OD)
        lym_mask = hs > self.lymphocyte_od
        lym, n_lym_blobs = ndimage.label(lym_mask)
        if n_lym_blobs:
            lym_areas = ndimage.sum(lym_mask, lym, np.arange(1, n_lym_blobs + 1)) * px_um2
            lym_areas = lym_areas[lym_areas >= 0.5]
            # a blob larger than one lymphocyte counts as several touching ones
            n_lym = float(np.maximum(1.0, np.round(lym_areas / self.lymphocyte_max_um2)).sum())
        else:
            n_lym = 0.0
        coarse = ndimage.gaussian_filter(h, 8.0 / mpp)
        return np.array(
            [
                float(tissue.mean()),
                float(hv.mean()),
                float(hv.std()),
                float(np.percentile(hv, 90)),
                float(ev.mean()),
                float(ev.std()),
                float((hs > _NUCLEUS_OD).mean()),
                float(np.log1p(n_nuc / tissue_mm2)),
                float(np.log1p(n_dark / tissue_mm2)),
                float(np.log1p(n_lym / tissue_mm2)),
                float(areas.mean()) / 100.0 if areas.size else 0.0,
                float((areas > 40.0).mean()) if areas.size else 0.0,
                float(n_lym / max(n_nuc, 1)),
                float(coarse[tissue].std()) if tissue.any() else 0.0,
                float(coarse[tissue].mean()) if tissue.any() else 0.0,
                float(lym_mask.mean()) * 100.0,
            ],
            dtype=np.float32,
        )

    def lymphocytes_per_mm2(self, features: np.ndarray) -> np.ndarray:
        """Lymphocyte density per mm² of tissue, read back from encoded features."""
        return np.expm1(features[:, self.FEATURES.index("log_lymphocytes_per_mm2")])


def lymphocyte_density(
    tiles: np.ndarray, mpp: float, features: np.ndarray | None = None
) -> np.ndarray:
    """Detected lymphocytes per mm² of tissue in each tile (the handcrafted detector).

    Used to guide the heat-map attention during training, whatever encoder made the features;
    ``features`` of a :class:`HandcraftedEncoder` are reused when given.
    """
    enc = HandcraftedEncoder()
    feats = features if features is not None else enc.encode(tiles, mpp)
    return enc.lymphocytes_per_mm2(feats)


class CheckpointEncoder:
    """A pathology foundation model (or any torch image model) from a local checkpoint.

    Parameters
    ----------
    checkpoint
        A ``torch.export`` program (``.pt2``, ``torch.export.save``; export it with a dynamic
        batch dimension), a TorchScript file (``torch.jit.save``), or a state dict
        (``torch.save``; optionally nested under ``"state_dict"`` or ``"model"``) when ``arch``
        is given.
    arch
        ``"package.module:callable"`` returning the ``torch.nn.Module`` the state dict fits;
        not needed for TorchScript.
    input_px
        Tiles are resized to this side before the forward pass (224 for most ViTs).
    mean, std
        Per-channel normalisation of ``[0, 1]`` RGB (ImageNet by default).
    batch_size
        Tiles per forward pass.
    name
        Name recorded in provenance; default the checkpoint's file name.
    expected_sha256
        When given, the checkpoint must have this hash.
    device
        Where the network runs (:func:`models.runtime.device`: ``cpu``, ``cuda``, ``auto``);
        the checkpoint is read onto the CPU, then moved there. Not part of :meth:`spec`: the
        same encoder, wherever it runs.

    Raises
    ------
    ModelError
        The checkpoint is missing, has another hash, or cannot be loaded.
    """

    kind: ClassVar[str] = "checkpoint"

    def __init__(
        self,
        checkpoint: Path | str,
        *,
        arch: str | None = None,
        input_px: int = 224,
        mean: tuple[float, float, float] = (0.485, 0.456, 0.406),
        std: tuple[float, float, float] = (0.229, 0.224, 0.225),
        batch_size: int = 32,
        name: str | None = None,
        expected_sha256: str | None = None,
        device: str = "cpu",
    ):

        self.checkpoint = Path(checkpoint)
        if not self.checkpoint.is_file():
            raise ModelError(
                f"encoder checkpoint {self.checkpoint} does not exist; give the path of a local "
                "TorchScript or state-dict file (weights are never downloaded)"
            )
        self.sha256 = sha256_file(self.checkpoint)
        if expected_sha256 is not None and expected_sha256 != self.sha256:
            raise ModelError(
                f"encoder checkpoint {self.checkpoint} has hash {self.sha256[:12]}, expected "
                f"{expected_sha256[:12]}: it is not the checkpoint the model was trained with"
            )
        self.arch = arch
        self.input_px = int(input_px)
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self.batch_size = int(batch_size)
        self.name = name or self.checkpoint.stem
        self.device = torch_device(device)
        self._module = self._load()
        self._dim = int(self._forward(np.zeros((1, 8, 8, 3), dtype=np.uint8)).shape[1])

    def _load(self) -> Any:
        import torch

        set_threads()
        if self.checkpoint.suffix == ".pt2":
            try:
                program = torch.export.load(str(self.checkpoint))
                if self.device.type != "cpu":  # the graph's own constants move too
                    from torch.export.passes import move_to_device_pass

                    program = move_to_device_pass(program, self.device)
                return program.module()
            except (RuntimeError, ValueError, OSError) as err:
                raise ModelError(
                    f"encoder checkpoint {self.checkpoint} is not a torch.export program: {err}"
                ) from err
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated
                module = torch.jit.load(str(self.checkpoint), map_location="cpu")
        except (RuntimeError, ValueError) as jit_err:
            if self.arch is None:
                raise ModelError(
                    f"encoder checkpoint {self.checkpoint} is not TorchScript ({jit_err}); "
                    "for a state dict, give arch='package.module:callable'"
                ) from jit_err
            module = _build_arch(self.arch)
            try:
                state = torch.load(str(self.checkpoint), map_location="cpu", weights_only=True)
                for key in ("state_dict", "model"):
                    if isinstance(state, dict) and isinstance(state.get(key), dict):
                        state = state[key]
                state = {k.removeprefix("module."): v for k, v in state.items()}
                module.load_state_dict(state, strict=True)
            except (RuntimeError, ValueError, AttributeError, OSError) as err:
                raise ModelError(
                    f"encoder checkpoint {self.checkpoint} does not load into {self.arch}: {err}"
                ) from err
        module.to(self.device)
        module.eval()
        return module

    @property
    def dim(self) -> int:
        """Embedding length, found by one forward pass at load time."""
        return self._dim

    def spec(self) -> dict[str, Any]:
        """Rebuildable description (the checkpoint path and hash, the pre-processing)."""
        return {
            "kind": self.kind,
            "name": self.name,
            "checkpoint": str(self.checkpoint.resolve()),
            "sha256": self.sha256,
            "arch": self.arch,
            "input_px": self.input_px,
            "mean": list(self.mean),
            "std": list(self.std),
            "batch_size": self.batch_size,
        }

    def encode(self, tiles: np.ndarray, mpp: float) -> np.ndarray:
        """Embeddings of each tile, ``(n, dim)`` float32."""
        tiles = _check_tiles(tiles)
        parts = [
            self._forward(tiles[i : i + self.batch_size])
            for i in range(0, len(tiles), self.batch_size)
        ]
        return np.concatenate(parts, axis=0) if parts else np.zeros((0, self.dim), np.float32)

    def _forward(self, tiles: np.ndarray) -> np.ndarray:
        import torch
        import torch.nn.functional as F  # noqa: N812

        x = torch.from_numpy(np.ascontiguousarray(tiles)).to(self.device)
        x = x.permute(0, 3, 1, 2).float() / 255.0
        if x.shape[-1] != self.input_px or x.shape[-2] != self.input_px:
            x = F.interpolate(
                x, size=(self.input_px, self.input_px), mode="bilinear", align_corners=False
            )
        mean = torch.tensor(self.mean, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=self.device).view(1, 3, 1, 1)
        with torch.inference_mode():
            y = self._module((x - mean) / std)
        if isinstance(y, (tuple, list)):
            y = y[0]
        elif isinstance(y, dict):
            y = next(iter(y.values()))
        if y.ndim > 2:
            y = y.flatten(2).mean(dim=2)  # global average pool of a feature map
        return y.float().cpu().numpy().astype(np.float32)


def _build_arch(arch: str) -> Any:
    module_name, _, attr = arch.partition(":")
    if not module_name or not attr:
        raise ModelError(f"arch must read 'package.module:callable', got {arch!r}")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ModelError(f"architecture {arch!r} cannot be imported: {err}") from err
    return factory()


def _check_tiles(tiles: np.ndarray) -> np.ndarray:
    tiles = np.asarray(tiles)
    if tiles.ndim != 4 or tiles.shape[-1] != 3 or tiles.dtype != np.uint8:
        raise ValueError(f"tiles must be (n, h, w, 3) uint8, got {tiles.shape} {tiles.dtype}")
    return tiles


ENCODERS: dict[str, type] = {
    HandcraftedEncoder.kind: HandcraftedEncoder,
    CheckpointEncoder.kind: CheckpointEncoder,
}


def encoder_from_spec(spec: dict[str, Any], *, device: str = "cpu") -> Encoder:
    """Rebuild an encoder from :meth:`Encoder.spec` (checkpoints are verified by hash); a
    checkpoint encoder runs on ``device`` (the handcrafted one is numpy, on the CPU)."""
    kind = spec.get("kind")
    if kind == HandcraftedEncoder.kind:
        return HandcraftedEncoder(
            lymphocyte_od=spec.get("lymphocyte_od", _LYMPHOCYTE_OD),
            lymphocyte_max_um2=spec.get("lymphocyte_max_um2", 6.0),
        )
    if kind == CheckpointEncoder.kind:
        return CheckpointEncoder(
            spec["checkpoint"],
            arch=spec.get("arch"),
            input_px=spec.get("input_px", 224),
            mean=tuple(spec.get("mean", (0.485, 0.456, 0.406))),
            std=tuple(spec.get("std", (0.229, 0.224, 0.225))),
            batch_size=spec.get("batch_size", 32),
            name=spec.get("name"),
            expected_sha256=spec.get("sha256"),
            device=device,
        )
    raise ModelError(f"unknown encoder kind {kind!r}; known: {', '.join(ENCODERS)}")
