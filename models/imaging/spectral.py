"""Spectral features of a multi-energy (PCCT) study inside the lesion."""

from __future__ import annotations

import numpy as np

from models.exceptions import InsufficientDataError
from models.imaging.features import Feature
from models.imaging.volume import Volume

__all__ = ["mask_on_grid", "spectral_features"]


def mask_on_grid(mask: np.ndarray, source: Volume, target: Volume) -> np.ndarray:
    """``mask`` (on ``source``'s grid) placed on ``target``'s grid, by patient coordinates.

    The identity when the grids match (VMIs of one reconstruction); otherwise a linear
    resampling of the mask fraction thresholded at 0.5.
    """
    if source.geometry.same_grid(target.geometry):
        return mask
    import SimpleITK as sitk  # noqa: N813

    out = sitk.Resample(
        source.to_sitk(mask.astype(np.float32)),
        target.to_sitk(),
        sitk.Transform(),
        sitk.sitkLinear,
        0.0,
        sitk.sitkFloat32,
    )
    return sitk.GetArrayFromImage(out) >= 0.5


def spectral_features(
    vmi: dict[float, Volume],
    mask: np.ndarray,
    mask_volume: Volume,
    iodine_map: Volume | None = None,
) -> dict[str, Feature]:
    """Mean HU per keV, attenuation-curve slope and iodine concentration in the lesion.

    Parameters
    ----------
    vmi
        Virtual monoenergetic volumes by keV.
    mask
        The lesion, on ``mask_volume``'s grid.
    mask_volume
        The volume the mask was drawn on (one of the VMIs, or any volume of the same frame of
        reference).
    iodine_map
        The iodine map (values in mg/ml after rescale), when the study has one.

    Returns
    -------
    dict
        ``spec_mean_hu_<keV>kev`` (HU), ``spec_slope_hu_per_kev`` (HU/keV: mean HU at the
        lowest keV minus mean HU at the highest, over the keV difference; positive where iodine
        enhances), ``spec_iodine_mg_ml`` (mean of the iodine map, mg/ml) and
        ``spec_iodine_p90_mg_ml``.
    """
    if not mask.any():
        raise InsufficientDataError("lesion mask is empty: no spectral features")
    out: dict[str, Feature] = {}
    means: dict[float, float] = {}
    for kev in sorted(vmi):
        m = mask_on_grid(mask, mask_volume, vmi[kev])
        if not m.any():
            continue
        means[kev] = float(vmi[kev].array[m].mean())
        out[f"spec_mean_hu_{kev:g}kev"] = Feature(
            means[kev], "HU", "spectral", f"mean attenuation in the lesion on the {kev:g} keV VMI"
        )
    if len(means) >= 2:
        lo, hi = min(means), max(means)
        out["spec_slope_hu_per_kev"] = Feature(
            (means[lo] - means[hi]) / (hi - lo),
            "HU/keV",
            "spectral",
            f"attenuation-curve slope, (HU@{lo:g} - HU@{hi:g}) / ({hi:g} - {lo:g} keV)",
        )
    if iodine_map is not None:
        m = mask_on_grid(mask, mask_volume, iodine_map)
        if m.any():
            vals = iodine_map.array[m].astype(float)
            out["spec_iodine_mg_ml"] = Feature(
                float(vals.mean()), "mg/ml", "spectral", "mean iodine concentration in the lesion"
            )
            out["spec_iodine_p90_mg_ml"] = Feature(
                float(np.percentile(vals, 90)),
                "mg/ml",
                "spectral",
                "90th percentile of iodine concentration in the lesion",
            )
    return out
