"""The pathology MIL model and its encoders on a torch device (the CPU here: no GPU is lent to
these tests). Training returns the model on the CPU; an artefact is read onto the CPU
(``map_location``) and moved to the device asked for, which is part of the cache key."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.exceptions import DeviceError
from models.pathology import TrainConfig, fit_mil
from models.pathology.inference import analyse_slide, clear_cache, load_pipeline
from models.runtime import module_device


def test_fit_on_the_cpu_returns_the_model_on_the_cpu(bags: list) -> None:
    config = TrainConfig(seed=3, max_epochs=4, patience=4)
    fit = fit_mil(bags, bags[::3], config, device="cpu")
    assert module_device(fit.model) == torch.device("cpu")
    again = fit_mil(bags, bags[::3], config)
    assert fit.history == again.history


def test_an_artefact_is_read_onto_the_cpu_and_cached_per_device(
    tiny_model: Path, inflamed_slide: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clear_cache()
    locations = []
    real_load = torch.load

    def load(*args: object, **kwargs: object) -> object:
        locations.append(kwargs.get("map_location"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", load)
    pipe = load_pipeline(tiny_model, device="cpu")
    assert locations == ["cpu"]
    assert module_device(pipe.model) == torch.device("cpu")
    assert load_pipeline(tiny_model) is pipe  # the default device is the CPU: same entry
    first = analyse_slide(inflamed_slide, tiny_model, mc_samples=4, device="cpu")
    second = analyse_slide(inflamed_slide, tiny_model, mc_samples=4)
    assert first.probabilities == second.probabilities
    assert first.mc_dropout_std == second.mc_dropout_std
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError):
        load_pipeline(tiny_model, device="cuda")
