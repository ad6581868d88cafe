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
)
MANIFEST_CSV = "manifest.csv"
MANIFEST_PARQUET = "manifest.parquet"


def write_manifest(rows: Iterable[dict[str, object]], cohort_dir: Path) -> pd.DataFrame:
    """Write the manifest (CSV and Parquet) sorted by patient, time and path; return it."""
    frame = pd.DataFrame(list(rows), columns=list(MANIFEST_COLUMNS))
    frame = frame.sort_values(["patient", "days_from_rt_start", "path"], kind="stable")
    frame = frame.reset_index(drop=True)
    frame.to_csv(cohort_dir / MANIFEST_CSV, index=False)
    frame.to_parquet(cohort_dir / MANIFEST_PARQUET, index=False)
    return frame


def read_manifest(cohort_dir: Path | str) -> pd.DataFrame:
    """Read a cohort's manifest (Parquet when present, else CSV)."""
    cohort_dir = Path(cohort_dir)
    if (cohort_dir / MANIFEST_PARQUET).is_file():
        return pd.read_parquet(cohort_dir / MANIFEST_PARQUET)
    if (cohort_dir / MANIFEST_CSV).is_file():
        return pd.read_csv(cohort_dir / MANIFEST_CSV)
    raise FileNotFoundError(f"no {MANIFEST_PARQUET} or {MANIFEST_CSV} in {cohort_dir}")
