"""Where in the lesion the contrast goes: rim-to-core enhancement pattern features.

Whole-lesion statistics (mean HU, texture, mean iodine) say *how much* a tumour enhances, not
*where*. The immune phenotypes are defined by where the T cells are, and their vascular
pattern follows: an immune-*excluded* tumour, with lymphocytes held in the stroma at its
margin, tends to an enhancing rim; an *inflamed* tumour enhances throughout; an immune
*desert* has a larger hypo-enhancing (necrotic) core. These features measure that radial
pattern.

Depth is the Euclidean distance (mm, anisotropic spacing honoured) from a lesion voxel to the
nearest voxel outside the mask, divided by the lesion's largest depth, so 0 is the surface and
1 the deepest point whatever the lesion's size. The outermost voxel layer is left out of the
shells: it mixes the lesion with the lung around it (partial volume). It is summarised on its
own by its upper quartile, which comes from the voxels mostly inside the lesion, as an
enhancing rim is strongest right at the surface. Medians, not means, so a few partial or noisy
voxels do not move a shell's value.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from models.exceptions import InsufficientDataError
from models.imaging.features import Feature
from models.imaging.radiomics import crop_to_lesion
from models.imaging.volume import Volume

__all__ = ["SHELLS", "enhancement_features", "iodine_pattern_features", "normalised_depth"]

SHELLS: tuple[tuple[float, float], ...] = ((0.0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0))
"""Normalised-depth bins of the radial profile, surface to centre."""
RIM = (0.0, 0.3)
"""Normalised depth of the rim: the outer 30 % of the way to the centre."""
CORE = (0.6, 1.0)
"""Normalised depth of the core."""
HYPO_MARGIN_HU = 20.0
"""A voxel deeper than the rim counts as hypo-enhancing when this far below the rim's median."""
MIN_VOXELS = 8


def normalised_depth(mask: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """Depth of every mask voxel, 0 at the surface to 1 at the deepest voxel; NaN outside.

    The outermost voxel layer (depth of at most one voxel) is NaN too: partial volume.
    """
    if not mask.any():
        raise InsufficientDataError("lesion mask is empty: no enhancement pattern")
    padded = np.pad(mask, 1)
    dist = ndimage.distance_transform_edt(padded, sampling=spacing)[1:-1, 1:-1, 1:-1]
    inner = mask & (dist > max(spacing) * 1.01)
    if inner.sum() < MIN_VOXELS:
        raise InsufficientDataError(
            f"lesion has {int(inner.sum())} voxels inside its surface layer "
            f"(fewer than {MIN_VOXELS}): too small for an enhancement pattern"
        )
    depth = np.full(mask.shape, np.nan)
    # 0 at the first inner layer, 1 at the deepest voxel
    d_in = dist[inner]
    lo, hi = float(d_in.min()), float(d_in.max())
    depth[inner] = (d_in - lo) / (hi - lo) if hi > lo else 1.0
    return depth


def _shell(values: np.ndarray, depth: np.ndarray, lo: float, hi: float) -> np.ndarray:
    sel = (depth >= lo) & ((depth < hi) | (hi >= 1.0) & (depth <= hi))
    return values[sel]


def _median(values: np.ndarray) -> float | None:
    return float(np.median(values)) if values.size >= MIN_VOXELS else None


def enhancement_features(volume: Volume, mask: np.ndarray) -> dict[str, Feature]:
    """Radial enhancement pattern of the lesion on ``volume`` (HU).

    Returns
    -------
    dict
        ``enh_shell<k>_hu`` (median HU in the k-th depth bin of :data:`SHELLS`, 1 = outermost),
        ``enh_rim_hu`` and ``enh_core_hu`` (medians over :data:`RIM` and :data:`CORE`),
        ``enh_rim_minus_core_hu``, ``enh_hypo_fraction`` (fraction of the voxels deeper than
        the rim that are :data:`HYPO_MARGIN_HU` or more below the rim's median), and
        ``enh_surface_p75_hu`` / ``enh_surface_minus_core_hu`` (the outermost voxel layer's
        upper quartile, alone and minus the core). A shell with fewer than 8 voxels is left
        out.
    """
    sub, sub_mask = crop_to_lesion(volume, mask, 2.0)
    depth = normalised_depth(sub_mask, sub.geometry.spacing)
    hu = sub.array.astype(float)
    out: dict[str, Feature] = {}
    for k, (lo, hi) in enumerate(SHELLS, start=1):
        m = _median(_shell(hu, depth, lo, hi))
        if m is not None:
            out[f"enh_shell{k}_hu"] = Feature(
                m, "HU", "enhancement", f"median HU at normalised depth {lo:g}-{hi:g}"
            )
    rim = _median(_shell(hu, depth, *RIM))
    core = _median(_shell(hu, depth, *CORE))
    if rim is not None:
        out["enh_rim_hu"] = Feature(rim, "HU", "enhancement", "median HU of the lesion's rim")
    if core is not None:
        out["enh_core_hu"] = Feature(core, "HU", "enhancement", "median HU of the lesion's core")
    if rim is not None and core is not None:
        out["enh_rim_minus_core_hu"] = Feature(
            rim - core, "HU", "enhancement", "rim median minus core median HU"
        )
    # The surface layer itself: where an enhancing rim is strongest, but mixed with the lung.
    # Its upper quartile comes from the voxels mostly inside the lesion.
    surface = sub_mask & ~np.isfinite(depth)
    if surface.sum() >= MIN_VOXELS:
        top = float(np.percentile(hu[surface], 75))
        out["enh_surface_p75_hu"] = Feature(
            top,
            "HU",
            "enhancement",
            "upper quartile of HU in the lesion's outermost voxel layer (the least mixed with "
            "the surroundings)",
        )
        if core is not None:
            out["enh_surface_minus_core_hu"] = Feature(
                top - core, "HU", "enhancement", "surface upper quartile minus core median HU"
            )
    if rim is not None:
        deep = hu[depth > RIM[1]]
        if deep.size >= MIN_VOXELS:
            out["enh_hypo_fraction"] = Feature(
                float(np.mean(deep < rim - HYPO_MARGIN_HU)),
                "1",
                "enhancement",
                f"fraction of voxels deeper than the rim at least {HYPO_MARGIN_HU:g} HU below "
                "the rim's median",
            )
    return out


def iodine_pattern_features(iodine: Volume, mask: np.ndarray) -> dict[str, Feature]:
    """Rim and core iodine concentration (mg/ml) of the lesion on a PCCT iodine map.

    ``mask`` is on ``iodine``'s grid. Names start with ``spec_`` as they exist only for
    multi-energy studies.
    """
    sub, sub_mask = crop_to_lesion(iodine, mask, 2.0)
    depth = normalised_depth(sub_mask, sub.geometry.spacing)
    mg = sub.array.astype(float)
    rim = _median(_shell(mg, depth, *RIM))
    core = _median(_shell(mg, depth, *CORE))
    out: dict[str, Feature] = {}
    if rim is not None:
        out["spec_iodine_rim_mg_ml"] = Feature(
            rim, "mg/ml", "spectral", "median iodine concentration of the lesion's rim"
        )
    if core is not None:
        out["spec_iodine_core_mg_ml"] = Feature(
            core, "mg/ml", "spectral", "median iodine concentration of the lesion's core"
        )
    if rim is not None and core is not None:
        out["spec_iodine_rim_minus_core_mg_ml"] = Feature(
            rim - core, "mg/ml", "spectral", "rim minus core median iodine concentration"
        )
    return out
