"""A cohort manifest turned into patient histories: scan features, teacher signatures, labels.

The input is any folder whose manifest (:func:`schemas.manifest.read_manifest` columns) lists
CT/PCCT series, the planning contour (SEG or RTSTRUCT) and H&E slides, with the patient-level
``responder`` label; the virtual clinic writes one, and a hospital can write its own. Treatment
times come from the folder's ``events.jsonl`` (the event contracts) when present.

Each patient's studies are analysed in time order as the worker analyses them
(:func:`models.imaging.analyse_study`: every lesion of the study's annotation, or every baseline
lesion propagated when a follow-up has none; lesions matched to the tracked ones, the tracking
state carried from one study to the next; RECIST 1.1 and iRECIST assessed at each). A story-v1
cohort (one contoured lesion) goes through the same code: its one lesion is the patient's only
lesion. Each scan keeps the primary lesion's burden and features (what the virtual biopsy
reads) and the :class:`~models.response.history.LesionReadout` of every lesion.

Extraction (:func:`extract_features`) runs patients in worker processes with progress, and
caches each patient's rows in one file as soon as the patient is done, so a killed run resumes
where it stopped. A cache file is used only when its recorded pipeline versions
(:func:`pipeline_versions`: algorithm versions, the source of the code that computes the
features, library versions, options) and its inputs' identity (every file of every study:
path, size, modification time; the annotation used; the acquisition time) are those of now:
a changed pipeline or a changed study never reuses stale features. Slides are scored by the
pathology model (the teacher), cached per slide and model version.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from datetime import datetime
from functools import lru_cache
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import pandas as pd

from models import imaging
from models.exceptions import InsufficientDataError, IrtmonError
from models.imaging.radiomics import DEFAULT_RADIOMICS_CONFIG
from models.imaging.study import LESION_ALGORITHM
from models.imaging.writers import ALGORITHM_VERSION
from models.pathology import analyse_slide
from models.registry import load_artifact
from models.response.history import (
    Biopsy,
    History,
    LabResult,
    LesionReadout,
    Scan,
    Signature,
    Treatment,
)
from schemas import BiopsyAcquired, TreatmentEvent
from schemas.manifest import read_manifest

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``; stages ``"scans"`` (patients) and ``"slides"``."""

FEATURES_FORMAT = "irtmon-cohort-features/2"
"""Format of a patient's cache file (and of its rows); bump it when a row changes."""
FINGERPRINTED = ("models/imaging", "models/changepoint", "models/response/cohort.py")
"""Source folders and files whose text is part of :func:`pipeline_versions`."""


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
    extraction: FeatureRun | None = None
    story_versions: tuple[str, ...] = ()  # of the virtual clinic (manifest story_version)


@dataclass(frozen=True)
class ExtractionOptions:
    """What the cohort extraction computes beyond burden, enhancement and spectral features.

    ``radiomics``: also the radiomics and peritumoural features of every lesion (as the worker
    computes them). Off by default: the models' default inputs (the virtual biopsy's
    ``burden_``, ``enh_``, ``spec_`` families, the response model's burden and lesion readout)
    need neither, and they are most of a study's time. Turn it on for a virtual biopsy that
    reads ``rad_`` or ``peri_`` features; the cache key differs either way.
    """

    radiomics: bool = False


@dataclass
class FeatureRun:
    """What one extraction did: rows, skipped patients, and how fast.

    ``studies_computed`` / ``patients_computed``: analysed now; ``studies_cached`` /
    ``patients_cached``: read from the cache; ``stale``: cache files refused (versions or inputs
    changed); ``cpu_s``: CPU time of the patients analysed now, summed over their processes.
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    patients: int = 0
    patients_computed: int = 0
    patients_cached: int = 0
    studies_computed: int = 0
    studies_cached: int = 0
    stale: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    workers: int = 1
    cores: int = 1

    @property
    def studies_per_hour(self) -> float | None:
        """Studies analysed now per hour of wall time (None when none were)."""
        if not self.studies_computed or self.wall_s <= 0:
            return None
        return self.studies_computed * 3600.0 / self.wall_s

    @property
    def studies_per_hour_per_core(self) -> float | None:
        """:attr:`studies_per_hour` over the cores used (``min(workers, CPUs)``)."""
        rate = self.studies_per_hour
        return None if rate is None else rate / max(self.cores, 1)

    @property
    def studies_per_cpu_hour(self) -> float | None:
        """Studies analysed now per hour of CPU time of the processes that analysed them."""
        if not self.studies_computed or self.cpu_s <= 0:
            return None
        return self.studies_computed * 3600.0 / self.cpu_s

    def summary(self) -> dict[str, Any]:
        """The numbers, without the rows (JSON-ready)."""
        out = {k: v for k, v in asdict(self).items() if k != "rows"}
        out["skipped"] = len(self.skipped)
        for name in ("studies_per_hour", "studies_per_hour_per_core", "studies_per_cpu_hour"):
            value = getattr(self, name)
            out[name] = None if value is None else round(value, 1)
        out["wall_s"], out["cpu_s"] = round(self.wall_s, 2), round(self.cpu_s, 2)
        return out


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
        merged.story_versions = tuple(sorted({*merged.story_versions, *data.story_versions}))
    return merged


def _abs(cohort_dir: Path, path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else cohort_dir / p


def studies_from_manifest(cohort_dir: Path, manifest: pd.DataFrame) -> list[StudyRecord]:
    """Every CT/PCCT study (one per patient and timepoint) with its annotation when it has one.

    The annotation is the study's RTSTRUCT when it has one (the planning structure set: it
    marks the lesions in the radiotherapy field, ``GTV``), else its SEG (a reader's segments,
    one per lesion); a study with neither is propagated from the baseline.
    """
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
        for kind in ("RTSTRUCT", "SEG"):
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


def _value(v: Any) -> float | None:
    return None if v is None or not math.isfinite(float(v)) else float(v)


def study_row(
    s: StudyRecord, result: imaging.StudyResult, readout: LesionReadout
) -> dict[str, Any]:
    """The cached row of one analysed study (JSON-ready)."""
    features = {k: _value(v.value) for k, v in result.features.items()}
    features.update({k: _value(v.value) for k, v in result.study_features.items()})
    return {
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
        "features": features,
        "lesion_readout": readout.to_dict(),
        "lesions": [
            {
                k: r.to_dict()[k]
                for k in (
                    "tracking_id",
                    "role",
                    "status",
                    "organ",
                    "in_field",
                    "long_axis_mm",
                    "short_axis_mm",
                    "volume_ml",
                    "source",
                )
            }
            for r in result.lesions
        ],
        "failures": [f.message for f in result.failures]
        + (
            [f"radiomics not computed: {result.provenance['radiomics_skipped']}"]
            if result.provenance.get("radiomics_skipped")
            else []
        ),
    }


def _analyse_study(
    s: StudyRecord,
    baseline: imaging.Baseline | None,
    state: imaging.TrackingState | None,
    options: ExtractionOptions,
) -> imaging.StudyResult:
    """:func:`models.imaging.analyse_study` of one study. With radiomics on, a study on which
    they cannot be computed (a lesion of a few voxels makes ``analyse_study`` give up the whole
    study) is analysed again without them, and says so in its failures: the lesions and the
    other features are still worth having."""

    def run(radiomics: bool) -> imaging.StudyResult:
        return imaging.analyse_study(
            s.folder,
            lesion_paths=None if s.lesion_path is None else [s.lesion_path],
            baseline=baseline,
            state=state,
            time=s.at,
            radiomics=radiomics,
            peritumoural=radiomics,
        )

    if not options.radiomics:
        return run(False)
    try:
        return run(True)
    except InsufficientDataError as err:
        result = run(False)
        result.provenance["radiomics_skipped"] = str(err)
        return result


@dataclass(frozen=True)
class PatientSkipped:
    """Why a patient's studies could not be analysed; ``retry``: the cause may pass (an OS
    error), so the next run tries again instead of caching the failure."""

    reason: str
    retry: bool = False


def analyse_patient(
    studies: Sequence[StudyRecord], options: ExtractionOptions = ExtractionOptions()
) -> list[dict[str, Any]] | PatientSkipped:
    """Analyse one patient's studies in time order, as the worker does; or the reason not.

    Every lesion of each study (:func:`models.imaging.analyse_study`), the planning study's
    lesions as the baseline of the follow-ups and the tracking state carried from one study to
    the next, so each study's RECIST 1.1 / iRECIST assessment uses that study and the earlier
    ones only. A follow-up whose analysis fails stops the patient there (its tracking state
    would be wrong from then on) and skips the patient; one of which no lesion was evaluable
    (RECIST 1.1 NE, no burden) gives no row, as the worker stores no scan for the models, and
    the patient's tracking goes on past it.
    """

    studies = sorted(studies, key=lambda s: s.at)
    rows: list[dict[str, Any]] = []
    baseline = None
    state = None
    field_known: bool | None = None
    try:
        for s in studies:
            result = _analyse_study(s, baseline, state, options)
            if baseline is None:
                baseline = result.as_baseline()
                field_known = any(r.in_field for r in result.lesions)
            state = result.tracking
            if result.burden is None:
                continue  # no lesion evaluable (NE): tracked on, no scan row to learn from
            rows.append(
                study_row(s, result, LesionReadout.from_study(result, field_known=field_known))
            )
    except OSError as err:
        return PatientSkipped(f"{studies[0].patient}: {err}", retry=True)
    except (IrtmonError, ValueError) as err:
        return PatientSkipped(f"{studies[0].patient}: {err}")
    return rows


def _write_atomic(path: Path, text: str) -> None:
    """Write a cache file whole or not at all (two runs may share the cache)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _package(name: str) -> str:
    try:
        return package_version(name)
    except PackageNotFoundError:
        return "absent"


@lru_cache(maxsize=1)
def source_fingerprint() -> str:
    """sha256 of the source of the code that computes the features (:data:`FINGERPRINTED`):
    an edit there, version bumped or not, changes every cache key."""
    root = Path(__file__).resolve().parents[2]
    digest = hashlib.sha256()
    for name in FINGERPRINTED:
        target = root / name
        files = sorted(target.rglob("*.py")) if target.is_dir() else [target]
        for f in files:
            digest.update(str(f.relative_to(root)).encode())
            digest.update(f.read_bytes())
    return digest.hexdigest()


def pipeline_versions(options: ExtractionOptions = ExtractionOptions()) -> dict[str, Any]:
    """Everything a cached row depends on besides its inputs."""
    return {
        "format": FEATURES_FORMAT,
        "algorithm_version": ALGORITHM_VERSION,
        "lesion_algorithm": LESION_ALGORITHM,
        "radiomics_config": DEFAULT_RADIOMICS_CONFIG.version,
        "source_sha256": source_fingerprint(),
        "libraries": {n: _package(n) for n in ("mirp", "SimpleITK", "pydicom", "numpy")},
        "options": asdict(options),
    }


def _file_identity(path: Path) -> list[Any]:
    st = path.stat()
    return [str(path.resolve()), st.st_size, st.st_mtime_ns]


def study_identity(s: StudyRecord) -> list[Any]:
    """What identifies a study's inputs: when, every file of its folder (path, size,
    modification time) and the annotation given."""
    files = sorted(p for p in s.folder.rglob("*") if p.is_file())
    return [
        s.at.isoformat(),
        s.modality,
        str(s.folder.resolve()),
        [_file_identity(f) for f in files],
        None if s.lesion_path is None else _file_identity(s.lesion_path),
    ]


def patient_cache_key(studies: Sequence[StudyRecord], versions: dict[str, Any]) -> str:
    """sha256 over the pipeline versions and every study's identity, in time order."""
    blob = json.dumps(
        [versions, [study_identity(s) for s in sorted(studies, key=lambda s: s.at)]],
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def _read_cache(path: Path, key: str, versions: dict[str, Any]) -> dict[str, Any] | None:
    """A patient's cache file when it is whole and was made by this pipeline from these inputs;
    None (and a warning) otherwise."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        log.warning("cache file %s unreadable (%s): recomputing", path.name, err)
        return None
    if (
        not isinstance(data, dict)
        or data.get("format") != FEATURES_FORMAT
        or data.get("versions") != versions
        or data.get("key") != key
    ):
        log.warning("cache file %s is stale (pipeline or inputs changed): recomputing", path.name)
        return None
    return data


def _timed(args: tuple[Sequence[StudyRecord], ExtractionOptions]) -> tuple[Any, float, float]:
    """Run :func:`analyse_patient` (in a worker process): result, CPU and wall seconds."""
    studies, options = args
    cpu, wall = time.process_time(), time.perf_counter()
    result = analyse_patient(studies, options)
    return result, time.process_time() - cpu, time.perf_counter() - wall


def extract_features(
    cohort_dir: Path,
    manifest: pd.DataFrame,
    cache_dir: Path,
    *,
    workers: int = 1,
    progress: Progress | None = None,
    options: ExtractionOptions = ExtractionOptions(),
) -> FeatureRun:
    """Rows of every analysed study: from the per-patient cache, or computed now.

    Patients are analysed in ``workers`` processes; each patient's file is written the moment
    it is done (atomically), so a killed run loses only the patients in flight. A patient whose
    analysis fails is recorded with its reason (an input error is deterministic: it is not
    retried until the inputs or the pipeline change; an OS error is retried next run).
    """
    start = time.perf_counter()
    studies = studies_from_manifest(cohort_dir, manifest)
    by_patient: dict[str, list[StudyRecord]] = {}
    for s in studies:
        by_patient.setdefault(s.patient, []).append(s)
    cache_dir.mkdir(parents=True, exist_ok=True)
    versions = pipeline_versions(options)
    run = FeatureRun(
        patients=len(by_patient), workers=workers, cores=min(workers, os.cpu_count() or 1)
    )
    todo: list[tuple[Path, str, list[StudyRecord]]] = []
    for patient, mine in sorted(by_patient.items()):
        key = patient_cache_key(mine, versions)
        path = cache_dir / f"{patient}-{key[:20]}.json"
        data = _read_cache(path, key, versions) if path.is_file() else None
        if path.is_file() and data is None:
            run.stale += 1
        if data is None:
            todo.append((path, key, mine))
            continue
        run.patients_cached += 1
        if data.get("skipped"):
            run.skipped.append(data["skipped"])
        else:
            run.rows.extend(data["rows"])
            run.studies_cached += len(data["rows"])
    done = run.patients_cached
    if progress:
        progress("scans", done, run.patients)

    def keep(path: Path, key: str, outcome: tuple[Any, float, float], n: int) -> None:
        nonlocal done
        result, cpu, wall = outcome
        done += 1
        run.patients_computed += 1
        run.cpu_s += cpu
        record: dict[str, Any] = {
            "format": FEATURES_FORMAT,
            "versions": versions,
            "key": key,
            "cpu_s": round(cpu, 3),
            "wall_s": round(wall, 3),
        }
        if isinstance(result, PatientSkipped):
            run.skipped.append(result.reason)
            log.warning("skipped %s", result.reason)
            if not result.retry:
                _write_atomic(path, json.dumps({**record, "skipped": result.reason, "rows": []}))
        else:
            run.rows.extend(result)
            run.studies_computed += n
            _write_atomic(path, json.dumps({**record, "skipped": None, "rows": result}))
        if progress:
            progress("scans", done, run.patients)

    if workers > 1 and len(todo) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            pending: dict[Future, tuple[Path, str, int]] = {
                pool.submit(_timed, (mine, options)): (path, key, len(mine))
                for path, key, mine in todo
            }
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    path, key, n = pending.pop(future)
                    keep(path, key, future.result(), n)
    else:
        for path, key, mine in todo:
            keep(path, key, _timed((mine, options)), len(mine))
    run.rows.sort(key=lambda r: (r["patient"], r["at"]))
    run.wall_s = time.perf_counter() - start
    return run


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


def clinical_from_events(
    cohort_dir: Path,
) -> tuple[dict[str, Treatment], dict[str, list[LabResult]]]:
    """From the cohort's ``events.jsonl``, if any: RT start and ICI dose times per patient, and
    the laboratory values reported with each biopsy (``BiopsyAcquired.lab``) at its time."""

    path = cohort_dir / "events.jsonl"
    if not path.is_file():
        return {}, {}
    starts: dict[str, datetime] = {}
    doses: dict[str, list[datetime]] = {}
    labs: dict[str, list[LabResult]] = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        topic = record.get("topic")
        if topic == "biopsy.acquired":
            biopsy = BiopsyAcquired.model_validate(record["event"])
            if biopsy.lab.pd_l1_tps is not None:
                labs.setdefault(biopsy.patient, []).append(
                    LabResult(biopsy.occurred_at, biopsy.lab.pd_l1_tps)
                )
            continue
        if topic != "treatment.events":
            continue
        event = TreatmentEvent.model_validate(record["event"])
        kind = event.treatment.kind
        if kind == "rt_course_start":
            starts.setdefault(event.patient, event.occurred_at)
        elif kind == "immunotherapy_dose":
            doses.setdefault(event.patient, []).append(event.occurred_at)
    treatments = {
        p: Treatment(rt_start=starts.get(p), ici_doses=tuple(sorted(doses.get(p, []))))
        for p in set(starts) | set(doses)
    }
    return treatments, {p: sorted(v, key=lambda r: r.at) for p, v in labs.items()}


def labs_from_manifest(manifest: pd.DataFrame) -> dict[str, list[LabResult]]:
    """PD-L1 TPS per patient from the manifest's ``pd_l1_tps`` column (story v2: the
    diagnostic biopsy's), dated by the patient's first slide (the diagnostic biopsy), else its
    first study: for a cohort without events."""
    if "pd_l1_tps" not in manifest:
        return {}
    out: dict[str, list[LabResult]] = {}
    for patient, rows in manifest.groupby("patient", sort=True):
        values = pd.to_numeric(rows["pd_l1_tps"], errors="coerce").dropna()
        if values.empty:
            continue
        slides = rows[rows["modality"] == "WSI"]
        dated = slides if not slides.empty else rows
        at = min(pd.Timestamp(v).to_pydatetime() for v in dated["acquired_at"])
        out[str(patient)] = [LabResult(at, float(values.iloc[0]))]
    return out


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
    options: ExtractionOptions = ExtractionOptions(),
) -> CohortData:
    """Histories (scans with features and lesion readouts, teacher-scored biopsies, PD-L1,
    treatment) and labels.

    ``max_patients`` keeps the first patients (by pseudonym) and ``max_timepoint`` the studies
    up to that timepoint index (0 = planning), to bound the time a run spends on features.
    """

    cohort_dir = Path(cohort_dir)
    manifest = select(read_manifest(cohort_dir), max_patients, max_timepoint)
    for column in ("patient", "timepoint", "modality", "path", "acquired_at", "responder"):
        if column not in manifest:
            raise InsufficientDataError(f"the manifest of {cohort_dir} has no {column!r} column")
    extraction = extract_features(
        cohort_dir,
        manifest,
        cache_dir / "scans",
        workers=workers,
        progress=progress,
        options=options,
    )
    scan_rows, skipped = extraction.rows, list(extraction.skipped)
    biopsy_rows: list[dict[str, Any]] = []
    if pathology_folder is not None:
        biopsy_rows, bad = teacher_signatures(
            cohort_dir, manifest, pathology_folder, cache_dir, workers=workers, progress=progress
        )
        skipped += bad
    treatments, labs = clinical_from_events(cohort_dir)
    if not labs:
        labs = labs_from_manifest(manifest)
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
                lesions=None
                if r.get("lesion_readout") is None
                else LesionReadout.from_dict(r["lesion_readout"]),
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
            labs=tuple(labs.get(p, [])),
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
        extraction=extraction,
        story_versions=tuple(sorted({str(v) for v in manifest["story_version"].dropna()})),
    )
