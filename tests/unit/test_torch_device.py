"""Where torch runs (``IRTMON_TORCH_DEVICE``, ``--device``): the choice of device, the refusal of
an absent GPU, and the CPU path (models come back on the CPU; checkpoints are read onto the CPU
with ``map_location`` and then moved to the device asked for).

No GPU is lent to these tests: what needs one (training on ``cuda``) is not run here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from typer.testing import CliRunner

from core.settings import Settings
from irtmon.cli import app
from irtmon.common import get_settings
from models.exceptions import DeviceError
from models.registry import save_artifact
from models.response.nets import MlpConfig, fit_mlp
from models.response.signature import (
    SignatureConfig,
    fit_signature,
    load_signature,
    pair_scans,
    save_signature,
)
from models.runtime import device, module_device
from tests.unit.test_response_models import cohort  # noqa: F401  (the fixture)

FAST = MlpConfig(hidden=8, dropout=0.0, max_epochs=30, patience=10)


def test_cpu_is_the_default_and_auto_takes_a_gpu_only_where_torch_sees_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().torch_device == "cpu"
    assert device() == device(None) == device("cpu") == device(" CPU ") == torch.device("cpu")
    assert device(torch.device("cpu")) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert device("auto") == torch.device("cuda")
    assert device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(DeviceError, match="sees 2 CUDA GPU"):
        device("cuda:2")


def test_an_absent_gpu_or_an_unknown_device_is_refused_with_what_to_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for asked in ("cuda", "cuda:0"):
        with pytest.raises(DeviceError, match=r"no CUDA GPU.*'auto'"):
            device(asked)
    for asked in ("gpu", "tpu", "cuda:x"):
        with pytest.raises(DeviceError, match="unknown torch device"):
            device(asked)
    assert issubclass(DeviceError, ValueError)


def test_the_setting_accepts_only_device_names() -> None:
    for ok in ("auto", "cpu", "cuda", "cuda:1"):
        assert Settings(torch_device=ok).torch_device == ok
    with pytest.raises(ValidationError):
        Settings(torch_device="gpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("command", ["pathology", "ct-signature", "response"])
def test_train_refuses_an_absent_gpu_before_reading_anything(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IRTMON_MODELS_DIR", str(tmp_path / "models"))
    out = tmp_path / "run"
    args = ["train", command, "--out", str(out)]
    if command != "pathology":
        args += ["--cohort", str(tmp_path / "no-cohort")]
    for how in ("option", "setting"):
        if how == "setting":  # IRTMON_TORCH_DEVICE when --device is not given
            monkeypatch.setenv("IRTMON_TORCH_DEVICE", "cuda")
        get_settings.cache_clear()
        result = CliRunner().invoke(app, args + (["--device", "cuda"] if how == "option" else []))
        assert result.exit_code == 1, result.output
        assert "no CUDA GPU" in result.output
        assert not out.exists()  # refused before any work
    get_settings.cache_clear()


def test_a_network_trained_on_the_cpu_is_returned_and_saved_from_the_cpu() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3)).astype(np.float32)
    y = (x[:, :1] > 0).astype(np.float32)
    bce = torch.nn.BCEWithLogitsLoss()
    on_cpu, epoch, loss = fit_mlp(x, y, x, y, 1, bce, FAST, seed=3, device="cpu")
    default, epoch2, loss2 = fit_mlp(x, y, x, y, 1, bce, FAST, seed=3)
    assert module_device(on_cpu) == torch.device("cpu")
    assert (epoch, loss) == (epoch2, loss2)
    for k, v in on_cpu.state_dict().items():
        assert torch.equal(v, default.state_dict()[k])


def test_a_saved_model_is_read_onto_the_cpu_and_run_where_asked(
    tmp_path: Path,
    cohort: dict,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hist = {p: v[0] for p, v in cohort.items()}
    pairs = pair_scans(hist)
    model = fit_signature(pairs, SignatureConfig(members=2, mlp=FAST), device="cpu")
    folder = save_artifact(
        tmp_path, "ct-signature", "v1", save_signature(model, tmp_path / "sig.pt")
    ).folder
    locations = []
    real_load = torch.load

    def load(*args: object, **kwargs: object) -> object:
        locations.append(kwargs.get("map_location"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", load)
    loaded = load_signature(folder, device="cpu")
    assert locations == ["cpu"]
    assert {module_device(m) for m in loaded.members} == {torch.device("cpu")}
    scans = [p.scan for p in pairs[:10]]
    for a, b in zip(model.predict(scans), loaded.predict(scans), strict=True):
        np.testing.assert_array_equal(a, b)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError):
        load_signature(folder, device="cuda")
