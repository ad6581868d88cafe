"""A propagated lesion whose re-outline runs on into the tissue around it (a node against soft
tissue of its own density) is not evaluable on that follow-up, not measured as that tissue; the
same lesion with fat around it is measured as before."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk  # noqa: N813

from models.exceptions import InsufficientDataError
from models.imaging.annotations import Lesion, LesionProblem
from models.imaging.lesion import MAX_OUTLINE_AT_LIMIT, MaskSource, refine_outline
from models.imaging.pipeline import Baseline, analyse_acquisition
from models.imaging.propagation import propagate_lesions
from models.imaging.registration import RegistrationResult
from tests.unit.imaging.lesion_study import (
    LESIONS,
    SHAPE,
    SPACING,
    image,
    volume,
    write_ct_with_simpleitk,
)

NODE = next(e for e in LESIONS if e.label == "LN subcarinal")


def _beside_soft_tissue(hu: np.ndarray) -> np.ndarray:
    """``hu`` with a block of soft tissue (40 HU) against the node's right side, reaching far
    past the 12 mm it may grow by."""
    z, y, x = np.meshgrid(
        *(np.arange(n) * s for n, s in zip(SHAPE, SPACING, strict=True)), indexing="ij"
    )
    cz, cy, cx = NODE.centre_mm
    block = (x >= cx + NODE.semi_mm[2] - 1.0) & (x <= cx + 40.0) & (abs(y - cy) <= 15.0)
    out = hu.copy()
    out[block & (abs(z - cz) <= 12.0)] = 40.0
    return out


def _identity() -> RegistrationResult:
    return RegistrationResult(sitk.Euler3DTransform(), "rigid", 1.0, 1.0, 1.0)


def test_an_outline_held_back_by_its_growth_limit_says_so() -> None:
    plain = volume(image(seed=1))
    crowded = volume(_beside_soft_tissue(image(seed=1)))
    node = NODE.mask()
    alone = refine_outline(plain, node, 40.0, 12.0)
    against = refine_outline(crowded, node, 40.0, 12.0)
    assert alone.at_limit == 0.0
    assert against.at_limit > MAX_OUTLINE_AT_LIMIT
    assert against.mask.sum() > 2 * alone.mask.sum()


def test_a_lesion_outlined_into_its_surroundings_is_not_evaluable_not_measured() -> None:
    baseline = volume(image())
    lesions = [
        Lesion(e.mask(), e.label, k, MaskSource.SEG, tracking_uid=f"2.25.{k}")
        for k, e in enumerate((LESIONS[0], NODE), start=1)
    ]
    fine = propagate_lesions(volume(image(seed=1)), baseline, lesions, registration=_identity())
    assert [lesion.label for lesion in fine.lesions] == ["GTV lung", "LN subcarinal"]
    assert fine.failures == []
    crowded = volume(_beside_soft_tissue(image(seed=1)))
    out = propagate_lesions(crowded, baseline, lesions, registration=_identity())
    assert [lesion.label for lesion in out.lesions] == ["GTV lung"]
    (failure,) = out.failures
    assert failure.tracking_uid == "2.25.2"
    assert failure.problem is LesionProblem.NOT_MEASURABLE  # not evaluable, not gone
    assert "ran into the tissue around it" in failure.message
    assert "not evaluable" in failure.message


def test_one_lesion_outlined_into_its_surroundings_is_refused_not_measured(tmp_path: Path) -> None:
    """The one-lesion path (``irtmon imaging``) applies the same rule: a clear error, no size."""
    baseline = Baseline(volume(np.round(image())), NODE.mask())
    write_ct_with_simpleitk(tmp_path / "plain", image(seed=1))
    measured = analyse_acquisition(tmp_path / "plain", baseline=baseline, radiomics=False)
    assert measured.burden.longest_diameter_mm == pytest.approx(NODE.long_mm, rel=0.15)
    write_ct_with_simpleitk(tmp_path / "crowded", _beside_soft_tissue(image(seed=1)))
    with pytest.raises(InsufficientDataError, match="ran into the tissue around it"):
        analyse_acquisition(tmp_path / "crowded", baseline=baseline, radiomics=False)
