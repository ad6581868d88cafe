"""Radiomics (shape, first-order, texture) through MIRP with fixed, IBSI-consistent settings.

The lesion is cropped to its bounding box plus a margin, resampled to isotropic voxels with
SimpleITK (trilinear image; mask resampled trilinearly and kept where the fraction is at least
0.5, as IBSI recommends), then handed to MIRP, which computes IBSI-compliant features with a
re-segmentation range and a fixed bin size. Every setting lives in :class:`RadiomicsConfig`,
versioned: change a value, bump the version.

MIRP is given the image and mask as its own in-memory numpy image objects with the voxel
spacing set: a bare numpy array is read by MIRP as 1 mm voxels, which put every morphology
feature off by the voxel volume at any grid other than 1 mm (the IBSI digital phantom at its
native 2 mm gave a mesh volume of 69.5 mm³ instead of the reference 556.3 mm³). Files (NIfTI,
NRRD) would carry the spacing too, but MIRP reads them through ITK, whose first import costs
about 8 s per process; the in-memory objects are MIRP's numpy input path (``ImageNumpyFile``,
whose constructor takes ``image_spacing``), checked against the phantom in the unit tests with
the MIRP version pinned in constraints.txt.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import asdict, dataclass

import numpy as np
import SimpleITK as sitk  # noqa: N813
from scipy import ndimage

from models.exceptions import InsufficientDataError
from models.imaging.features import Feature
from models.imaging.volume import Volume, box_slices, mask_bounds, padded_box

__all__ = [
    "DEFAULT_RADIOMICS_CONFIG",
    "RadiomicsConfig",
    "compute_radiomics",
    "crop_to_lesion",
    "feature_unit",
    "peritumoural_features",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RadiomicsConfig:
    """Settings of the radiomics extraction (IBSI terms). Bump ``version`` on any change."""

    version: str = "irtmon-radiomics-1.0"
    voxel_mm: float | None = 1.0
    """Isotropic resampling grid (IBSI 'interpolation to isotropic voxels'); ``None`` keeps the
    image's own voxels (no interpolation)."""
    image_interpolation: str = "trilinear"
    mask_partial_volume_threshold: float = 0.5
    resegmentation_range_hu: tuple[float, float] = (-1000.0, 400.0)
    discretisation: str = "fixed_bin_size"
    bin_width_hu: float = 25.0
    texture_aggregation: str = "3d_volume_merge"
    glcm_distance: float = 1.0
    families: tuple[str, ...] = (
        "morphology",
        "statistics",
        "intensity_histogram",
        "glcm",
        "glrlm",
        "glszm",
        "gldzm",
        "ngtdm",
        "ngldm",
    )
    crop_margin_mm: float = 5.0
    ring_inner_mm: float = 0.0
    ring_outer_mm: float = 5.0
    """Peritumoural ring, outside the lesion boundary."""

    def as_dict(self) -> dict[str, object]:
        """The settings, for provenance."""
        return asdict(self)


DEFAULT_RADIOMICS_CONFIG = RadiomicsConfig()

_UNITS: list[tuple[str, str]] = [
    (r"^morph_(volume|vol_approx)$", "mm3"),
    (r"^morph_area_mesh$", "mm2"),
    (r"^morph_av$", "1/mm"),
    (r"^morph_(com|diam|pca_maj_axis|pca_min_axis|pca_least_axis)$", "mm"),
    (r"^morph_integ_int$", "HU*mm3"),
    (r"^stat_var$", "HU2"),
    (r"^stat_energy$", "HU2"),
    (r"^stat_(skew|kurt|cov|qcod)$", "1"),
    (r"^stat_", "HU"),
    (r"^ih_", "1"),
    (r"^(cm|rlm|szm|dzm|ngt|ngl)_", "1"),
    (r"^morph_", "1"),
]


_NOT_REPRODUCIBLE = frozenset({"morph_moran_i", "morph_geary_c"})
"""MIRP estimates these from a random subsample on large ROIs: left out so re-runs agree."""


def _skip_unreproducible_morphology() -> None:
    """Keep MIRP from computing the features :data:`_NOT_REPRODUCIBLE` (dropped anyway).

    Moran's I and Geary's C are pairwise over the ROI's voxels, O(n²): on a 4 cm lesion they
    took about 70 % of the whole radiomics time, for values that are then discarded. MIRP
    (pinned in constraints.txt) builds its morphology features from
    ``get_morphology_3d_class_dict``; this wraps it once per process so those two are left out.
    The other features are unchanged (the IBSI phantom test checks the reference values).
    """
    from mirp._features import morph_3d_features as morph

    original = morph.get_morphology_3d_class_dict
    if getattr(original, "_irtmon_skips", False):
        return

    def without_pairwise() -> dict:
        classes = original()
        for name in _NOT_REPRODUCIBLE:
            classes.pop(name, None)
        return classes

    without_pairwise._irtmon_skips = True  # type: ignore[attr-defined]
    morph.get_morphology_3d_class_dict = without_pairwise


def feature_unit(name: str) -> str:
    """Unit of a MIRP feature name (``1`` for dimensionless; grey-level units are bins)."""
    for pattern, unit in _UNITS:
        if re.match(pattern, name):
            return unit
    return "1"


def _family(name: str) -> str:
    prefix = name.split("_", 1)[0]
    return {
        "morph": "shape",
        "stat": "first_order",
        "ih": "intensity_histogram",
    }.get(prefix, "texture")


def crop_to_lesion(volume: Volume, mask: np.ndarray, margin_mm: float) -> tuple[Volume, np.ndarray]:
    """The sub-volume of the lesion's bounding box plus ``margin_mm``, and its mask."""
    if not mask.any():
        raise InsufficientDataError("lesion mask is empty: no features to compute")
    g = volume.geometry
    sp = np.asarray(g.spacing)
    pad = np.ceil(margin_mm / sp).astype(int) + 1
    first, last = mask_bounds(mask)  # type: ignore[misc]  # not empty: checked above
    lo, hi = padded_box(first, last, pad, g.shape)
    box = box_slices(lo, hi)
    origin = g.index_to_patient(np.asarray(lo, float)[None])[0]
    sub = type(g)(
        origin=tuple(float(v) for v in origin),
        row_direction=g.row_direction,
        column_direction=g.column_direction,
        normal=g.normal,
        spacing=g.spacing,
        shape=tuple(int(b - a) for a, b in zip(lo, hi, strict=True)),  # type: ignore[arg-type]
    )
    return Volume(np.ascontiguousarray(volume.array[box]), sub, volume.unit), mask[box].copy()


def _resample_isotropic(
    volume: Volume, mask: np.ndarray, mm: float | None
) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """Image, mask fraction and ``(z, y, x)`` spacing on the isotropic ``mm`` grid (or on the
    volume's own grid when ``mm`` is None)."""
    if mm is None:
        spacing = tuple(float(v) for v in volume.geometry.spacing)
        return volume.array.astype(np.float32), mask.astype(np.float32), spacing  # type: ignore[return-value]
    image = volume.to_sitk()
    spacing = np.asarray(image.GetSpacing())
    size = np.asarray(image.GetSize())
    new_size = [max(1, int(v)) for v in np.round(size * spacing / mm)]
    # keep the grid centred on the original one (IBSI: align grid centres)
    centre_shift = (np.asarray(new_size) - 1) * mm / 2.0 - (size - 1) * spacing / 2.0
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    origin = np.asarray(image.GetOrigin()) - direction @ centre_shift
    ref = sitk.Image(new_size, sitk.sitkFloat32)
    ref.SetSpacing([mm] * 3)
    ref.SetDirection(image.GetDirection())
    ref.SetOrigin(tuple(origin))
    img = sitk.Resample(image, ref, sitk.Transform(), sitk.sitkLinear, -1000.0, sitk.sitkFloat32)
    msk = sitk.Resample(
        volume.to_sitk(mask.astype(np.float32)), ref, sitk.Transform(), sitk.sitkLinear, 0.0
    )
    return sitk.GetArrayFromImage(img), sitk.GetArrayFromImage(msk), (mm, mm, mm)


def _mirp_image(array: np.ndarray, spacing_zyx: tuple[float, float, float], mask: bool) -> object:
    """A MIRP numpy image (or mask) object that carries its voxel spacing (z, y, x mm)."""
    from mirp._data_import.numpy_file import ImageNumpyFile, MaskNumpyFile

    cls = MaskNumpyFile if mask else ImageNumpyFile
    image = cls(image_data=array, image_spacing=tuple(float(v) for v in spacing_zyx))
    image.image_metadata = array  # what MIRP sets itself for a bare array: no file to read
    return image


def compute_radiomics(
    volume: Volume, mask: np.ndarray, config: RadiomicsConfig = DEFAULT_RADIOMICS_CONFIG
) -> dict[str, Feature]:
    """Shape, first-order and texture features of the lesion (MIRP, IBSI-compliant).

    Parameters
    ----------
    volume
        The CT volume in HU (any size; the lesion is cropped out first).
    mask
        The lesion on ``volume``'s grid.
    config
        The versioned settings.

    Returns
    -------
    dict
        ``rad_<mirp name>`` -> :class:`Feature`; names follow MIRP (IBSI nomenclature).

    Raises
    ------
    InsufficientDataError
        The mask is empty or too small (under 8 voxels after resampling).
    """
    _skip_unreproducible_morphology()

    grid_mm = config.voxel_mm if config.voxel_mm is not None else max(volume.geometry.spacing)
    sub, sub_mask = crop_to_lesion(volume, mask, config.crop_margin_mm + 2 * grid_mm)
    image, fraction, spacing = _resample_isotropic(sub, sub_mask, config.voxel_mm)
    roi = fraction >= config.mask_partial_volume_threshold
    if roi.sum() < 8:
        raise InsufficientDataError(f"lesion too small for radiomics ({int(roi.sum())} voxels)")
    # MIRP calls logging.basicConfig(stream=sys.stdout) on every run: give the root logger a
    # handler first so that call does nothing and stdout stays clean (the CLI prints JSON there).
    root = logging.getLogger()
    guard = logging.NullHandler() if not root.handlers else None
    if guard is not None:
        root.addHandler(guard)
    try:
        tables = _extract(config, image, roi, spacing)
    finally:
        if guard is not None:
            root.removeHandler(guard)
    if not tables:
        raise InsufficientDataError("MIRP returned no features for this lesion")
    row = tables[0].iloc[0]
    out: dict[str, Feature] = {}
    for name, value in row.items():
        name = str(name)
        if name.startswith("image_") or name in ("sample_name",) or name in _NOT_REPRODUCIBLE:
            continue
        try:
            v = float(value)
        except (TypeError, ValueError):
            continue
        if not math.isfinite(v):
            continue
        out[f"rad_{name}"] = Feature(v, feature_unit(name), _family(name), "MIRP / IBSI: " + name)
    return out


def _extract(
    config: RadiomicsConfig,
    image: np.ndarray,
    roi: np.ndarray,
    spacing: tuple[float, float, float],
) -> list:
    """Run MIRP on ``image`` and ``roi`` at ``spacing`` (z, y, x mm)."""
    import mirp  # heavy import: only when features are computed

    return mirp.extract_features(
        image=_mirp_image(image.astype(np.float32), spacing, mask=False),
        mask=_mirp_image(roi.astype(bool), spacing, mask=True),
        image_modality="CT",
        export_features=True,
        write_features=False,
        by_slice=False,
        ibsi_compliant=True,
        base_feature_families=list(config.families),
        base_discretisation_method=config.discretisation,
        base_discretisation_bin_width=config.bin_width_hu,
        resegmentation_intensity_range=list(config.resegmentation_range_hu),
        glcm_distance=config.glcm_distance,
        glcm_spatial_method=config.texture_aggregation,
        glrlm_spatial_method=config.texture_aggregation,
        glszm_spatial_method="3d",
        gldzm_spatial_method="3d",
        ngtdm_spatial_method="3d",
        ngldm_spatial_method="3d",
    )


def peritumoural_features(
    volume: Volume, mask: np.ndarray, config: RadiomicsConfig = DEFAULT_RADIOMICS_CONFIG
) -> dict[str, Feature]:
    """Mean, standard deviation and fat / air fractions in a ring around the lesion.

    The ring is the set of voxels whose distance to the lesion (Euclidean, in mm) is in
    ``(ring_inner_mm, ring_outer_mm]``.
    """
    sub, sub_mask = crop_to_lesion(volume, mask, config.ring_outer_mm + 2.0)
    dist = ndimage.distance_transform_edt(~sub_mask, sampling=sub.geometry.spacing)
    ring = (dist > config.ring_inner_mm) & (dist <= config.ring_outer_mm)
    if not ring.any():
        return {}
    hu = sub.array[ring].astype(float)
    d = f"ring {config.ring_inner_mm:g}-{config.ring_outer_mm:g} mm outside the lesion"
    return {
        "peri_mean_hu": Feature(float(hu.mean()), "HU", "peritumoural", f"mean HU in the {d}"),
        "peri_sd_hu": Feature(float(hu.std()), "HU", "peritumoural", f"SD of HU in the {d}"),
        "peri_soft_tissue_fraction": Feature(
            float(np.mean((hu > -100) & (hu < 100))),
            "1",
            "peritumoural",
            f"fraction of voxels in (-100, 100) HU in the {d}",
        ),
        "peri_air_fraction": Feature(
            float(np.mean(hu < -500)),
            "1",
            "peritumoural",
            f"fraction of voxels below -500 HU in the {d}",
        ),
    }
