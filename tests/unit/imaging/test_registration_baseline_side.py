"""The baseline's half of a registration (its 4 mm scan and 2 mm lesion box) gives the same
transform whether the registration makes it beside the follow-up's half, it was made before, or
a baseline kept it from an earlier follow-up; it is used only for the baseline volume, lesion
masks and margin it was made from."""

from __future__ import annotations

import numpy as np
import pytest

from models.exceptions import InsufficientDataError
from models.imaging.annotations import Lesion
from models.imaging.lesion import MaskSource
from models.imaging.pipeline import Baseline
from models.imaging.registration import prepare_baseline, register
from models.imaging.study import _registered
from models.imaging.volume import Volume
from tests.unit.imaging.lesion_study import LESIONS, image, volume

SHIFT_MM = (0.0, -2.9, 3.4)  # z, y, x


@pytest.fixture(scope="module")
def pair() -> tuple[Volume, Volume, list[np.ndarray]]:
    baseline = volume(image())
    followup = volume(image([e.moved(SHIFT_MM, 1.2) for e in LESIONS], seed=2, shift_mm=SHIFT_MM))
    return followup, baseline, [e.mask() for e in LESIONS]


@pytest.fixture(scope="module")
def expected(pair) -> tuple[float, ...]:
    followup, baseline, masks = pair
    return register(followup, baseline, masks).transform.GetParameters()


def test_made_before_or_beside_the_same_transform(pair, expected) -> None:
    followup, baseline, masks = pair
    assert expected[3] == pytest.approx(-SHIFT_MM[2], abs=1.0)  # it found the shift
    side = prepare_baseline(baseline, masks)
    result = register(followup, baseline, masks, baseline=side)
    assert result.transform.GetParameters() == expected
    assert result.baseline is side  # used, not made again


@pytest.mark.parametrize("other", ["fewer masks", "copied masks", "other volume", "margin"])
def test_a_side_made_from_anything_else_is_not_used(pair, expected, other: str) -> None:
    followup, baseline, masks = pair
    made_from = {
        "fewer masks": (baseline, masks[:1], 40.0),
        "copied masks": (baseline, [m.copy() for m in masks], 40.0),
        "other volume": (Volume(baseline.array.copy(), baseline.geometry), masks, 40.0),
        "margin": (baseline, masks, 25.0),
    }[other]
    side = prepare_baseline(*made_from)
    result = register(followup, baseline, masks, baseline=side)
    assert result.baseline is not side
    assert result.baseline is not None and result.baseline.fits(baseline, masks, 40.0)
    assert result.transform.GetParameters() == expected


def test_a_baseline_keeps_its_side_for_the_next_follow_up(pair, expected) -> None:
    followup, baseline_volume, masks = pair
    lesions = [
        Lesion(mask, e.label, k, MaskSource.SEG, tracking_uid=f"2.25.{k}")
        for k, (mask, e) in enumerate(zip(masks, LESIONS, strict=True), start=1)
    ]
    baseline = Baseline(baseline_volume, masks[0], lesions=lesions)
    first = _registered(followup, baseline, lesions, deformable=False)
    kept = baseline.registration_side
    assert kept is not None and first.baseline is kept
    again = _registered(followup, baseline, lesions, deformable=False)
    assert again.baseline is kept  # not made again
    assert first.transform.GetParameters() == again.transform.GetParameters() == expected


def test_empty_masks_are_refused_before_any_work(pair) -> None:
    _, baseline, masks = pair
    with pytest.raises(InsufficientDataError, match="empty"):
        prepare_baseline(baseline, [np.zeros_like(masks[0])])
