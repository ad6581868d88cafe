"""The out-of-distribution measure: fitted at training, stored in the checkpoint, applied to
every slide, widening the uncertainty of slides far from the training slides."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch

from models.exceptions import UnsuitableInputError
from models.pathology import (
    OodReference,
    OodStatus,
    StainOutcome,
    StainPolicy,
    analyse_slide,
    bag_embedding,
)
from models.pathology.ood import OOD_FULL_RATIO, weight_of
from schemas.enums import ImmunePhenotype
from tests.unit.pathology.conftest import make_slide


def test_reference_of_gaussian_bags() -> None:
    rng = np.random.default_rng(0)
    train = rng.normal(size=(200, 6))
    ref = OodReference.fit(train)
    assert len(ref.reference) == 200 and (np.diff(ref.reference) >= 0).all()
    # out-of-sample distances of a 6-d standard normal: about sqrt(6)
    assert 2.0 < float(np.median(ref.reference)) < 3.2
    fresh = [ref.distance(x) for x in rng.normal(size=(200, 6))]
    # the reference is out of sample: fresh bags fall within its 95th percentile as often
    assert 0.88 <= float(np.mean([d <= ref.q95 for d in fresh])) <= 1.0
    far = ref.distance(np.full(6, 10.0))
    assert far > OOD_FULL_RATIO * ref.q95


def test_weight_is_zero_inside_and_one_far_outside() -> None:
    assert weight_of(5.0, 10.0) == 0.0
    assert weight_of(10.0, 10.0) == 0.0
    assert weight_of(15.0, 10.0) == pytest.approx(0.5)
    assert weight_of(20.0, 10.0) == 1.0
    assert weight_of(float("inf"), 10.0) == 1.0


def test_reference_round_trips_through_a_weights_only_checkpoint() -> None:
    rng = np.random.default_rng(1)
    ref = OodReference.fit(rng.normal(size=(12, 8)))
    buffer = io.BytesIO()
    torch.save({"ood": ref.to_state()}, buffer)
    buffer.seek(0)
    back = OodReference.from_state(torch.load(buffer, weights_only=True)["ood"])
    assert back is not None
    x = rng.normal(size=8)
    assert back.distance(x) == pytest.approx(ref.distance(x))
    assert OodReference.from_state(None) is None
    assert OodReference.from_state({"format": "something-else"}) is None
    assert OodReference.from_state({"format": "irtmon-ood/1", "center": [1.0]}) is None


def test_a_reference_needs_four_finite_bags() -> None:
    with pytest.raises(ValueError, match="at least 4"):
        OodReference.fit(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="NaN"):
        OodReference.fit(np.full((5, 4), np.nan))
    with pytest.raises(ValueError, match="n_tiles, dim"):
        bag_embedding(np.zeros((0, 4)))


@pytest.fixture(scope="module")
def new_clinic_slides(slide_dir: Path) -> list[Path]:
    """Three fresh clinic slides (new seeds, densities within the training range)."""
    return [
        make_slide(slide_dir / "fresh" / f"s{k}", phenotype, 900 + k, 1.0)
        for k, phenotype in enumerate(ImmunePhenotype)
    ]


def test_clinic_slides_are_in_distribution(
    new_clinic_slides: list[Path], inflamed_slide: Path, tiny_model: Path
) -> None:
    for path in [inflamed_slide, *new_clinic_slides]:
        res = analyse_slide(path, tiny_model, mc_samples=0)
        assert res.stain is not None and res.stain.outcome is StainOutcome.HE
        assert res.ood.status is OodStatus.IN_DISTRIBUTION, (path, res.ood)
        assert res.ood.weight == 0.0 and res.ood.percentile is not None
        assert res.ood.distance is not None and res.ood.distance <= res.ood.reference_q95
        # nothing widened
        assert res.probabilities == res.model_probabilities
        assert res.til_log_std == res.model_til_log_std
        assert res.ood.reference_slides == 9


def test_an_overstained_slide_is_far_and_its_uncertainty_widened(
    overstained_slide: Path, tiny_model: Path
) -> None:
    res = analyse_slide(overstained_slide, tiny_model, mc_samples=8)
    assert res.stain is not None and res.stain.outcome is StainOutcome.HE
    assert res.ood.status is OodStatus.OUT_OF_DISTRIBUTION
    assert res.ood.percentile == 100.0 and res.ood.weight == 1.0
    assert res.ood.distance is not None and res.ood.distance > 5 * res.ood.reference_q95
    # weight 1: the probabilities are the training frequencies (three of each phenotype)
    assert list(res.probabilities.values()) == pytest.approx([1 / 3] * 3)
    assert res.entropy == pytest.approx(1.0)
    assert res.til_log_std > res.model_til_log_std
    assert max(res.model_probabilities.values()) > max(res.probabilities.values())
    stored = res.to_dict()
    assert stored["ood"]["status"] == "out-of-distribution"
    assert stored["ood"]["percentile"] == 100.0
    assert stored["uncertainty_weight"] == 1.0
    assert stored["stain"]["outcome"] == "h&e"
    assert stored["model_probabilities"] == res.model_probabilities


def test_the_ihc_slide_is_refused_or_flagged_as_far(ihc_slide: Path, tiny_model: Path) -> None:
    with pytest.raises(UnsuitableInputError, match=r"immunohistochemistry \(DAB\), not H&E"):
        analyse_slide(ihc_slide, tiny_model)
    res = analyse_slide(ihc_slide, tiny_model, stain_policy=StainPolicy.FLAG, mc_samples=4)
    assert res.stain is not None and res.stain.outcome is StainOutcome.NOT_HE
    assert res.ood.status is OodStatus.OUT_OF_DISTRIBUTION and res.ood.percentile == 100.0
    assert res.uncertainty_weight == 1.0
    assert max(res.probabilities.values()) == pytest.approx(1 / 3)
    assert res.to_dict()["stain"]["outcome"] == "not h&e"


def test_an_old_model_without_a_reference_says_unknown(
    inflamed_slide: Path, overstained_slide: Path, legacy_model: Path, tiny_model: Path
) -> None:
    for path in (inflamed_slide, overstained_slide):
        res = analyse_slide(path, legacy_model, mc_samples=4)
        assert res.ood.status is OodStatus.UNKNOWN
        assert res.ood.distance is None and res.ood.percentile is None
        assert res.probabilities == res.model_probabilities
        assert res.to_dict()["ood"]["status"] == "unknown"
    same = analyse_slide(inflamed_slide, tiny_model, mc_samples=4)
    assert same.model_probabilities == pytest.approx(
        analyse_slide(inflamed_slide, legacy_model, mc_samples=4).model_probabilities
    )
