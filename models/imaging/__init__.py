"""Imaging science: CT/PCCT reading, lesion masks, burden, radiomics, spectral features, outputs.

One room per concept: :mod:`.series` (folder reader), :mod:`.dicomweb`, :mod:`.pcct`,
:mod:`.lesion`, :mod:`.registration`, :mod:`.burden`, :mod:`.radiomics`, :mod:`.spectral`,
:mod:`.writers`, and :mod:`.pipeline` with :func:`analyse_acquisition`, the one call a worker
makes.
"""

from models.imaging.burden import Burden, longest_axial_diameter_mm, measure_burden
from models.imaging.dicomweb import read_series_dicomweb
from models.imaging.features import Feature
from models.imaging.lesion import (
    LesionMask,
    MaskSource,
    mask_from_rtstruct,
    mask_from_seg,
    read_lesion,
    refine_mask,
)
from models.imaging.pcct import PcctStudy, find_pcct_series, is_iodine_map, is_multi_energy, vmi_kev
from models.imaging.pipeline import Baseline, ImagingResult, analyse_acquisition
from models.imaging.radiomics import (
    DEFAULT_RADIOMICS_CONFIG,
    RadiomicsConfig,
    compute_radiomics,
    peritumoural_features,
)
from models.imaging.registration import RegistrationResult, propagate_mask, register
from models.imaging.series import (
    CtSeries,
    SeriesIndex,
    index_folder,
    read_series,
    volume_from_datasets,
)
from models.imaging.spectral import spectral_features
from models.imaging.volume import Geometry, Volume
from models.imaging.writers import build_seg, build_sr, write_outputs

__all__ = [
    "DEFAULT_RADIOMICS_CONFIG",
    "Baseline",
    "Burden",
    "CtSeries",
    "Feature",
    "Geometry",
    "ImagingResult",
    "LesionMask",
    "MaskSource",
    "PcctStudy",
    "RadiomicsConfig",
    "RegistrationResult",
    "SeriesIndex",
    "Volume",
    "analyse_acquisition",
    "build_seg",
    "build_sr",
    "compute_radiomics",
    "find_pcct_series",
    "index_folder",
    "is_iodine_map",
    "is_multi_energy",
    "longest_axial_diameter_mm",
    "mask_from_rtstruct",
    "mask_from_seg",
    "measure_burden",
    "peritumoural_features",
    "propagate_mask",
    "read_lesion",
    "read_series",
    "read_series_dicomweb",
    "refine_mask",
    "register",
    "spectral_features",
    "vmi_kev",
    "volume_from_datasets",
    "write_outputs",
]
