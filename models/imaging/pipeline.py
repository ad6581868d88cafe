"""One acquisition in, burden and features out: :func:`analyse_acquisition`.

A worker calls it with the acquisition's location(s) and, for a follow-up scan, the baseline
(volume and lesion mask of the planning CT). It reads the series, recognises a multi-energy
study, obtains the lesion (RTSTRUCT/SEG, or propagation from the baseline and refinement),
measures the burden and computes radiomics, spectral and peritumoural features, and writes the
DICOM SEG and SR when asked to. Pure: no broker, database or UI imports.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from models.exceptions import InsufficientDataError, UnreadableInputError
from models.imaging.annotations import Lesion
from models.imaging.burden import Burden, measure_burden
from models.imaging.dicomweb import SeriesRetriever, read_series_dicomweb
from models.imaging.enhancement import enhancement_features, iodine_pattern_features
from models.imaging.features import Feature
from models.imaging.lesion import (
    LesionMask,
    MaskSource,
    read_lesion,
    refine_outline,
    runs_into_surroundings,
)
from models.imaging.pcct import PcctStudy, find_pcct_series, vmi_kev
from models.imaging.radiomics import (
    DEFAULT_RADIOMICS_CONFIG,
    RadiomicsConfig,
    compute_radiomics,
    peritumoural_features,
)
from models.imaging.registration import BaselineSide, propagate_mask, register
from models.imaging.series import CtSeries, SeriesIndex, index_folder, read_series
from models.imaging.spectral import mask_on_grid, spectral_features
from models.imaging.volume import Volume, dice, values_in
from models.imaging.writers import ALGORITHM_NAME, ALGORITHM_VERSION, write_outputs

__all__ = ["Baseline", "ImagingResult", "analyse_acquisition"]

log = logging.getLogger(__name__)


@dataclass
class Baseline:
    """The baseline scan a follow-up's lesions are propagated from and matched to.

    ``mask`` is the target lesion (what :func:`analyse_acquisition` propagates); ``lesions``
    every baseline lesion with its tracking UID (what :func:`~models.imaging.study.analyse_study`
    propagates and matches), empty for a baseline of one lesion.
    """

    volume: Volume
    mask: np.ndarray
    series_uid: str = ""
    lesions: list[Lesion] = field(default_factory=list)
    frame_of_reference_uid: str = ""
    registration_side: BaselineSide | None = field(default=None, repr=False, compare=False)
    """The baseline's half of the last registration to it
    (:class:`~models.imaging.registration.BaselineSide`), kept for its next follow-up: a cohort
    run's, or a worker's baseline kept in memory."""

    @property
    def lesion_hu(self) -> float:
        """Median attenuation inside the baseline lesion."""
        return float(np.median(values_in(self.volume.array, self.mask)))

    @property
    def lesion_hu_max(self) -> float:
        """99th percentile of attenuation inside the baseline lesion."""
        return float(np.percentile(values_in(self.volume.array, self.mask), 99))


@dataclass
class ImagingResult:
    """Burden, features and provenance of one acquisition."""

    study_uid: str
    series_uid: str
    modality: str
    burden: Burden | None
    """The (primary) lesion's measures; None for a study of which no lesion was evaluable
    (:func:`models.imaging.analyse_study`)."""
    features: dict[str, Feature]
    provenance: dict[str, Any]
    volume: Volume = field(repr=False)
    mask: np.ndarray = field(repr=False)
    headers: list[Dataset] = field(repr=False, default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)

    def as_baseline(self) -> Baseline:
        """This scan as the baseline of later follow-ups."""
        return Baseline(self.volume, self.mask, self.series_uid)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary (no arrays)."""
        return {
            "study_uid": self.study_uid,
            "series_uid": self.series_uid,
            "modality": self.modality,
            "burden": None
            if self.burden is None
            else {
                "volume_ml": round(self.burden.volume_ml, 4),
                "longest_axial_diameter_mm": round(self.burden.longest_diameter_mm, 3),
                "diameter_slice": self.burden.diameter_slice,
                "voxels": self.burden.voxels,
            },
            "features": {k: v.as_dict() for k, v in sorted(self.features.items())},
            "provenance": self.provenance,
            "outputs": self.outputs,
        }


def _is_url(location: str | Path) -> bool:
    return str(location).startswith(("http://", "https://"))


def _merge_indexes(locations: Sequence[str | Path]) -> SeriesIndex:
    merged: SeriesIndex | None = None
    for loc in locations:
        idx = index_folder(loc)
        if merged is None:
            merged = idx
            continue
        for uid, paths in idx.images.items():
            merged.images.setdefault(uid, []).extend(paths)
        for uid, paths in idx.contours.items():
            merged.contours.setdefault(uid, []).extend(paths)
        merged.modality.update({k: v for k, v in idx.modality.items() if k not in merged.modality})
        merged.headers.update({k: v for k, v in idx.headers.items() if k not in merged.headers})
        merged.instances.update(idx.instances)
        for uid, size in idx.decoded_bytes.items():
            merged.decoded_bytes[uid] = merged.decoded_bytes.get(uid, 0) + size
    assert merged is not None
    return merged


def _series_record(s: CtSeries) -> dict[str, Any]:
    header = s.headers[0] if s.headers else Dataset()
    return {
        "series_uid": s.series_uid,
        "kev": vmi_kev(header),
        "kernel": s.kernel,
        "reconstruction": {
            "description": s.description,
            "image_type": list(s.image_type),
            "slice_thickness_mm": float(header.get("SliceThickness", 0) or 0) or None,
            "spacing_mm": list(s.volume.geometry.spacing),
        },
        "manufacturer": s.manufacturer,
        "model": s.model,
        "unit": s.volume.unit,
    }


def _lesion_from_contours(
    index: SeriesIndex, ref: CtSeries, label: str | None
) -> LesionMask | None:
    for wanted in ("SEG", "RTSTRUCT"):
        for uid, paths in sorted(index.contours.items()):
            if index.modality.get(uid) != wanted:
                continue
            for path in paths:
                try:
                    return read_lesion(path, ref.volume, label, ref.frame_of_reference_uid)
                except UnreadableInputError as err:
                    log.info("skipping %s: %s", path, err)
    return None


def _optional(
    compute: Callable[[Volume, np.ndarray], dict[str, Feature]], volume: Volume, mask: np.ndarray
) -> dict[str, Feature]:
    """Features that a lesion too small for them (no rim, no core) simply lacks."""
    try:
        return compute(volume, mask)
    except InsufficientDataError as err:
        log.info("no %s: %s", compute.__name__, err)
        return {}


def analyse_acquisition(
    location: str | Path | Sequence[str | Path],
    *,
    series_uid: str | None = None,
    study_uid: str | None = None,
    lesion_path: str | Path | None = None,
    lesion_label: str | None = None,
    baseline: Baseline | None = None,
    config: RadiomicsConfig = DEFAULT_RADIOMICS_CONFIG,
    radiomics: bool = True,
    peritumoural: bool = True,
    enhancement: bool = True,
    deformable: bool = False,
    output_dir: str | Path | None = None,
    dicomweb_client: SeriesRetriever | None = None,
) -> ImagingResult:
    """Burden, features and provenance of one CT or PCCT acquisition.

    Parameters
    ----------
    location
        A study or series folder, several folders, or a DICOMweb root URL (then ``study_uid``
        and ``series_uid`` are required).
    series_uid
        The CT series to analyse; for a PCCT study the VMI nearest 70 keV is chosen when left
        out, for a CT folder the only image series.
    study_uid
        Needed for DICOMweb.
    lesion_path
        RTSTRUCT or SEG of the lesion; when left out, one found in the folder is used.
    lesion_label
        ROI name or segment label (default: the first that looks like a target: GTV, tumour...).
    baseline
        Baseline volume and lesion, for a scan without contours.
    config
        Radiomics settings (versioned).
    radiomics, peritumoural, enhancement, deformable
        Switches for the radiomics, the peritumoural ring, the rim-to-core enhancement pattern
        (:mod:`models.imaging.enhancement`) and the deformable registration stage.
    output_dir
        When given, ``lesion-seg.dcm`` and ``burden-sr.dcm`` are written there.
    dicomweb_client
        A ready DICOMweb client (tests).

    Raises
    ------
    UnreadableInputError
        A series or lesion reference cannot be read (message names it and the problem).
    InsufficientDataError
        No lesion reference and no baseline, or an empty lesion.
    OSError
        Transient I/O (a DICOMweb server down): retry.
    """
    loaded = load_acquisition(
        location, series_uid=series_uid, study_uid=study_uid, dicomweb_client=dicomweb_client
    )
    ref, index, pcct, series_by_uid = loaded.ref, loaded.index, loaded.pcct, loaded.series
    volume = ref.volume

    # the lesion
    registration: dict[str, Any] = {}
    lesion: LesionMask | None = None
    if lesion_path is not None:
        lesion = read_lesion(lesion_path, volume, lesion_label, ref.frame_of_reference_uid)
    elif index is not None and index.contours:
        lesion = _lesion_from_contours(index, ref, lesion_label)
    if lesion is None:
        if baseline is None:
            raise InsufficientDataError(
                f"series {ref.series_uid}: no RTSTRUCT or SEG and no baseline to propagate from"
            )
        reg = register(
            volume,
            baseline.volume,
            baseline.mask,
            deformable=deformable,
            baseline=baseline.registration_side,
        )
        baseline.registration_side = reg.baseline
        carried = propagate_mask(baseline.mask, baseline.volume, volume, reg.transform)
        if not carried.any():
            raise InsufficientDataError(
                f"series {ref.series_uid}: the propagated lesion fell outside the scan"
            )
        # a kept B-spline stage already follows the lesion's growth or shrinkage: refine
        # within a narrower band then
        growth = 6.0 if reg.stage == "rigid+bspline" else 12.0
        outline = refine_outline(
            volume, carried, baseline.lesion_hu, growth, lesion_hu_max=baseline.lesion_hu_max
        )
        why = runs_into_surroundings(outline, growth)
        if why is not None:  # as for every lesion of a study (models.imaging.propagation)
            raise InsufficientDataError(
                f"series {ref.series_uid}: the propagated lesion cannot be outlined without "
                f"the reader's outline: {why}"
            )
        refined = outline.mask
        registration = {
            **reg.quality(),
            "baseline_series_uid": baseline.series_uid,
            "propagated_volume_ml": round(
                float(np.count_nonzero(carried)) * volume.geometry.voxel_ml, 4
            ),
            "dice_propagated_refined": round(dice(carried, refined), 4),
        }
        lesion = LesionMask(refined, MaskSource.PROPAGATED, "propagated target lesion")
    mask = lesion.mask

    burden = measure_burden(mask, volume.geometry)
    features = burden_features(burden, ref)
    features.update(
        lesion_features(
            volume,
            mask,
            ref,
            config=config,
            radiomics=radiomics,
            peritumoural=peritumoural,
            enhancement=enhancement,
        )
    )
    features.update(spectral_for(loaded, mask, enhancement=enhancement))
    ref_kev = vmi_kev(ref.headers[0]) if ref.headers else None

    provenance: dict[str, Any] = {
        "algorithm": ALGORITHM_NAME,
        "algorithm_version": ALGORITHM_VERSION,
        "study_uid": ref.study_uid,
        "frame_of_reference_uid": ref.frame_of_reference_uid,
        "reference_series_uid": ref.series_uid,
        "series_uids": sorted(series_by_uid),
        "series": {uid: _series_record(s) for uid, s in sorted(series_by_uid.items())},
        "multi_energy": pcct.is_pcct,
        "kev": ref_kev,
        "kernel": ref.kernel,
        "mask_source": lesion.source.value,
        "mask_label": lesion.label,
        "mask_reference_uid": lesion.reference_uid,
        "registration": registration or None,
        "feature_config_version": config.version,
        "feature_config": config.as_dict(),
        "radiomics_library": mirp_version() if radiomics else None,
    }
    result = ImagingResult(
        study_uid=ref.study_uid,
        series_uid=ref.series_uid,
        modality="PCCT" if pcct.is_pcct else "CT",
        burden=burden,
        features=features,
        provenance=provenance,
        volume=volume,
        mask=mask,
        headers=ref.headers,
    )
    if output_dir is not None:
        seg_path, sr_path = write_outputs(output_dir, ref.headers, mask, lesion.source, burden)
        result.outputs = {"seg": str(seg_path), "sr": str(sr_path)}
    return result


def mirp_version() -> str:
    """The MIRP version for provenance."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"mirp {version('mirp')}"
    except PackageNotFoundError:
        return "mirp (unknown version)"


@dataclass
class LoadedAcquisition:
    """The reference series of an acquisition and what else the study holds."""

    ref: CtSeries
    index: SeriesIndex | None
    pcct: PcctStudy
    series: dict[str, CtSeries]
    """Series read so far, by UID (the reference, then the spectral ones)."""


def load_acquisition(
    location: str | Path | Sequence[str | Path],
    *,
    series_uid: str | None = None,
    study_uid: str | None = None,
    dicomweb_client: SeriesRetriever | None = None,
) -> LoadedAcquisition:
    """Read the reference series of a folder, several folders or a DICOMweb study.

    For a PCCT study without ``series_uid`` the VMI nearest 70 keV is the reference.

    Raises
    ------
    UnreadableInputError
        The series cannot be read (the message names it).
    ValueError
        A DICOMweb location without ``study_uid`` and ``series_uid``.
    """
    locations = [location] if isinstance(location, (str, Path)) else list(location)
    pcct = PcctStudy()
    index: SeriesIndex | None = None
    if len(locations) == 1 and _is_url(locations[0]):
        if not (study_uid and series_uid):
            raise ValueError("a DICOMweb location needs study_uid and series_uid")
        ref = read_series_dicomweb(str(locations[0]), study_uid, series_uid, client=dicomweb_client)
        series_by_uid = {ref.series_uid: ref}
    else:
        index = _merge_indexes(locations)
        pcct = find_pcct_series(index)
        if series_uid is None and pcct.is_pcct:
            kev = pcct.reference_kev()
            series_uid = pcct.vmi[kev] if kev is not None else None
        ref = read_series(index.root, series_uid, index=index)
        series_by_uid = {ref.series_uid: ref}
    return LoadedAcquisition(ref, index, pcct, series_by_uid)


def burden_features(burden: Burden, ref: CtSeries) -> dict[str, Feature]:
    """The burden as features: volume and RECIST longest diameter (and short axis)."""
    tag = {"series_uid": ref.series_uid, "kev": vmi_kev(ref.headers[0]) if ref.headers else None}
    return {
        "burden_volume_ml": Feature(
            burden.volume_ml,
            "ml",
            "burden",
            "lesion volume: voxel count x voxel volume of the lesion mask",
            **tag,
        ),
        "burden_longest_axial_diameter_mm": Feature(
            burden.longest_diameter_mm,
            "mm",
            "burden",
            "RECIST 1.1 longest diameter: max Feret diameter of the mask outline over axial slices",
            **tag,
        ),
    }


def lesion_features(
    volume: Volume,
    mask: np.ndarray,
    ref: CtSeries,
    *,
    config: RadiomicsConfig = DEFAULT_RADIOMICS_CONFIG,
    radiomics: bool = True,
    peritumoural: bool = True,
    enhancement: bool = True,
) -> dict[str, Feature]:
    """Radiomics, peritumoural and enhancement features of one lesion (on its cropped region),
    tagged with the series they were computed on."""
    tag = {"series_uid": ref.series_uid, "kev": vmi_kev(ref.headers[0]) if ref.headers else None}
    features: dict[str, Feature] = {}
    if radiomics:
        features.update(
            {k: replace(v, **tag) for k, v in compute_radiomics(volume, mask, config).items()}
        )
    if peritumoural:
        features.update(
            {k: replace(v, **tag) for k, v in peritumoural_features(volume, mask, config).items()}
        )
    if enhancement:
        features.update(
            {k: replace(v, **tag) for k, v in _optional(enhancement_features, volume, mask).items()}
        )
    return features


def spectral_for(
    loaded: LoadedAcquisition, mask: np.ndarray, *, enhancement: bool = True
) -> dict[str, Feature]:
    """Spectral features of one lesion of a multi-energy study (none for plain CT); the series
    read on the way are added to ``loaded.series``."""
    index, pcct, ref, series_by_uid = loaded.index, loaded.pcct, loaded.ref, loaded.series
    volume = ref.volume
    features: dict[str, Feature] = {}
    if index is None or not pcct.is_pcct or len(pcct.vmi) + (pcct.iodine_map is not None) <= 1:
        return features
    vmis: dict[float, Volume] = {}
    for kev, uid in sorted(pcct.vmi.items()):
        s = series_by_uid.get(uid) or read_series(index.root, uid, index=index)
        series_by_uid[uid] = s
        if s.frame_of_reference_uid == ref.frame_of_reference_uid:
            vmis[kev] = s.volume
    iodine = None
    if pcct.iodine_map is not None:
        s = series_by_uid.get(pcct.iodine_map) or read_series(
            index.root, pcct.iodine_map, index=index
        )
        series_by_uid[s.series_uid] = s
        if s.frame_of_reference_uid == ref.frame_of_reference_uid:
            iodine = s.volume
    spectral = spectral_features(vmis, mask, volume, iodine)
    if enhancement and iodine is not None:
        spectral.update(
            _optional(iodine_pattern_features, iodine, mask_on_grid(mask, volume, iodine))
        )
    for name, feat in spectral.items():
        kev = None
        if name.startswith("spec_mean_hu_"):
            kev = float(name.removeprefix("spec_mean_hu_").removesuffix("kev"))
        uid = (
            pcct.vmi.get(kev, "")
            if kev is not None
            else (pcct.iodine_map or "" if "iodine" in name else "")
        )
        features[name] = replace(feat, series_uid=uid, kev=kev)
    return features
