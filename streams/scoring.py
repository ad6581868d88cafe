"""The seam between the agents and the science of ``models/``.

An agent builds a *request* (checked paths, the patient's history from the database), runs the
pure scoring function in the CPU pool, and stores its *outcome* in one transaction. Requests
and outcomes are plain picklable dataclasses, so scoring runs in another process.
"""

from __future__ import annotations

import functools
import json
import math
import uuid
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import psycopg

from core.db import events, history, registry
from core.db import scores as stored
from core.db.registry import ResponseModels
from core.paths import check_dicomweb_url, resolve_under_roots
from models import imaging, pathology
from models.exceptions import InsufficientDataError, ModelError
from models.imaging.dicomweb import fetch_study, store_instances
from models.imaging.writers import DERIVED_MANUFACTURER
from models.limits import DEFAULT_LIMITS, ReadLimits
from models.response.history import History, Scan
from models.response.inference import load_models, score_timepoint
from schemas import BiopsyAcquired, ImagingAcquired, ModelName, TimepointScore
from schemas.results import FeatureSet, Measurement, Outcome
from streams.fetched import fetched_root, in_use


@dataclass(frozen=True)
class Baseline:
    """The patient's baseline acquisition (planning CT with a contour), when there is one."""

    event_id: uuid.UUID
    path: Path
    lesion_path: Path | None
    fetch_url: str | None = None  # a DICOMweb baseline, fetched into ``path`` when missing
    study_uid: str | None = None


@dataclass
class ImagingRequest:
    event: ImagingAcquired
    series_dir: Path | None  # for a DICOMweb location: the folder the study is fetched into
    lesion_path: Path | None
    baseline: Baseline | None = None
    history: History | None = None  # the patient's earlier scans, biopsies, treatment
    models: ResponseModels | None = None  # virtual biopsy and response model, when promoted
    derived_dir: Path | None = None  # fetched studies (dicomweb/), SEG and SR (dicom/)
    write_back: bool = False  # store SEG and SR back to the DICOMweb server (STOW-RS)
    dicomweb_allowed: tuple[str, ...] = ()  # the DICOMweb roots it may fetch from / store to
    dicomweb_headers: dict[str, str] | None = None  # authentication to them (HTTP Basic)


@dataclass
class BiopsyRequest:
    event: BiopsyAcquired
    slide_paths: list[Path]
    model_folder: Path | None = None
    model_sha256: str | None = None
    derived_dir: Path | None = None  # where heat maps go (the data roots may be read-only)
    limits: ReadLimits = DEFAULT_LIMITS


def imaging_request(
    event: ImagingAcquired,
    roots: Sequence[Path],
    derived_dir: Path | None = None,
    write_back: bool = False,
    dicomweb_allowed: Sequence[str] = (),
    dicomweb_headers: dict[str, str] | None = None,
) -> ImagingRequest:
    """Check the event's files (inside the data roots, present) and its DICOMweb server (one
    of ``dicomweb_allowed``, see :attr:`Settings.dicomweb_allowed`) before anything runs.

    A DICOMweb acquisition is fetched into ``<derived_dir>/dicomweb/<study UID>/<event id>``
    (kept: it is the baseline of later follow-ups); with ``write_back`` its SEG and SR go back
    by STOW-RS. ``dicomweb_headers`` authenticate to the server.

    Raises
    ------
    UntrustedLocationError
        The event names a DICOMweb server that is not allowed (dead-lettered: never fetched
        from, never written to).
    UnreadableInputError
        A path outside the data roots, or missing.
    """
    series_dir = None
    if event.location.kind == "folder":
        series_dir = resolve_under_roots(event.location.path, roots)
    else:
        check_dicomweb_url(str(event.location.url), dicomweb_allowed)
        if derived_dir is None:
            raise ValueError("a DICOMweb acquisition needs a derived_dir to fetch the study into")
        series_dir = fetched_study_dir(derived_dir, event.study_uid, event.event_id)
    lesion_path = None
    if event.lesion is not None and event.lesion.path is not None:
        lesion_path = resolve_under_roots(event.lesion.path, roots)
    return ImagingRequest(
        event=event,
        series_dir=series_dir,
        lesion_path=lesion_path,
        derived_dir=derived_dir,
        write_back=write_back and event.location.kind == "dicomweb",
        dicomweb_allowed=tuple(dicomweb_allowed),
        dicomweb_headers=dict(dicomweb_headers or {}),
    )


def fetched_study_dir(derived_dir: Path, study_uid: str, event_id: uuid.UUID) -> Path:
    """Where a DICOMweb study is fetched to for one event (a study that grows later is a new
    event with a folder of its own). ``study_uid`` is digits and dots: safe in a path."""
    return fetched_root(derived_dir) / study_uid / str(event_id)


def biopsy_request(event: BiopsyAcquired, roots: Sequence[Path]) -> BiopsyRequest:
    return BiopsyRequest(event, [resolve_under_roots(s.path, roots) for s in event.slides])


def with_history(conn: psycopg.Connection, request: ImagingRequest) -> ImagingRequest:
    """Add the patient's baseline (earliest imaging acquisition with a lesion reference), the
    history known at the scan's time and the promoted response models."""
    row = events.baseline_acquisition(conn, request.event.patient, request.event.occurred_at)
    if row and row.path:
        request.baseline = Baseline(
            row.event_id, Path(row.path), Path(row.lesion_path) if row.lesion_path else None
        )
    elif row and row.url and row.study_uid and request.derived_dir is not None:
        check_dicomweb_url(row.url, request.dicomweb_allowed)  # stored before the allow-list
        folder = fetched_study_dir(request.derived_dir, row.study_uid, row.event_id)
        request.baseline = Baseline(
            row.event_id, folder, None, fetch_url=row.url, study_uid=row.study_uid
        )
    known = history.load_history(conn, request.event.patient, until=request.event.occurred_at)
    request.history = History(
        tuple(s for s in known.scans if s.key != str(request.event.event_id)),
        known.biopsies,
        known.treatment,
    )
    request.models = registry.response_models(conn)
    return request


@functools.lru_cache(maxsize=8)
def _baseline_of(path: str, lesion_path: str | None) -> imaging.Baseline:
    """The baseline volume and lesion, read once per process and baseline scan."""
    result = imaging.analyse_acquisition(
        path, lesion_path=lesion_path, radiomics=False, peritumoural=False
    )
    return result.as_baseline()


def score_imaging(request: ImagingRequest) -> Outcome:
    """Score one acquisition (runs in the CPU pool): burden and features by
    :func:`models.imaging.analyse_acquisition`; follow-ups without contours propagate the
    baseline lesion."""
    event = request.event
    if request.series_dir is None:
        raise ValueError(f"acquisition {event.event_id}: no folder to read (build the request)")
    with ExitStack() as held:
        if event.location.kind == "dicomweb":
            held.enter_context(in_use(request.series_dir))
            _fetch(
                str(event.location.url),
                event.study_uid,
                request.series_dir,
                request.dicomweb_headers,
            )
        baseline: imaging.Baseline | None = None
        if (
            request.lesion_path is None
            and request.baseline is not None
            and (request.baseline.event_id != event.event_id)
        ):
            b = request.baseline
            if b.fetch_url and b.study_uid:  # fetched once, pruned when unused: fetch again
                held.enter_context(in_use(b.path))
                _fetch(b.fetch_url, b.study_uid, b.path, request.dicomweb_headers)
            lesion = str(b.lesion_path) if b.lesion_path else None
            baseline = _baseline_of(str(b.path), lesion)
        return _score_fetched(request, baseline)


def _score_fetched(request: ImagingRequest, baseline: imaging.Baseline | None) -> Outcome:
    """Analyse the (present) series against its baseline and map the result to scores."""
    event = request.event
    assert request.series_dir is not None
    output_dir = None
    if request.write_back and request.derived_dir is not None:
        output_dir = request.derived_dir / "dicom" / event.patient / str(event.event_id)
    result = imaging.analyse_acquisition(
        request.series_dir,
        study_uid=event.study_uid,
        series_uid=None
        if event.modality == "PCCT" or len(event.series_uids) > 1
        else event.series_uids[0],
        lesion_path=request.lesion_path,
        baseline=baseline,
        output_dir=output_dir,
    )
    if output_dir is not None and event.location.kind == "dicomweb":
        result.provenance["dicom_outputs"] = _write_back(
            str(event.location.url), result.outputs, request.dicomweb_headers
        )
    version = result.provenance["algorithm_version"]
    model = result.provenance["algorithm"]
    inputs = list(result.provenance["series_uids"])
    outcome = Outcome(event.event_id, event.patient, observed_at=event.occurred_at)
    registration = result.provenance.get("registration") or {}
    outcome.measurements.append(
        Measurement(
            lesion_id="target",
            volume_ml=result.burden.volume_ml,
            longest_diameter_mm=result.burden.longest_diameter_mm,
            mask_source=result.provenance["mask_source"],
            registration_quality=registration.get("registration_ncc"),
            series_uid=result.series_uid,
            model_name=model,
            model_version=version,
        )
    )
    for name, value, unit in (
        ("tumour_volume_ml", result.burden.volume_ml, "ml"),
        ("longest_diameter_mm", result.burden.longest_diameter_mm, "mm"),
    ):
        outcome.scores.append(
            _score(event, name, round(value, 4), model, version, inputs, unit=unit)
        )
    features = {k: v.value for k, v in result.features.items()}
    outcome.features = FeatureSet(model, version, features, _json_safe(result.provenance))
    outcome.scores += _response_scores(request, result.burden, features, inputs)
    return outcome


def _response_scores(
    request: ImagingRequest, burden: imaging.Burden, features: dict, inputs: list[str]
) -> list[TimepointScore]:
    """The virtual biopsy and the response probability of this scan, with the promoted models
    (none when no model is promoted), from what is known at the scan's time."""

    models = request.models
    if models is None or (models.signature is None and models.response is None):
        return []
    event = request.event
    scan = Scan(
        at=event.occurred_at,
        volume_ml=burden.volume_ml,
        diameter_mm=burden.longest_diameter_mm,
        features=_json_safe(features),  # type: ignore[arg-type]
        pcct=event.modality == "PCCT",
        key=str(event.event_id),
    )
    prior = request.history or History(())
    history = History((*prior.scans, scan), prior.biopsies, prior.treatment)
    loaded = load_models(
        models.signature.as_tuple() if models.signature else None,
        models.response.as_tuple() if models.response else None,
        models.response_signature.as_tuple()[:2] if models.response_signature else None,
    )
    out = []
    for value in score_timepoint(history, event.occurred_at, loaded):
        used = inputs if value.model_name != ModelName.RESPONSE else [s.key for s in history.scans]
        out.append(value.score_of(event.patient, event.event_id, event.occurred_at, used))
    return out


def _fetch(url: str, study_uid: str, folder: Path, headers: dict[str, str] | None = None) -> None:
    """Fetch a DICOMweb study into ``folder`` unless it is there (irtmon's own SEG/SR left out)."""

    fetch_study(
        url, study_uid, folder, skip_manufacturer=DERIVED_MANUFACTURER, headers=headers or None
    )


def _write_back(
    url: str, outputs: dict[str, str], headers: dict[str, str] | None = None
) -> dict[str, object]:
    """Store the SEG and SR on the DICOMweb server (STOW-RS); return what was stored where."""
    import pydicom

    names = sorted(outputs)
    store_instances(url, [outputs[n] for n in names], headers=headers or None)
    stored: dict[str, object] = {"stored_to": url}
    for name in names:
        ds = pydicom.dcmread(outputs[name], stop_before_pixels=True)
        stored[name] = {
            "sop_instance_uid": str(ds.SOPInstanceUID),
            "series_instance_uid": str(ds.SeriesInstanceUID),
            "sop_class_uid": str(ds.SOPClassUID),
            "path": outputs[name],
        }
    return stored


def _score(
    event: ImagingAcquired | BiopsyAcquired,
    name: str,
    value: float,
    model: str,
    version: str,
    inputs: list[str],
    *,
    unit: str | None = None,
    lower: float | None = None,
    upper: float | None = None,
) -> TimepointScore:
    """One score of an acquisition or biopsy."""
    return TimepointScore.for_source(
        source_event_id=event.event_id,
        patient=event.patient,
        occurred_at=event.occurred_at,
        score_name=name,
        value=value,
        model_name=model,
        model_version=version,
        lower=lower,
        upper=upper,
        unit=unit,
        inputs=inputs,
    )


def _json_safe(value: object) -> object:
    """Provenance as plain JSON (numpy scalars and paths to Python values)."""
    return json.loads(
        json.dumps(value, default=lambda o: o.item() if hasattr(o, "item") else str(o))
    )


def with_pathology_model(conn: psycopg.Connection, request: BiopsyRequest) -> BiopsyRequest:
    """Add the promoted pathology model (folder and registered hash) to the request."""
    ref = registry.promoted(conn, ModelName.PATHOLOGY)
    request.model_folder, request.model_sha256 = ref.folder, ref.sha256
    return request


def score_biopsy(request: BiopsyRequest) -> Outcome:
    """Score one biopsy (runs in the CPU pool): the gated-attention MIL signature of each H&E
    slide (:func:`models.pathology.analyse_slide`), averaged over the specimen's slides."""

    event = request.event
    if request.model_folder is None:
        raise ModelError(f"no {ModelName.PATHOLOGY} model given to score biopsy {event.event_id}")
    he = [
        (slide, path)
        for slide, path in zip(event.slides, request.slide_paths, strict=True)
        if slide.stain == "H&E"
    ]
    if not he:
        raise InsufficientDataError(
            f"specimen {event.specimen_id}: no H&E slide among {len(event.slides)}; "
            "the immune signature needs one"
        )
    results = []
    for slide, path in he:
        heatmap = None
        if request.derived_dir is not None:
            folder = request.derived_dir / "heatmaps" / event.patient
            folder.mkdir(parents=True, exist_ok=True)
            heatmap = folder / f"{event.event_id}-{slide.slide_id}.attention.png"
        results.append(
            pathology.analyse_slide(
                path,
                request.model_folder,
                expected_sha256=request.model_sha256,
                heatmap_path=heatmap,
                limits=request.limits,
            )
        )
    model = results[0].provenance.model_name
    version = results[0].provenance.model_version
    inputs = [s.slide_id for s, _ in he] + [
        f"attention:{r.heatmap_path}" for r in results if r.heatmap_path
    ]
    til = sum(r.til_score for r in results) / len(results)
    spread = max(r.til_log_std for r in results)
    log_til = math.log1p(til)
    values: list[tuple[str, float, float | None, float | None, str | None]] = [
        (
            "pathology_til_density",
            til,
            max(0.0, math.expm1(log_til - spread)),
            math.expm1(log_til + spread),
            "per mm2",
        ),
    ]
    for phenotype in ("inflamed", "excluded", "desert"):
        p = sum(r.probabilities[phenotype] for r in results) / len(results)
        values.append((f"pathology_p_{phenotype}", p, None, None, None))
    outcome = Outcome(event.event_id, event.patient, observed_at=event.occurred_at)
    for name, value, lower, upper, unit in values:
        outcome.scores.append(
            _score(
                event,
                name,
                round(value, 6),
                model,
                version,
                inputs,
                unit=unit,
                lower=None if lower is None else round(min(lower, value), 6),
                upper=None if upper is None else round(max(upper, value), 6),
            )
        )
    outcome.features = FeatureSet(
        model,
        version,
        {
            "til_density": til,
            "entropy": max(r.entropy for r in results),
            "mc_dropout_std": max(r.mc_dropout_std for r in results),
        },
        _json_safe({"slides": [r.to_dict() for r in results]}),
    )
    return outcome


def stored_scores(
    conn: psycopg.Connection, source_event_id: uuid.UUID
) -> list[TimepointScore] | None:
    """The scores of an acquisition already scored (a redelivery), or None if it is not.

    A redelivered event is not scored again: its stored scores are published once more (the
    first publication may have been lost in a crash after the commit). Re-scoring with a new
    model version is a deliberate step (``irtmon rescore``), not a side effect of a replay.
    """
    if events.acquisition_status(conn, source_event_id) != "scored":
        return None
    return stored.scores_of_source(conn, source_event_id)


store_outcome = stored.store_outcome
"""Store an outcome in one transaction (:func:`core.db.scores.store_outcome`)."""
