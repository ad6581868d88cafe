"""A cohort manifest turned into patient histories: scan features, teacher signatures, labels.

The input is any folder whose manifest (:func:`schemas.manifest.read_manifest` columns) lists
CT/PCCT series, the planning contour (SEG or RTSTRUCT) and H&E slides, with the patient-level
``responder`` label; the virtual clinic writes one, and a hospital can write its own. Treatment
times come from the folder's ``events.jsonl`` (the event contracts) when present.

Each study is analysed exactly as the worker analyses it (:func:`models.imaging.
analyse_acquisition`, follow-ups propagating the planning contour), in worker processes, and
cached per patient, so training never recomputes features. Slides are scored by the pathology
model (the teacher), cached per slide and model version.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from models import imaging
from models.exceptions import InsufficientDataError, IrtmonError
from models.imaging.writers import ALGORITHM_VERSION
from models.pathology import analyse_slide
from models.registry import load_artifact
from models.response.history import Biopsy, History, Scan, Signature, Treatment
from schemas import TreatmentEvent
from schemas.manifest import read_manifest

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``; stages ``"scans"`` and ``"slides"``."""


@dataclass(frozen=True)
class StudyRecord:
    """One CT or PCCT study of a manifest."""

    patient: str
    timepoint: int
    label: str
    at: datetime
    modality: str
    folder: Path
    lesion_path: Path | None


@dataclass
class CohortData:
    """Histories and labels of a cohort."""

    histories: dict[str, History]
    non_responder: dict[str, bool]
    phenotype: dict[str, str]  # ground truth, for evaluation only
    scan_labels: dict[str, str]  # scan key -> timepoint label (planning, fu1, ...)
    skipped: list[str]


def merge_cohorts(parts: Sequence[tuple[Path, CohortData]]) -> CohortData:
    """One cohort from several (a virtual cohort and a site's, or two sites').

    Raises
    ------
    ValueError
        A patient appears in two of them: a patient belongs to one cohort, or the split
        between training and testing patients would leak.
    """
    merged = CohortData({}, {}, {}, {}, [])
    origin: dict[str, Path] = {}
    for folder, data in parts:
        for patient in data.histories:
            if patient in origin:
                raise ValueError(
                    f"patient {patient} is in both {origin[patient]} and {folder}: "
                    "each patient must be in one cohort only"
                )
            origin[patient] = folder
        merged.histories.update(data.histories)
        merged.non_responder.update(data.non_responder)
        merged.phenotype.update(data.phenotype)
        merged.scan_labels.update(data.scan_labels)
        merged.skipped.extend(data.skipped)
    return merged


def _abs(cohort_dir: Path, path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else cohort_dir / p


def studies_from_manifest(cohort_dir: Path, manifest: pd.DataFrame) -> list[StudyRecord]:
    """Every CT/PCCT study (one per patient and timepoint) with its contour when it has one."""
    images = manifest[manifest["modality"].isin(["CT", "PCCT"])]
    contours = manifest[manifest["modality"].isin(["SEG", "RTSTRUCT"])]
    out = []
    for (patient, timepoint), rows in images.groupby(["patient", "timepoint"], sort=True):
        first = rows.iloc[0]
        folders = {_abs(cohort_dir, str(p)).parent for p in rows["path"]}
        if len(folders) != 1:
            raise InsufficientDataError(
                f"{patient} timepoint {timepoint}: series in several study folders {folders}"
            )
        mine = contours[(contours["patient"] == patient) & (contours["timepoint"] == timepoint)]
        lesion = None
        for kind in ("SEG", "RTSTRUCT"):
            hit = mine[mine["modality"] == kind]
            if not hit.empty:
                lesion = _abs(cohort_dir, str(hit.iloc[0]["path"]))
                break
        out.append(
            StudyRecord(
                patient=str(patient),
                timepoint=int(timepoint),
                label=str(first["timepoint_label"]),
                at=pd.Timestamp(first["acquired_at"]).to_pydatetime(),
                modality="PCCT" if (rows["modality"] == "PCCT").any() else "CT",
                folder=folders.pop(),
                lesion_path=lesion,
            )
        )
    return out


def analyse_patient(studies: Sequence[StudyRecord]) -> list[dict[str, Any]] | str:
    """Analyse one patient's studies in time order, as the worker does; or the reason not."""

    studies = sorted(studies, key=lambda s: s.at)
    rows: list[dict[str, Any]] = []
    baseline = None
    try:
        for s in studies:
            result = imaging.analyse_acquisition(
                s.folder,
                lesion_path=s.lesion_path,
                baseline=None if s.lesion_path is not None else baseline,
            )
            if baseline is None:
                baseline = result.as_baseline()
            rows.append(
                {
                    "patient": s.patient,
                    "timepoint": s.timepoint,
                    "label": s.label,
                    "at": s.at.isoformat(),
                    "pcct": s.modality == "PCCT",
                    "volume_ml": result.burden.volume_ml,
                    "diameter_mm": result.burden.longest_diameter_mm,
                    "mask_source": result.provenance["mask_source"],
                    "extractor": result.provenance["algorithm"],
                    "extractor_version": result.provenance["algorithm_version"],
                    "features": {
                        k: (None if v.value is None else float(v.value))
                        for k, v in result.features.items()
                    },
                }
            )
    except (IrtmonError, OSError, ValueError) as err:
        return f"{studies[0].patient}: {err}"
    return rows


def _write_atomic(path: Path, text: str) -> None:
    """Write a cache file whole or not at all (two runs may share the cache)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _study_cache_key(studies: Sequence[StudyRecord]) -> str:

    blob = json.dumps(
        [ALGORITHM_VERSION]
        + [
            [
                str(s.folder.resolve()),
                str(s.lesion_path.resolve()) if s.lesion_path else None,
                s.at.isoformat(),
            ]
            for s in studies
        ]
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def scan_features(
    cohort_dir: Path,
    manifest: pd.DataFrame,
    cache_dir: Path,
    *,
    workers: int = 1,
    progress: Progress | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows of every analysed study, from the per-patient cache or computed now."""
    studies = studies_from_manifest(cohort_dir, manifest)
    by_patient: dict[str, list[StudyRecord]] = {}
    for s in studies:
        by_patient.setdefault(s.patient, []).append(s)
    cache_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    todo = []
    for patient, mine in sorted(by_patient.items()):
        path = cache_dir / f"{patient}-{_study_cache_key(mine)}.json"
        if path.is_file():
            rows.extend(json.loads(path.read_text()))
        else:
            todo.append((path, mine))
    done = len(by_patient) - len(todo)
    if progress:
        progress("scans", done, len(by_patient))

    def keep(path: Path, result: list[dict[str, Any]] | str) -> None:
        nonlocal done
        done += 1
        if isinstance(result, str):
            skipped.append(result)
            log.warning("skipped %s", result)
        else:
            _write_atomic(path, json.dumps(result))
            rows.extend(result)
        if progress:
            progress("scans", done, len(by_patient))

    if workers > 1 and len(todo) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for (path, _), result in zip(
                todo, pool.map(analyse_patient, [m for _, m in todo], chunksize=1), strict=True
            ):
                keep(path, result)
    else:
        for path, mine in todo:
            keep(path, analyse_patient(mine))
    return rows, skipped


def _score_slide(args: tuple[str, str, str]) -> dict[str, float] | str:

    path, folder, sha = args
    try:
        r = analyse_slide(path, folder, expected_sha256=sha, mc_samples=0)
    except (IrtmonError, OSError, ValueError) as err:
        return f"{path}: {err}"
    return {
        "p_inflamed": r.probabilities["inflamed"],
        "p_excluded": r.probabilities["excluded"],
        "p_desert": r.probabilities["desert"],
        "til_density": r.til_score,
    }


def teacher_signatures(
    cohort_dir: Path,
    manifest: pd.DataFrame,
    pathology_folder: Path,
    cache_dir: Path,
    *,
    workers: int = 1,
    progress: Progress | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """The pathology model's signature of every H&E slide (one row per slide)."""

    artifact = load_artifact(pathology_folder)
    slides = manifest[manifest["modality"] == "WSI"]
    if "series_kind" in slides:
        slides = slides[slides["series_kind"].fillna("he_slide") == "he_slide"]
    cache_file = cache_dir / f"teacher-{artifact.name}-{artifact.version}.json"
    cache: dict[str, Any] = json.loads(cache_file.read_text()) if cache_file.is_file() else {}
    todo = [
        str(_abs(cohort_dir, str(p)).resolve())
        for p in slides["path"]
        if str(_abs(cohort_dir, str(p)).resolve()) not in cache
    ]
    done = len(slides) - len(todo)
    if progress:
        progress("slides", done, len(slides))
    args = [(p, str(artifact.folder), artifact.sha256) for p in todo]
    results: list[dict[str, float] | str]
    if workers > 1 and len(args) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = []
            for r in pool.map(_score_slide, args, chunksize=2):
                results.append(r)
                done += 1
                if progress:
                    progress("slides", done, len(slides))
    else:
        results = []
        for a in args:
            results.append(_score_slide(a))
            done += 1
            if progress:
                progress("slides", done, len(slides))
    by_abs = dict(zip(todo, results, strict=True))
    rows, skipped = [], []
    for row in slides.itertuples(index=False):
        key = str(_abs(cohort_dir, str(row.path)).resolve())  # the slide's real path
        value = cache.get(key, by_abs.get(key))
        if isinstance(value, str) or value is None:
            skipped.append(value or f"{row.path}: not scored")
            continue
        cache[key] = value
        rows.append(
            {
                "patient": str(row.patient),
                "at": pd.Timestamp(row.acquired_at).to_pydatetime().isoformat(),
                "path": str(row.path),
                **value,
            }
        )
    cache_dir.mkdir(parents=True, exist_ok=True)
    _write_atomic(cache_file, json.dumps(cache))
    return rows, skipped


def treatments_from_events(cohort_dir: Path) -> dict[str, Treatment]:
    """RT start and ICI dose times per patient from the cohort's ``events.jsonl``, if any."""

    path = cohort_dir / "events.jsonl"
    if not path.is_file():
        return {}
    starts: dict[str, datetime] = {}
    doses: dict[str, list[datetime]] = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if record.get("topic") != "treatment.events":
            continue
        event = TreatmentEvent.model_validate(record["event"])
        kind = event.treatment.kind
        if kind == "rt_course_start":
            starts.setdefault(event.patient, event.occurred_at)
        elif kind == "immunotherapy_dose":
            doses.setdefault(event.patient, []).append(event.occurred_at)
    return {
        p: Treatment(rt_start=starts.get(p), ici_doses=tuple(sorted(doses.get(p, []))))
        for p in set(starts) | set(doses)
    }


def select(
    manifest: pd.DataFrame, max_patients: int | None, max_timepoint: int | None
) -> pd.DataFrame:
    """The first ``max_patients`` patients (sorted) and timepoints up to ``max_timepoint``."""
    if max_patients is not None:
        keep = sorted(manifest["patient"].unique())[:max_patients]
        manifest = manifest[manifest["patient"].isin(keep)]
    if max_timepoint is not None:
        manifest = manifest[manifest["timepoint"] <= max_timepoint]
    return manifest


def load_cohort(
    cohort_dir: Path | str,
    cache_dir: Path,
    *,
    pathology_folder: Path | None,
    workers: int = 1,
    progress: Progress | None = None,
    max_patients: int | None = None,
    max_timepoint: int | None = None,
) -> CohortData:
    """Histories (scans with features, teacher-scored biopsies, treatment) and labels.

    ``max_patients`` keeps the first patients (by pseudonym) and ``max_timepoint`` the studies
    up to that timepoint index (0 = planning), to bound the time a run spends on features.
    """

    cohort_dir = Path(cohort_dir)
    manifest = select(read_manifest(cohort_dir), max_patients, max_timepoint)
    for column in ("patient", "timepoint", "modality", "path", "acquired_at", "responder"):
        if column not in manifest:
            raise InsufficientDataError(f"the manifest of {cohort_dir} has no {column!r} column")
    scan_rows, skipped = scan_features(
        cohort_dir, manifest, cache_dir / "scans", workers=workers, progress=progress
    )
    biopsy_rows: list[dict[str, Any]] = []
    if pathology_folder is not None:
        biopsy_rows, bad = teacher_signatures(
            cohort_dir, manifest, pathology_folder, cache_dir, workers=workers, progress=progress
        )
        skipped += bad
    treatments = treatments_from_events(cohort_dir)
    scans: dict[str, list[Scan]] = {}
    labels: dict[str, str] = {}
    for r in scan_rows:
        key = f"{r['patient']}/{r['timepoint']}"
        labels[key] = r["label"]
        scans.setdefault(r["patient"], []).append(
            Scan(
                at=datetime.fromisoformat(r["at"]),
                volume_ml=float(r["volume_ml"]),
                diameter_mm=float(r["diameter_mm"]),
                features=r["features"],
                pcct=bool(r["pcct"]),
                key=key,
            )
        )
    biopsies: dict[str, list[Biopsy]] = {}
    for r in biopsy_rows:
        biopsies.setdefault(r["patient"], []).append(
            Biopsy(
                at=datetime.fromisoformat(r["at"]),
                signature=Signature(
                    r["p_inflamed"], r["p_excluded"], r["p_desert"], r["til_density"]
                ),
            )
        )
    per_patient = manifest.drop_duplicates("patient").set_index("patient")
    histories = {
        p: History(
            scans=tuple(sorted(s, key=lambda x: x.at)),
            biopsies=tuple(sorted(biopsies.get(p, []), key=lambda b: b.at)),
            treatment=treatments.get(p, Treatment()),
        )
        for p, s in scans.items()
    }
    responder = per_patient["responder"].map(lambda v: str(v).lower() in ("true", "1", "yes"))
    return CohortData(
        histories=histories,
        non_responder={p: not bool(responder[p]) for p in histories},
        phenotype={
            p: str(per_patient.at[p, "phenotype"]) if "phenotype" in per_patient else ""
            for p in histories
        },
        scan_labels=labels,
        skipped=skipped,
    )
