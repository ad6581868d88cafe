"""Tile encoders: one interface, swappable; checkpoints come from local files only."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from models.exceptions import ModelError
from models.pathology import (
    CheckpointEncoder,
    Encoder,
    HandcraftedEncoder,
    encoder_from_spec,
    read_tiles,
)
from models.pathology.slide import tile_index


class TinyNet(nn.Module):
    """A stand-in for a pathology foundation model: conv feature map, 8 channels."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x))  # (b, 8, h, w): the encoder pools it


def tiny_net() -> nn.Module:
    """Architecture factory named by ``arch='tests.unit.pathology.test_encoders:tiny_net'``."""
    torch.manual_seed(0)
    return TinyNet()


ARCH = "tests.unit.pathology.test_encoders:tiny_net"


@pytest.fixture(scope="module")
def torchscript_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "tiny.torchscript.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated in torch 2.15
        torch.jit.script(tiny_net()).save(str(path))
    return path


@pytest.fixture(scope="module")
def exported_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt2"
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(
        tiny_net().eval(), (torch.randn(2, 3, 64, 64),), dynamic_shapes=({0: batch},)
    )
    torch.export.save(program, str(path))
    return path


@pytest.fixture(scope="module")
def state_dict_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in tiny_net().state_dict().items()}}, path)
    return path


def _encoder(kind: str, request: pytest.FixtureRequest) -> Encoder:
    if kind == "handcrafted":
        return HandcraftedEncoder()
    if kind == "torchscript":
        return CheckpointEncoder(request.getfixturevalue("torchscript_ckpt"), input_px=64)
    if kind == "export":
        return CheckpointEncoder(request.getfixturevalue("exported_ckpt"), input_px=64)
    return CheckpointEncoder(request.getfixturevalue("state_dict_ckpt"), arch=ARCH, input_px=64)


@pytest.mark.parametrize("kind", ["handcrafted", "torchscript", "export", "state_dict"])
def test_encoder_contract(kind: str, request: pytest.FixtureRequest, inflamed_slide: Path) -> None:
    encoder = _encoder(kind, request)
    assert isinstance(encoder, Encoder)
    tiles = read_tiles(inflamed_slide).tiles[:5]
    feats = encoder.encode(tiles, 0.5)
    assert feats.shape == (5, encoder.dim)
    assert feats.dtype == np.float32
    assert np.isfinite(feats).all()
    rebuilt = encoder_from_spec(encoder.spec())
    assert rebuilt.dim == encoder.dim
    np.testing.assert_allclose(rebuilt.encode(tiles, 0.5), feats, rtol=1e-5, atol=1e-6)


def test_checkpoint_dim_comes_from_the_model(torchscript_ckpt: Path) -> None:
    assert CheckpointEncoder(torchscript_ckpt, input_px=32).dim == 8


def test_handcrafted_counts_lymphocytes(inflamed_slide: Path) -> None:
    ts = read_tiles(inflamed_slide)
    enc = HandcraftedEncoder()
    density = enc.lymphocytes_per_mm2(enc.encode(ts.tiles, 0.5))
    truth = pd.read_parquet(inflamed_slide.with_suffix(".tiles.parquet")).set_index(["row", "col"])
    true = truth.loc[list(map(tuple, tile_index(ts))), "lymphocyte_density_per_mm2_tissue"]
    assert np.corrcoef(density, true)[0, 1] > 0.9
    assert 0.7 < density.mean() / true.mean() < 1.3


def test_checkpoint_errors(tmp_path: Path, state_dict_ckpt: Path, torchscript_ckpt: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        CheckpointEncoder(tmp_path / "uni.pt")
    with pytest.raises(ModelError, match="arch="):
        CheckpointEncoder(state_dict_ckpt)
    with pytest.raises(ModelError, match="cannot be imported"):
        CheckpointEncoder(state_dict_ckpt, arch="no.such.module:net")
    with pytest.raises(ModelError, match="hash"):
        CheckpointEncoder(torchscript_ckpt, expected_sha256="0" * 64)
    with pytest.raises(ModelError, match="unknown encoder"):
        encoder_from_spec({"kind": "imagenet-download"})


def test_tiles_must_be_uint8_rgb() -> None:
    with pytest.raises(ValueError, match="uint8"):
        HandcraftedEncoder().encode(np.zeros((2, 8, 8, 3), np.float32), 0.5)
