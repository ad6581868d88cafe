"""Radiomics at the lesion's real voxel spacing: the IBSI digital phantom's reference values.

The IBSI 1 digital phantom (Zwanenburg et al., IBSI reference manual, arXiv:1612.07003; data
from github.com/theibsi/data_sets, ``ibsi_1_digital_phantom``, licensed CC BY 4.0, design by
Alex Zwanenburg) is 5 x 4 x 4 voxels of 2 mm; its ROI holds 74 voxels. Reference values (IBSI
manual, digital phantom, no interpolation): mesh volume 556 mm³, voxel-counting volume 592 mm³,
mean 2.15, variance 3.05, skewness 1.08.
"""

from __future__ import annotations

import numpy as np
import pytest

from models.imaging import Geometry, RadiomicsConfig, Volume, compute_radiomics
from tests.unit.imaging.synth import phantom

# [z][y][x], as read from the phantom's NIfTI files
IBSI_IMAGE = [
    [[1, 4, 4, 1, 1], [1, 4, 6, 1, 1], [4, 1, 6, 4, 1], [4, 4, 6, 4, 1]],
    [[1, 4, 4, 1, 1], [1, 1, 6, 1, 1], [1, 1, 3, 1, 1], [4, 4, 6, 1, 1]],
    [[1, 4, 4, 1, 1], [1, 1, 1, 1, 1], [1, 1, 9, 1, 1], [1, 1, 6, 1, 1]],
    [[1, 4, 4, 1, 1], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1, 6, 1, 1]],
]
IBSI_MASK = [
    [[1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1]],
    [[1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [0, 1, 1, 1, 1], [1, 1, 1, 1, 1]],
    [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 0, 1, 1], [1, 1, 1, 1, 1]],
    [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1]],
]


def _geometry(shape: tuple[int, ...], spacing: tuple[float, float, float]) -> Geometry:
    return Geometry(
        (0.0, 0.0, 0.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), spacing, shape
    )  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def ibsi() -> tuple[Volume, np.ndarray]:
    image = np.asarray(IBSI_IMAGE, np.float32)
    mask = np.asarray(IBSI_MASK, bool)
    assert mask.sum() == 74
    return Volume(image, _geometry(image.shape, (2.0, 2.0, 2.0))), mask


_FIRST_ORDER = ("morphology", "statistics")


@pytest.mark.parametrize("voxel_mm", [None, 2.0], ids=["native", "resampled-to-2mm"])
def test_ibsi_phantom_at_its_native_spacing(
    ibsi: tuple[Volume, np.ndarray], voxel_mm: float | None
) -> None:
    volume, mask = ibsi
    config = RadiomicsConfig(voxel_mm=voxel_mm, families=_FIRST_ORDER)
    feats = compute_radiomics(volume, mask, config)
    assert feats["rad_morph_volume"].value == pytest.approx(556.3, abs=0.5)
    assert feats["rad_morph_vol_approx"].value == pytest.approx(592.0, abs=1e-6)
    assert feats["rad_stat_mean"].value == pytest.approx(2.149, abs=0.005)
    assert feats["rad_stat_var"].value == pytest.approx(3.045, abs=0.005)
    assert feats["rad_stat_skew"].value == pytest.approx(1.084, abs=0.005)


@pytest.mark.slow
def test_morphology_is_in_mm_at_a_2mm_grid() -> None:
    """At a 2 mm radiomics grid the mesh volume is the lesion's volume in mm³, not in voxels."""
    spacing = (2.0, 1.0, 1.0)
    hu, mask = phantom((30, 60, 60), spacing, (30.0, 30.0, 30.0), (10.0, 14.0, 12.0), noise=0.0)
    volume = Volume(np.round(hu).astype(np.float32), _geometry(hu.shape, spacing))
    truth_mm3 = 4 / 3 * np.pi * 10 * 14 * 12
    config = RadiomicsConfig(voxel_mm=2.0, families=_FIRST_ORDER)
    feats = compute_radiomics(volume, mask, config)
    assert feats["rad_morph_volume"].value == pytest.approx(truth_mm3, rel=0.06)
    assert feats["rad_morph_diam"].value == pytest.approx(28.0, rel=0.1)
