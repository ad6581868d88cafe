"""Rim-to-core enhancement pattern against lesions whose radial profile is drawn here."""

from __future__ import annotations

import numpy as np
import pytest

from models.exceptions import InsufficientDataError
from models.imaging import Geometry, Volume
from models.imaging.enhancement import (
    enhancement_features,
    iodine_pattern_features,
    normalised_depth,
)


def _lesion(
    profile: str,
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    radius_mm: float = 16.0,
    seed: int = 0,
) -> tuple[Volume, np.ndarray]:
    """A sphere in lung whose HU follows ``profile`` along the normalised radius rho."""
    n = [int(np.ceil(2 * radius_mm / s)) + 8 for s in spacing]
    z, y, x = np.meshgrid(
        *(np.arange(k) * s for k, s in zip(n, spacing, strict=True)), indexing="ij"
    )
    centre = [(k - 1) * s / 2 for k, s in zip(n, spacing, strict=True)]
    rho = np.sqrt((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2) / radius_mm
    mask = rho <= 1.0
    lesion = {
        "uniform": np.full(rho.shape, 60.0),
        "rim": np.where(rho > 0.7, 90.0, 50.0),  # an enhancing rim
        "necrotic": np.where(rho < 0.45, 15.0, 70.0),  # a hypo-enhancing core
    }[profile]
    rng = np.random.default_rng(seed)
    hu = np.where(mask, lesion, -850.0) + rng.normal(0.0, 4.0, rho.shape)
    geometry = Geometry(
        origin=(0.0, 0.0, 0.0),
        row_direction=(1.0, 0.0, 0.0),
        column_direction=(0.0, 1.0, 0.0),
        normal=(0.0, 0.0, 1.0),
        spacing=spacing,
        shape=tuple(n),  # type: ignore[arg-type]
    )
    return Volume(hu.astype(np.float32), geometry), mask


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (3.0, 2.7, 2.7)])
def test_rim_and_core_are_told_apart(spacing: tuple[float, float, float]) -> None:
    uniform = enhancement_features(*_lesion("uniform", spacing))
    rim = enhancement_features(*_lesion("rim", spacing))
    necrotic = enhancement_features(*_lesion("necrotic", spacing))

    assert abs(uniform["enh_rim_minus_core_hu"].value) < 5.0
    assert rim["enh_rim_minus_core_hu"].value > 25.0  # drawn: 40 HU
    assert rim["enh_core_hu"].value == pytest.approx(50.0, abs=6.0)
    assert necrotic["enh_core_hu"].value == pytest.approx(15.0, abs=6.0)
    # the necrotic core is hypo-enhancing against the rim; the uniform lesion has none
    assert necrotic["enh_hypo_fraction"].value > 0.3
    assert uniform["enh_hypo_fraction"].value < 0.02
    # the outermost layer's upper quartile sees the rim despite the partial volume
    assert rim["enh_surface_minus_core_hu"].value > uniform["enh_surface_minus_core_hu"].value + 20
    # the radial profile runs surface to centre
    assert rim["enh_shell1_hu"].value > rim["enh_shell4_hu"].value + 25.0
    assert necrotic["enh_shell4_hu"].value < necrotic["enh_shell1_hu"].value - 40.0


def test_surface_layer_is_left_out() -> None:
    """Partial volume with the lung must not pull the rim down."""
    volume, mask = _lesion("uniform")
    feats = enhancement_features(volume, mask)
    assert feats["enh_shell1_hu"].value == pytest.approx(60.0, abs=3.0)
    depth = normalised_depth(mask, volume.geometry.spacing)
    surface = mask & ~np.isfinite(depth)
    assert surface.any() and np.nanmin(depth) == 0.0 and np.nanmax(depth) == 1.0
    assert np.isnan(depth[~mask]).all()


def test_too_small_or_empty_lesion_is_refused() -> None:
    volume, mask = _lesion("uniform", spacing=(3.0, 2.7, 2.7), radius_mm=4.0)
    with pytest.raises(InsufficientDataError, match="too small"):
        enhancement_features(volume, mask)
    with pytest.raises(InsufficientDataError, match="empty"):
        enhancement_features(volume, np.zeros_like(mask))


def test_iodine_pattern_is_spectral() -> None:
    hu, mask = _lesion("rim")
    iodine = Volume((hu.array - 40.0) / 25.0, hu.geometry, "mg/ml")
    feats = iodine_pattern_features(iodine, mask)
    assert set(feats) == {
        "spec_iodine_rim_mg_ml",
        "spec_iodine_core_mg_ml",
        "spec_iodine_rim_minus_core_mg_ml",
    }
    assert feats["spec_iodine_rim_minus_core_mg_ml"].value == pytest.approx(1.6, abs=0.4)
    assert all(f.unit == "mg/ml" for f in feats.values())
