"""The seam between the agents and the science of ``models/``.

An agent builds a *request* (checked paths, the patient's history from the database), runs the
pure scoring function in the CPU pool, and stores its *outcome* in one transaction. Requests
and outcomes are plain picklable dataclasses, so scoring runs in another process.

An imaging acquisition is read by :func:`models.imaging.analyse_study`: every lesion of the
study's SEG or RTSTRUCT (or, without one, every baseline lesion propagated), matched to the
lesions tracked so far (the tracking state stored with the patient's previous acquisition),
and assessed by RECIST 1.1 and iRECIST. The outcome carries one row per tracked lesion, the
timepoint's assessment and its derived scores (sum of diameters, in-field and out-of-field
sums, new lesions, iRECIST state), and, for what still reads one lesion, the primary lesion's
measurement and scores as before. The SEG (one segment per lesion) and the TID 1500 SR are
written under the derived folder, and stored back to the PACS (STOW-RS) with write-back.
"""

from __future__ import annotations

import functools
import json
import math
import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from core.db import events, history, lesions, registry
from core.db import scores as stored
from core.db.registry import ResponseModels
from core.paths import check_dicomweb_url, resolve_under_roots
from models import imaging, pathology
from models.exceptions import InsufficientDataError, ModelError
from models.imaging.dicomweb import fetch_study, store_instances
from models.imaging.lesion import MaskSource
from models.imaging.matching import MatchStatus, TrackingState
from models.imaging.study import LESION_ALGORITHM
from models.imaging.writers import DERIVED_MANUFACTURER
from models.limits import DEFAULT_LIMITS, ReadLimits
from models.response.history import History, Scan
from models.response.inference import LoadedModels, load_models, score_timepoint
from schemas import BiopsyAcquired, ImagingAcquired, ModelName, TimepointScore
from schemas.enums import IRECIST_SCORE, LesionOrigin, carries_burden
from schemas.results import (
    IN_FIELD_SUM_SCORE,
    NEW_LESIONS_SCORE,
    OUT_OF_FIELD_SUM_SCORE,
    SUM_DIAMETERS_SCORE,
    FeatureSet,
    LesionAssessment,
    LesionRow,
    Measurement,
    Outcome,
)
from streams.failures import DISK_FULL_ERRNOS
from streams.fetched import fetched_root, in_use

LESION_MODEL, LESION_VERSION = LESION_ALGORITHM.rsplit(" ", 1)
"""Model name and version of the per-lesion rows, assessments and scores (``irtmon-lesions``)."""


@dataclass(frozen=True)
class Baseline:
    """The patient's baseline acquisition (planning CT with a contour), when there is one."""

    event_id: uuid.UUID
    path: Path
    lesion_path: Path | None
    fetch_url: str | None = None  # a DICOMweb baseline, fetched into ``path`` when missing
    study_uid: str | None = None
    occurred_at: datetime | None = None


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
    tracking_state: dict | None = None  # after the patient's previous assessed acquisition
    deformable: bool = False  # B-spline stage when propagating (Settings.deformable_registration)
    radiomics: str = "auto"  # radiomics and peritumoural features (Settings.radiomics)


@dataclass
class BiopsyRequest:
    event: BiopsyAcquired
    slide_paths: list[Path]
    model_folder: Path | None = None
    model_sha256: str | None = None
    derived_dir: Path | None = None  # where heat maps go (the data roots may be read-only)
    limits: ReadLimits = DEFAULT_LIMITS


def warm_up() -> int:
    """Import what scoring imports only when first used (radiomics, torch), so that a CPU
    process started ahead of the first event (:meth:`streams.pool.CpuPool.warm`) scores it
    without that wait; returns the process id."""
    import mirp  # noqa: F401  (models.imaging.radiomics imports it at the first lesion)
    import torch  # noqa: F401  (the response models and the pathology model)

    return os.getpid()


def imaging_request(
    event: ImagingAcquired,
    roots: Sequence[Path],
    derived_dir: Path | None = None,
    write_back: bool = False,
    dicomweb_allowed: Sequence[str] = (),
    dicomweb_headers: dict[str, str] | None = None,
    deformable: bool = False,
    radiomics: str = "auto",
) -> ImagingRequest:
    """Check the event's files (inside the data roots, present) and its DICOMweb server (one
    of ``dicomweb_allowed``, see :attr:`Settings.dicomweb_allowed`) before anything runs.

    A DICOMweb acquisition is fetched into ``<derived_dir>/dicomweb/<study UID>/<event id>``
    (kept: it is the baseline of later follow-ups); with ``write_back`` its SEG and SR go back
    by STOW-RS. ``dicomweb_headers`` authenticate to the server. ``deformable``: the B-spline
    stage when a follow-up's lesions are carried from the baseline
    (:attr:`Settings.deformable_registration`). ``radiomics``: 'auto', 'on' or 'off'
    (:attr:`Settings.radiomics`, :func:`wants_radiomics`).

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
        deformable=deformable,
        radiomics=radiomics,
    )


def fetched_study_dir(derived_dir: Path, study_uid: str, event_id: uuid.UUID) -> Path:
    """Where a DICOMweb study is fetched to for one event (a study that grows later is a new
    event with a folder of its own). ``study_uid`` is digits and dots: safe in a path."""
    return fetched_root(derived_dir) / study_uid / str(event_id)


def biopsy_request(event: BiopsyAcquired, roots: Sequence[Path]) -> BiopsyRequest:
    return BiopsyRequest(event, [resolve_under_roots(s.path, roots) for s in event.slides])


def with_history(conn: psycopg.Connection, request: ImagingRequest) -> ImagingRequest:
    """Add the patient's baseline (earliest imaging acquisition with a lesion reference), the
    lesion tracking state after the patient's previous assessed acquisition, the history known
    at the scan's time and the promoted response models."""
    row = events.baseline_acquisition(conn, request.event.patient, request.event.occurred_at)
    if row and row.path:
        request.baseline = Baseline(
            row.event_id,
            Path(row.path),
            Path(row.lesion_path) if row.lesion_path else None,
            occurred_at=row.acquired_at,
        )
    elif row and row.url and row.study_uid and request.derived_dir is not None:
        check_dicomweb_url(row.url, request.dicomweb_allowed)  # stored before the allow-list
        folder = fetched_study_dir(request.derived_dir, row.study_uid, row.event_id)
        request.baseline = Baseline(
            row.event_id,
            folder,
            None,
            fetch_url=row.url,
            study_uid=row.study_uid,
            occurred_at=row.acquired_at,
        )
    if request.baseline is not None and request.baseline.event_id != request.event.event_id:
        request.tracking_state = lesions.tracking_state_before(
            conn, request.event.patient, request.event.occurred_at, request.event.event_id
        )
    known = history.load_history(conn, request.event.patient, until=request.event.occurred_at)
    request.history = History(
        tuple(s for s in known.scans if s.key != str(request.event.event_id)),
        known.biopsies,
        known.treatment,
    )
    request.models = registry.response_models(conn)
    return request


def study_annotations(lesion_path: Path | None, series_dir: Path) -> list[Path] | None:
    """The annotations a study's lesions are read from: the event's SEG or RTSTRUCT when it
    lies outside the study's folder; else None, and :func:`models.imaging.analyse_study` reads
    the study's own, its first SEG with a lesion before its RTSTRUCT (as for a DICOMweb
    study). A planning study holds both: the SEG names each lesion's organ (its anatomic
    region), which RECIST's target selection (two per organ) needs and an RTSTRUCT does not
    carry; its GTV segments are in the radiotherapy field as the RTSTRUCT's GTV ROIs are."""
    if lesion_path is None:
        return None
    if Path(lesion_path).resolve().is_relative_to(Path(series_dir).resolve()):
        return None
    return [lesion_path]


@functools.lru_cache(maxsize=8)
def _baseline_of(
    path: str, lesion_path: str | None, at: datetime | None
) -> tuple[imaging.Baseline, dict[str, Any]]:
    """The baseline study's volume and every lesion (with the tracking UIDs its assessment
    gave them: the same inputs give the same UIDs), and its tracking state; read once per
    process and baseline scan."""
    result = imaging.analyse_study(
        path,
        lesion_paths=study_annotations(Path(lesion_path) if lesion_path else None, Path(path)),
        time=at,
        radiomics=False,
        peritumoural=False,
        enhancement=False,
    )
    assert result.tracking is not None
    return result.as_baseline(), result.tracking.to_dict()


def score_imaging(request: ImagingRequest) -> Outcome:
    """Score one acquisition (runs in the CPU pool): every lesion measured, tracked and
    assessed by :func:`models.imaging.analyse_study`; a follow-up is registered once to the
    baseline (its lesions propagated when it has no annotation) and matched to the lesions
    tracked so far.

    Raises
    ------
    InsufficientDataError
        A follow-up without annotation and no baseline to propagate from (as before), or no
        lesion of the study could be measured (:class:`NoLesionMeasuredError`, naming each).
    """
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
        state: TrackingState | None = None
        b = request.baseline
        if b is not None and b.event_id != event.event_id:
            if b.fetch_url and b.study_uid:  # fetched once, pruned when unused: fetch again
                held.enter_context(in_use(b.path))
                _fetch(b.fetch_url, b.study_uid, b.path, request.dicomweb_headers)
            lesion = str(b.lesion_path) if b.lesion_path else None
            baseline, baseline_state = _baseline_of(str(b.path), lesion, b.occurred_at)
            # the state after the previous acquisition; without one (the baseline was scored
            # before lesions were tracked), tracking starts from the baseline itself
            state = TrackingState.from_dict(request.tracking_state or baseline_state)
        return _score_fetched(request, baseline, state)


def _score_fetched(
    request: ImagingRequest, baseline: imaging.Baseline | None, state: TrackingState | None
) -> Outcome:
    """Analyse the (present) series against its baseline and map the result to scores."""
    event = request.event
    assert request.series_dir is not None
    output_dir = None
    if request.derived_dir is not None:
        output_dir = request.derived_dir / "dicom" / event.patient / str(event.event_id)
    radiomics = wants_radiomics(request)
    with _named_on_a_full_disk(output_dir):
        result = imaging.analyse_study(
            request.series_dir,
            study_uid=event.study_uid,
            series_uid=None
            if event.modality == "PCCT" or len(event.series_uids) > 1
            else event.series_uids[0],
            lesion_paths=study_annotations(request.lesion_path, request.series_dir),
            baseline=baseline,
            state=state,
            time=event.occurred_at,
            output_dir=output_dir,
            deformable=request.deformable,
            radiomics=radiomics,
            peritumoural=radiomics,
        )
    if result.outputs:
        write_back = request.write_back and event.location.kind == "dicomweb"
        result.provenance["dicom_outputs"] = _outputs(
            result.outputs,
            str(event.location.url) if write_back else None,
            request.dicomweb_headers,
        )
    version = result.provenance["algorithm_version"]
    model = result.provenance["algorithm"]
    inputs = list(result.provenance["series_uids"])
    outcome = Outcome(event.event_id, event.patient, observed_at=event.occurred_at)
    registration = result.provenance.get("registration") or {}
    outcome.lesions = lesion_rows(result)
    outcome.assessment = lesion_assessment(result)
    outcome.scores += lesion_scores(event, outcome.assessment, inputs)
    features = {k: v.value for k, v in result.features.items()}
    outcome.features = FeatureSet(model, version, features, _json_safe(result.provenance))
    if result.burden is None:
        # no lesion evaluable (NE): its lesions, reasons and assessment are stored; no burden,
        # so no scan for the models' history and no model scores
        return outcome
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
    outcome.scores += _response_scores(request, result.burden, features, inputs)
    return outcome


_ORIGIN = {
    MaskSource.SEG: LesionOrigin.ANNOTATED,
    MaskSource.RTSTRUCT: LesionOrigin.ANNOTATED,
    MaskSource.GIVEN: LesionOrigin.ANNOTATED,
    MaskSource.PROPAGATED: LesionOrigin.PROPAGATED,
}


def lesion_rows(result: imaging.StudyResult) -> list[LesionRow]:
    """One row per tracked lesion of a study (seen, not seen, or not evaluable with why)."""
    by_uid: dict[str, list[str]] = {}
    unattributed: list[str] = []
    known = {r.tracking_uid for r in result.lesions}
    for f in result.failures:
        if f.tracking_uid in known:
            by_uid.setdefault(f.tracking_uid, []).append(f.message)
        else:
            unattributed.append(f.message)
    rows = []
    for r in result.lesions:
        b = r.burden
        not_evaluable = b is None and r.status is MatchStatus.NOT_EVALUABLE
        failure = None
        if not_evaluable:
            why = by_uid.get(r.tracking_uid) or [
                f"not found, and {len(unattributed)} lesion(s) of this study could not be read: "
                + "; ".join(unattributed)
            ]
            failure = "; ".join(why)[:2000]
        rows.append(
            LesionRow.of(
                measures=None
                if b is None
                else (b.longest_diameter_mm, b.short_axis_mm, b.volume_ml),
                not_evaluable=not_evaluable,
                origin=None if r.source is None else _ORIGIN[r.source],
                mask_source=None if r.source is None else r.source.value,
                segment_number=r.number or None,
                series_uid=result.series_uid,
                tracking_uid=r.tracking_uid,
                tracking_id=r.tracking_id,
                label=r.label,
                organ=r.organ,
                is_node=r.is_node,
                in_field=r.in_field,
                role=r.role,
                match=r.status.value,
                reference_uid=r.reference_uid or None,
                distance_mm=None if r.distance_mm is None else round(float(r.distance_mm), 2),
                overlap=None if r.overlap is None else round(float(r.overlap), 4),
                failure=failure,
                features=_json_safe({k: v.value for k, v in r.features.items()}),  # type: ignore[arg-type]
            )
        )
    return rows


def lesion_assessment(result: imaging.StudyResult) -> LesionAssessment:
    """RECIST 1.1 / iRECIST of the study over its lesions, its sums and the tracking state."""
    a, sf = result.assessment, result.study_features
    assert a is not None and result.tracking is not None

    def finite(v: float) -> float | None:
        return float(v) if math.isfinite(v) else None

    return LesionAssessment(
        timepoint=a.index,
        irecist=a.state,
        recist=a.recist if a.index > 0 else None,
        target=a.target,
        nontarget=a.nontarget,
        reason=a.reason,
        sum_mm=round(finite(a.sum_mm) or 0.0, 3),
        nadir_mm=None if finite(a.nadir_mm) is None else round(a.nadir_mm, 3),
        in_field_sum_mm=round(sf["lesions_in_field_sum_mm"].value, 3),
        out_of_field_sum_mm=round(sf["lesions_out_of_field_sum_mm"].value, 3),
        total_volume_ml=round(sf["lesions_total_volume_ml"].value, 4),
        new_lesions=a.new_lesions,
        new_appeared=a.new_appeared,
        seen=int(sf["lesions_seen_count"].value),
        not_evaluable=int(sf["lesions_not_evaluable_count"].value),
        tracking_state=_json_safe(result.tracking.to_dict()),  # type: ignore[arg-type]
        model_name=LESION_MODEL,
        model_version=LESION_VERSION,
        failures=[f.as_dict() for f in result.failures],
    )


def lesion_scores(
    event: ImagingAcquired, assessment: LesionAssessment, inputs: list[str]
) -> list[TimepointScore]:
    """The timepoint's scores derived from its lesions (the same values as its assessment row):
    sum of diameters, in-field and out-of-field sums, new lesions, and, at a follow-up, the
    iRECIST state (the one stored iRECIST state of a patient whose lesions are tracked). A
    not-evaluable timepoint (iNE) has no sums: its sums count only the lesions seen
    (:func:`schemas.enums.carries_burden`); its assessment row keeps them with the lesions
    they count."""
    a = assessment
    values: list[tuple[str, float, str | None]] = []
    if carries_burden(a.irecist):  # not evaluable: the sums count only the lesions seen
        values += [
            (SUM_DIAMETERS_SCORE, a.sum_mm, "mm"),
            (IN_FIELD_SUM_SCORE, a.in_field_sum_mm, "mm"),
            (OUT_OF_FIELD_SUM_SCORE, a.out_of_field_sum_mm, "mm"),
        ]
    values.append((NEW_LESIONS_SCORE, float(a.new_lesions), None))
    if a.timepoint > 0:  # no response category at baseline
        values.append((IRECIST_SCORE, float(a.irecist.code), None))
    return [
        _score(event, name, value, LESION_MODEL, LESION_VERSION, inputs, unit=unit)
        for name, value, unit in values
    ]


RADIOMICS_PREFIXES = ("rad_", "peri_")
"""The names of the features that ``radiomics`` and ``peritumoural`` compute."""


def wants_radiomics(request: ImagingRequest) -> bool:
    """Whether this study's radiomics and peritumoural features are computed: always with
    'on', never with 'off'; with 'auto', when a promoted virtual biopsy (or the one the
    promoted response model was trained with) reads any of them (``rad_*``, ``peri_*``)."""
    if request.radiomics in ("on", "off"):
        return request.radiomics == "on"
    if request.radiomics != "auto":
        raise ValueError(f"radiomics must be 'auto', 'on' or 'off', not {request.radiomics!r}")
    loaded = _loaded_models(request)
    if loaded is None:
        return False
    readers = (loaded.signature, loaded.response_signature)
    return any(
        name.startswith(RADIOMICS_PREFIXES) for m in readers if m is not None for name in m.names
    )


def _loaded_models(request: ImagingRequest) -> LoadedModels | None:
    """The promoted models of a request, loaded (once per process), or None."""
    models = request.models
    if models is None or (models.signature is None and models.response is None):
        return None
    return load_models(
        models.signature.as_tuple() if models.signature else None,
        models.response.as_tuple() if models.response else None,
        models.response_signature.as_tuple()[:2] if models.response_signature else None,
    )


def _response_scores(
    request: ImagingRequest, burden: imaging.Burden, features: dict, inputs: list[str]
) -> list[TimepointScore]:
    """The virtual biopsy and the response probability of this scan, with the promoted models
    (none when no model is promoted), from what is known at the scan's time."""

    loaded = _loaded_models(request)
    if loaded is None:
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
    out = []
    for value in score_timepoint(history, event.occurred_at, loaded):
        used = inputs if value.model_name != ModelName.RESPONSE else [s.key for s in history.scans]
        out.append(value.score_of(event.patient, event.event_id, event.occurred_at, used))
    return out


@contextmanager
def _named_on_a_full_disk(folder: Path | None) -> Iterator[None]:
    """A full disk's error names the folder being written when the library's does not
    (pydicom's ``close()`` says only "No space left on device"), so the worker's log tells the
    operator which disk to free."""
    try:
        yield
    except OSError as err:
        if folder is None or err.filename is not None or err.errno not in DISK_FULL_ERRNOS:
            raise
        raise OSError(err.errno, err.strerror, str(folder)) from err


def _fetch(url: str, study_uid: str, folder: Path, headers: dict[str, str] | None = None) -> None:
    """Fetch a DICOMweb study into ``folder`` unless it is there (irtmon's own SEG/SR left out)."""

    fetch_study(
        url, study_uid, folder, skip_manufacturer=DERIVED_MANUFACTURER, headers=headers or None
    )


def _outputs(
    outputs: dict[str, str], url: str | None, headers: dict[str, str] | None = None
) -> dict[str, object]:
    """Describe the SEG and SR written (UIDs and paths); with ``url``, store them on that
    DICOMweb server first (STOW-RS, authenticated with ``headers``)."""
    import pydicom

    names = sorted(outputs)
    stored: dict[str, object] = {}
    if url is not None:
        store_instances(url, [outputs[n] for n in names], headers=headers or None)
        stored["stored_to"] = url
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
