"""Patient-level splits and MIL fitting (small, fast)."""

from __future__ import annotations

import torch

from models.pathology import TrainConfig, fit_mil, split_patients


def test_split_is_by_patient_stratified_and_seeded() -> None:
    patients = [f"p{i}" for i in range(30) for _ in range(2)]  # two slides each
    phenotypes = [["inflamed", "excluded", "desert"][i % 3] for i in range(30) for _ in range(2)]
    split = split_patients(patients, phenotypes, val_fraction=0.2, test_fraction=0.3, seed=4)
    assert set(split) == set(patients)
    assert split == split_patients(patients, phenotypes, seed=4)
    assert split != split_patients(patients, phenotypes, seed=5)
    for ph in ("inflamed", "excluded", "desert"):
        parts = [
            split[f"p{i}"]
            for i in range(30)
            if i % 3 == ["inflamed", "excluded", "desert"].index(ph)
        ]
        assert parts.count("test") == 3 and parts.count("val") == 2


def test_fit_is_reproducible_and_stops_early(bags: list) -> None:
    config = TrainConfig(seed=7, max_epochs=200, patience=3, lr=1e-2)
    first = fit_mil(bags, bags[::2], config)
    second = fit_mil(bags, bags[::2], config)
    assert first.stopped_early
    assert len(first.history) < 200
    assert first.history == second.history
    for k, v in first.model.state_dict().items():
        torch.testing.assert_close(v, second.model.state_dict()[k])


def test_guidance_pulls_attention_to_lymphocytes(bags: list) -> None:
    import numpy as np

    from models.pathology import predict_bags

    fit = fit_mil(bags, bags, TrainConfig(seed=1, max_epochs=40, patience=40))
    preds = predict_bags(fit.model, bags)
    rhos = []
    for b, att in zip(bags, preds.attention, strict=True):
        if b.record.phenotype != "desert":
            rhos.append(
                np.corrcoef(np.argsort(np.argsort(att)), np.argsort(np.argsort(b.guide)))[0, 1]
            )
    assert np.median(rhos) > 0.5
