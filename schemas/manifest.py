"""The cohort manifest format: one row per artefact (image series, RTSTRUCT, SEG, slide) with
labels.

Written as ``manifest.csv`` and ``manifest.parquet``; it is the training input of the models, so
a real cohort is described by the same columns (the virtual clinic writes its own with
:func:`write_manifest`; a site writes theirs by hand or by script).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

MANIFEST_COLUMNS: tuple[str, ...] = (
    "patient",  # pseudonym
    "timepoint",  # 0 = planning CT; biopsies carry the index of the scan they precede
    "timepoint_label",  # planning, fu1, ..., biopsy0, ...
    "days_from_rt_start",
    "acquired_at",
    "modality",  # CT, PCCT, RTSTRUCT, SEG, WSI
    "series_kind",  # ct, vmi, iodine, rtstruct, seg, he_slide
    "energy_kev",
    "path",  # relative to the cohort folder
    "study_uid",
    "series_uid",
    "phenotype",
    "response_class",  # responder, non_responder, pseudo_progression
    "responder",
    "pseudo_progression",
    "lesion_volume_ml",  # target (irradiated) lesion, true
    "longest_axial_diameter_mm",  # target lesion, true
    "total_lesion_volume_ml",  # all lesions, true
    "sum_of_diameters_mm",  # all lesions, true
    "til_density_per_mm2",  # intratumoral TILs of the nearest biopsy (slides: this slide)
    "change_point_days",  # from first fraction; empty for responders
    "change_point_at",
    "story_version",  # v1 or v2 (clinic.story, clinic.story_v2); v1 when a manifest lacks it
)
MANIFEST_COLUMNS_V2: tuple[str, ...] = (
    *MANIFEST_COLUMNS,
    "pd_l1_tps",  # the diagnostic biopsy's PD-L1 TPS (per cent): the clinical PD-L1
    "in_field_sum_mm",  # RECIST diameters of the irradiated lesions seen, true
    "out_of_field_sum_mm",  # RECIST diameters of the other lesions seen, true
    "new_lesion_count",  # new lesions seen at this timepoint, true
    "lesions_visible",  # lesions seen at this timepoint, true
)
"""Story-v2 manifests add these columns. In v2, the target-lesion columns describe the (first)
irradiated lesion, ``sum_of_diameters_mm`` sums RECIST diameters (short axis for lymph nodes)
over every lesion seen, ``change_point_days`` is the first day of true RECIST progression of a
non-responder, ``phenotype`` is the diagnostic biopsy's (a slide row: that slide's)."""
DEFAULT_STORY_VERSION = "v1"
"""The story of a cohort whose manifest has no ``story_version`` column (written before v2)."""
MANIFEST_CSV = "manifest.csv"
MANIFEST_PARQUET = "manifest.parquet"


def write_manifest(
    rows: Iterable[dict[str, object]],
    cohort_dir: Path,
    columns: tuple[str, ...] = MANIFEST_COLUMNS,
) -> pd.DataFrame:
    """Write the manifest (CSV and Parquet) sorted by patient, time and path; return it."""
    frame = pd.DataFrame(list(rows), columns=list(columns))
    frame = frame.sort_values(["patient", "days_from_rt_start", "path"], kind="stable")
    frame = frame.reset_index(drop=True)
    frame.to_csv(cohort_dir / MANIFEST_CSV, index=False)
    frame.to_parquet(cohort_dir / MANIFEST_PARQUET, index=False)
    return frame


def read_manifest(cohort_dir: Path | str) -> pd.DataFrame:
    """Read a cohort's manifest (Parquet when present, else CSV).

    A manifest written before story v2 has no ``story_version`` column: it is added as ``v1``.
    """
    cohort_dir = Path(cohort_dir)
    if (cohort_dir / MANIFEST_PARQUET).is_file():
        frame = pd.read_parquet(cohort_dir / MANIFEST_PARQUET)
    elif (cohort_dir / MANIFEST_CSV).is_file():
        frame = pd.read_csv(cohort_dir / MANIFEST_CSV)
    else:
        raise FileNotFoundError(f"no {MANIFEST_PARQUET} or {MANIFEST_CSV} in {cohort_dir}")
    if "story_version" not in frame.columns:
        frame["story_version"] = DEFAULT_STORY_VERSION
    return frame
