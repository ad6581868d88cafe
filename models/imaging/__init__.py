"""Imaging science: CT/PCCT reading, lesion masks, burden, radiomics, spectral features, outputs.

One room per concept: :mod:`.series` (folder reader), :mod:`.dicomweb`, :mod:`.pcct`,
:mod:`.lesion` (one lesion), :mod:`.annotations` (every lesion of a SEG or RTSTRUCT),
:mod:`.registration`, :mod:`.propagation` (every lesion, one registration), :mod:`.matching`
(tracking across timepoints), :mod:`.burden`, :mod:`.radiomics`, :mod:`.spectral`,
:mod:`.writers`, :mod:`.pipeline` with :func:`analyse_acquisition` (one lesion, the call a
worker makes today) and :mod:`.study` with :func:`analyse_study` (every lesion).
"""

from models.imaging.annotations import (
    Lesion,
    LesionFailure,
    LesionProblem,
    LesionSet,
    read_lesions,
)
from models.imaging.burden import (
    AxialAxes,
    Burden,
    axial_axes,
    longest_axial_diameter_mm,
    measure_burden,
)
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
from models.imaging.lesion_results import LesionResult, StudyResult
from models.imaging.matching import (
    MatchConfig,
    MatchStatus,
    Observation,
    TrackedLesion,
    TrackingState,
    TrackingUpdate,
    track,
)
from models.imaging.pcct import PcctStudy, find_pcct_series, is_iodine_map, is_multi_energy, vmi_kev
from models.imaging.pipeline import Baseline, ImagingResult, analyse_acquisition
from models.imaging.propagation import Propagation, propagate_lesions, register_study
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
from models.imaging.study import analyse_study
from models.imaging.volume import Geometry, Volume
from models.imaging.writers import (
    LesionOutput,
    TimepointOutput,
    build_lesions_seg,
    build_lesions_sr,
    build_seg,
    build_sr,
    write_lesion_outputs,
    write_outputs,
)

__all__ = [
    "DEFAULT_RADIOMICS_CONFIG",
    "AxialAxes",
    "Baseline",
    "Burden",
    "CtSeries",
    "Feature",
    "Geometry",
    "ImagingResult",
    "Lesion",
    "LesionFailure",
    "LesionMask",
    "LesionOutput",
    "LesionProblem",
    "LesionResult",
    "LesionSet",
    "MaskSource",
    "MatchConfig",
    "MatchStatus",
    "Observation",
    "PcctStudy",
    "Propagation",
    "RadiomicsConfig",
    "RegistrationResult",
    "SeriesIndex",
    "StudyResult",
    "TimepointOutput",
    "TrackedLesion",
    "TrackingState",
    "TrackingUpdate",
    "Volume",
    "analyse_acquisition",
    "analyse_study",
    "axial_axes",
    "build_lesions_seg",
    "build_lesions_sr",
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
    "propagate_lesions",
    "propagate_mask",
    "read_lesion",
    "read_lesions",
    "read_series",
    "read_series_dicomweb",
    "refine_mask",
    "register",
    "register_study",
    "spectral_features",
    "track",
    "vmi_kev",
    "volume_from_datasets",
    "write_lesion_outputs",
    "write_outputs",
]
