"""Gated attention MIL module."""

from __future__ import annotations

import pytest
import torch

from models.pathology import GatedAttentionMIL, MILConfig
from models.pathology.mil import pad_bags


@pytest.fixture
def model() -> GatedAttentionMIL:
    torch.manual_seed(0)
    return GatedAttentionMIL(MILConfig(in_dim=6, hidden=16, attention_dim=8)).eval()


def test_shapes_and_attention(model: GatedAttentionMIL) -> None:
    out = model(torch.randn(2, 5, 6))
    assert out.logits.shape == (2, 3)
    assert out.til.shape == (2,)
    assert out.attention.shape == (2, 5)
    assert out.branches.shape == (2, 2, 5)
    torch.testing.assert_close(out.branches.sum(dim=2), torch.ones(2, 2))


def test_padding_does_not_change_a_bag(model: GatedAttentionMIL) -> None:
    a, b = torch.randn(3, 6).numpy(), torch.randn(7, 6).numpy()
    x, mask = pad_bags([a, b])
    batched = model(x, mask)
    alone = model(torch.as_tensor(a))
    torch.testing.assert_close(batched.logits[0], alone.logits[0])
    torch.testing.assert_close(batched.til[0], alone.til[0])
    assert (batched.attention[0, 3:] == 0).all()


def test_permutation_invariance(model: GatedAttentionMIL) -> None:
    x = torch.randn(9, 6)
    perm = torch.randperm(9)
    out, shuffled = model(x), model(x[perm])
    torch.testing.assert_close(out.logits, shuffled.logits)
    torch.testing.assert_close(out.attention[0][perm], shuffled.attention[0])


def test_single_branch_and_til_scale() -> None:
    model = GatedAttentionMIL(MILConfig(in_dim=4, n_branches=1)).eval()
    model.set_normalisation(torch.zeros(4).numpy(), torch.ones(4).numpy(), 5.0, 2.0)
    assert model(torch.randn(4, 4)).branches.shape == (1, 1, 4)
    dens = model.til_to_density(torch.tensor([-1.0, 0.0, 1.0]))
    assert dens[1] == pytest.approx(float(torch.expm1(torch.tensor(5.0))))
    assert (dens.diff() > 0).all()
    with pytest.raises(ValueError):
        GatedAttentionMIL(MILConfig(in_dim=4, n_branches=0))
