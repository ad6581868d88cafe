"""One study in, every lesion out: :func:`analyse_study`.

Where :func:`~models.imaging.pipeline.analyse_acquisition` measures one target lesion,
:func:`analyse_study` measures every lesion of the study and follows them over time:

1. the reference series is read (as for one lesion; a PCCT study's VMI nearest 70 keV);
2. every lesion of the study's annotation (each segment of a DICOM SEG, else each lesion ROI
   of an RTSTRUCT; :mod:`~models.imaging.annotations`) is placed on it; a lesion that cannot be
   used is a named :class:`~models.imaging.annotations.LesionFailure` and the others go on;
3. without a usable annotation, every baseline lesion is carried over by the study's one
   registration and refined (:mod:`~models.imaging.propagation`);
4. each lesion is measured (long axis, short axis, volume) and its features computed on its
   own cropped region at its own voxel spacing;
5. the lesions are matched to the tracked ones (:mod:`~models.imaging.matching`; centres
   through the same registration, overlap of the carried baseline masks), new lesions get new
   tracking UIDs, vanished ones are recorded as not seen;
6. RECIST 1.1 and iRECIST are assessed over every timepoint so far (:class:`Irecist`);
7. the SEG (one segment per lesion) and the SR (one measurement group per lesion) are written
   when asked.

The result is a :class:`StudyResult`: an :class:`~models.imaging.pipeline.ImagingResult`
whose old fields still describe one lesion (the irradiated one when known, else the largest
target), so callers of the single-lesion result keep working, with the lesions, the failures,
the new tracking state and the timepoint's assessment added. Pure: no broker, database or UI.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from models.changepoint.irecist import Irecist, IrecistConfig
from models.exceptions import InsufficientDataError, NoLesionMeasuredError, UnreadableInputError
from models.imaging.annotations import (
    Lesion,
    LesionFailure,
    LesionProblem,
    LesionSet,
    read_lesions,
    separate_overlaps,
)
from models.imaging.burden import Burden, measure_burden
from models.imaging.dicomweb import SeriesRetriever
from models.imaging.features import Feature
from models.imaging.lesion import MaskSource
from models.imaging.lesion_results import LesionResult, StudyResult
from models.imaging.matching import (
    MatchConfig,
    Observation,
    TrackingState,
    TrackingUpdate,
    track,
)
from models.imaging.pipeline import (
    Baseline,
    LoadedAcquisition,
    burden_features,
    lesion_features,
    load_acquisition,
    mirp_version,
    spectral_for,
)
from models.imaging.propagation import carry_masks, propagate_lesions, register_study
from models.imaging.radiomics import DEFAULT_RADIOMICS_CONFIG, RadiomicsConfig
from models.imaging.registration import RegistrationResult
from models.imaging.volume import Volume, mask_box, mask_voxels
from models.imaging.writers import (
    ALGORITHM_NAME,
    ALGORITHM_VERSION,
    LesionOutput,
    TimepointOutput,
    write_lesion_outputs,
)
from schemas.enums import LesionRole, RecistResponse

__all__ = ["LESION_ALGORITHM", "LesionResult", "StudyResult", "analyse_study"]

log = logging.getLogger(__name__)

LESION_ALGORITHM = "irtmon-lesions 1.0"
"""Version of the every-lesion reading (annotations, propagation, matching, RECIST)."""


# ------------------------------------------------------------------------- steps


def _annotations(loaded: LoadedAcquisition, lesion_paths: Sequence[str | Path] | None) -> LesionSet:
    """Every lesion of the given annotations, else of the study's first usable SEG (then
    RTSTRUCT); failures of every object tried are kept."""
    ref = loaded.ref
    result = LesionSet()

    def read(path: str | Path) -> LesionSet:
        try:
            return read_lesions(path, ref.volume, ref.frame_of_reference_uid)
        except UnreadableInputError as err:
            failure = LesionFailure(Path(path).name, 0, LesionProblem.UNREADABLE, str(err), "", "")
            return LesionSet([], [failure])

    if lesion_paths:
        for path in lesion_paths:
            result.extend(read(path))
        kept, overlaps = separate_overlaps(result.lesions, what="lesion")
        result.lesions = kept
        result.failures.extend(overlaps)
        return result
    index = loaded.index
    if index is None:
        return result
    for wanted in ("SEG", "RTSTRUCT"):
        for uid, paths in sorted(index.contours.items()):
            if index.modality.get(uid) != wanted:
                continue
            for path in sorted(paths):
                found = read(path)
                result.failures.extend(found.failures)
                if found.lesions:
                    result.lesions = found.lesions
                    return result
    return result


def _baseline_lesions(baseline: Baseline) -> list[Lesion]:
    if baseline.lesions:
        return list(baseline.lesions)
    return [Lesion(baseline.mask, "target lesion", 1, MaskSource.GIVEN, in_field=None)]


def _registered(
    volume: Volume, baseline: Baseline, lesions: Sequence[Lesion], deformable: bool
) -> RegistrationResult:
    """The study's one registration (:func:`register_study`), the baseline's half of it kept on
    ``baseline`` for its next follow-up (``Baseline.registration_side``)."""
    registration = register_study(
        volume, baseline.volume, lesions, deformable, baseline.registration_side
    )
    baseline.registration_side = registration.baseline
    return registration


def _study_time(headers: Sequence[Dataset]) -> datetime | None:
    if not headers:
        return None
    ds = headers[0]
    for date_kw, time_kw in (
        ("AcquisitionDate", "AcquisitionTime"),
        ("SeriesDate", "SeriesTime"),
        ("StudyDate", "StudyTime"),
    ):
        date = str(ds.get(date_kw, "") or "")
        if len(date) == 8:
            clock = (str(ds.get(time_kw, "") or "").split(".")[0] + "000000")[:6]
            try:
                return datetime.strptime(date + clock, "%Y%m%d%H%M%S")
            except ValueError:
                continue
    return None


def _overlaps(
    carried: list[np.ndarray], baseline_lesions: Sequence[Lesion], found: Sequence[Lesion]
) -> dict[tuple[str, str], float]:
    """Dice of each carried baseline mask with each found lesion (non-zero pairs only; a voxel
    two found lesions share counts for the later one). Counted inside each carried mask's
    bounding box, which holds all its voxels: the same counts as over the whole grid without a
    full-size label image (a twentieth of a five-lesion full-size follow-up, 2026-12-03)."""
    if not found:
        return {}
    sizes = [mask_voxels(lesion.mask) for lesion in found]
    out: dict[tuple[str, str], float] = {}
    for lesion, mask in zip(baseline_lesions, carried, strict=True):
        box = mask_box(mask) if lesion.tracking_uid else None
        if box is None:
            continue
        inside = mask[box]
        labels = np.zeros(inside.shape, np.int32)
        for j, other in enumerate(found, start=1):
            labels[other.mask[box]] = j
        counts = np.bincount(labels[inside], minlength=len(found) + 1)
        n = int(np.count_nonzero(inside))
        for j in np.nonzero(counts[1:])[0]:
            dice = 2 * counts[j + 1] / (n + sizes[j])
            out[(lesion.tracking_uid, _key(found[j]))] = float(dice)
    return out


def _key(lesion: Lesion) -> str:
    if lesion.source is MaskSource.PROPAGATED:
        return f"propagated/{lesion.tracking_uid or lesion.label}"
    return f"{lesion.reference_uid}/{lesion.number}"


def _primary(results: Sequence[LesionResult]) -> LesionResult | None:
    measured = [r for r in results if r.burden is not None and r.mask is not None]
    if not measured:
        return None
    for pick in (
        [r for r in measured if r.in_field],
        [r for r in measured if r.role in (LesionRole.TARGET, LesionRole.NEW_TARGET)],
        measured,
    ):
        if pick:
            return max(pick, key=lambda r: r.burden.volume_ml if r.burden else 0.0)
    return None


def _primary_unmeasured(results: Sequence[LesionResult]) -> LesionResult:
    """The primary lesion of a study where no lesion was measured (every one gone, or not
    evaluable): the one in the radiotherapy field, else the first target, else the first
    lesion."""
    for pick in (
        [r for r in results if r.in_field],
        [r for r in results if r.role is LesionRole.TARGET],
        list(results),
    ):
        if pick:
            return pick[0]
    raise ValueError("a study without any tracked lesion has no primary lesion")


def _study_features(update: TrackingUpdate, tag: dict[str, Any]) -> dict[str, Feature]:
    tp = update.timepoint
    assert tp is not None
    counted = [m for m in tp.lesions if m.role is not LesionRole.NORMAL_NODE]
    targets = [m for m in counted if m.role is LesionRole.TARGET]

    def total(ms: Sequence, attr: str) -> float:
        return float(sum(getattr(m, attr) or 0.0 for m in ms))

    in_field = [m for m in counted if m.in_field]
    out_field = [m for m in counted if not m.in_field]
    new = [m for m in counted if m.role.is_new and m.seen]

    def feature(value: float, unit: str, what: str) -> Feature:
        return Feature(float(value), unit, "lesions", what, **tag)

    return {
        "lesions_sum_diameters_mm": feature(
            total(targets, "diameter_mm"),
            "mm",
            "RECIST 1.1 sum of diameters of the target lesions (short axis for nodes)",
        ),
        "lesions_in_field_sum_mm": feature(
            total(in_field, "diameter_mm"),
            "mm",
            "sum of RECIST diameters of every lesion in the radiotherapy field",
        ),
        "lesions_out_of_field_sum_mm": feature(
            total(out_field, "diameter_mm"),
            "mm",
            "sum of RECIST diameters of every lesion not marked in the radiotherapy field",
        ),
        "lesions_total_volume_ml": feature(
            total(counted, "volume"), "ml", "total volume of every lesion measured"
        ),
        "lesions_seen_count": feature(
            sum(1 for m in counted if m.seen), "1", "lesions seen (normal nodes excluded)"
        ),
        "lesions_new_count": feature(len(new), "1", "new lesions present"),
        "lesions_not_evaluable_count": feature(
            sum(1 for m in counted if m.seen is None), "1", "tracked lesions not evaluable"
        ),
    }


# ------------------------------------------------------------------------- entry point


def analyse_study(
    location: str | Path | Sequence[str | Path],
    *,
    series_uid: str | None = None,
    study_uid: str | None = None,
    lesion_paths: Sequence[str | Path] | None = None,
    baseline: Baseline | None = None,
    state: TrackingState | None = None,
    time: Any = None,
    nontarget_unequivocal_progression: bool | None = None,
    config: RadiomicsConfig = DEFAULT_RADIOMICS_CONFIG,
    radiomics: bool = True,
    peritumoural: bool = True,
    enhancement: bool = True,
    deformable: bool = False,
    output_dir: str | Path | None = None,
    dicomweb_client: SeriesRetriever | None = None,
    irecist: IrecistConfig | None = None,
    matching: MatchConfig | None = None,
) -> StudyResult:
    """Every lesion of one CT or PCCT study, measured, tracked and assessed.

    Parameters
    ----------
    location, series_uid, study_uid, dicomweb_client
        As for :func:`~models.imaging.pipeline.analyse_acquisition`.
    lesion_paths
        SEG and/or RTSTRUCT files of this study's lesions (read together); when left out, the
        study's first SEG with a usable lesion is used, else its first RTSTRUCT.
    baseline
        The baseline study (``StudyResult.as_baseline()``): its volume and lesions are
        propagated to a study without annotation, and registered to this study (once) to match
        lesions. Leave out for the baseline itself.
    state
        The tracking state after the previous study (``StudyResult.tracking``); None for the
        baseline.
    time
        When the study was taken (days or a datetime; default: the series' acquisition date),
        for iRECIST's confirmation window.
    nontarget_unequivocal_progression
        The reader's call on the non-target lesions, when made.
    config, radiomics, peritumoural, enhancement, deformable
        Feature settings and switches, as for a single lesion.
    output_dir
        When given, ``lesions-seg.dcm`` and ``lesions-sr.dcm`` are written there.
    irecist, matching
        RECIST/iRECIST thresholds and the matching gates.

    Raises
    ------
    UnreadableInputError
        The series cannot be read.
    NoLesionMeasuredError
        No lesion could be measured (each failure is in ``failures``). Not raised for a
        follow-up without annotation whose lesions, carried from the baseline, are each gone or
        not evaluable: when every one shows no lesion at its site they have all gone, each is
        not seen (0 mm), the primary lesion's burden is 0 and the assessment is made (a
        complete response when no other lesion remains); when any is not evaluable the
        study is assessed as such (RECIST 1.1 NE, iRECIST iNE; ``burden`` None, no features),
        each lesion's reason in ``failures``.
    InsufficientDataError
        No annotation and no baseline.
    OSError
        Transient I/O (a DICOMweb server down): retry.
    """
    loaded = load_acquisition(
        location, series_uid=series_uid, study_uid=study_uid, dicomweb_client=dicomweb_client
    )
    ref = loaded.ref
    volume = ref.volume
    geometry = volume.geometry
    is_follow_up = state is not None and bool(state.timepoints)
    if time is None:
        time = _study_time(ref.headers)
        if time is None and is_follow_up:
            raise ValueError(f"series {ref.series_uid} has no date: pass time=")

    found = _annotations(loaded, lesion_paths)
    failures = list(found.failures)
    lesions = list(found.lesions)
    base_lesions = _baseline_lesions(baseline) if baseline is not None else []
    registration: RegistrationResult | None = None
    quality: dict[str, dict[str, Any]] = {}
    if not lesions:
        if baseline is None:
            if failures:
                raise NoLesionMeasuredError(
                    f"series {ref.series_uid}: no lesion could be read: "
                    + "; ".join(f.message for f in failures),
                    tuple(failures),
                )
            raise InsufficientDataError(
                f"series {ref.series_uid}: no RTSTRUCT or SEG and no baseline to propagate from"
            )
        registration = _registered(volume, baseline, base_lesions, deformable)
        carried = propagate_lesions(
            volume, baseline.volume, base_lesions, registration=registration
        )
        registration = carried.registration
        lesions = carried.lesions
        failures += carried.failures
        quality = carried.quality
    elif baseline is not None and is_follow_up:
        # for matching only: the rigid stages place the centres; no B-spline needed
        registration = _registered(volume, baseline, base_lesions, deformable=False)

    # measure every lesion
    measured: list[tuple[Lesion, Burden]] = []
    for lesion in lesions:
        try:
            measured.append((lesion, measure_burden(lesion.mask, geometry)))
        except InsufficientDataError as err:
            failures.append(
                LesionFailure(
                    lesion.label,
                    lesion.number,
                    LesionProblem.NOT_MEASURABLE,
                    f"lesion {lesion.number} {lesion.label!r}: {err}",
                    lesion.reference_uid,
                    lesion.tracking_uid,
                )
            )
    known = state.by_uid() if state is not None else {}
    # a carried lesion with no lesion at its site has gone (0 mm); any other failure is not
    # evaluable: a failed read is no evidence that a lesion is gone
    gone = {
        f.tracking_uid
        for f in failures
        if f.problem is LesionProblem.NOT_FOUND and f.tracking_uid in known
    }
    every_lesion_gone = (
        not measured
        and is_follow_up
        and registration is not None
        and bool(gone)
        and all(f.tracking_uid in gone for f in failures)
    )
    # a follow-up without annotation whose carried lesions are each gone or not evaluable (too
    # faint to outline, an outline run into its surroundings, carried outside the scan) is
    # RECIST 1.1's not evaluable (NE), assessed and stored as such; a reader's annotation of
    # which nothing could be read, or a lesion of no known track, is bad input and raises
    nothing_evaluable = (
        not measured
        and not every_lesion_gone
        and is_follow_up
        and registration is not None
        and not found.lesions
        and bool(failures)
        and all(f.tracking_uid in known for f in failures)
    )
    if not measured and not every_lesion_gone and not nothing_evaluable:
        raise NoLesionMeasuredError(
            f"series {ref.series_uid}: no lesion could be measured: "
            + "; ".join(f.message for f in failures),
            tuple(failures),
        )

    # into the reference frame, and matched
    def to_reference(point: np.ndarray) -> tuple[float, float, float]:
        if registration is None:
            return tuple(float(v) for v in point)  # type: ignore[return-value]
        return tuple(registration.transform.TransformPoint(tuple(float(v) for v in point)))

    overlap = {}
    if registration is not None and baseline is not None:
        annotated = [lesion for lesion, _ in measured if lesion.source is not MaskSource.PROPAGATED]
        if annotated:
            masks = carry_masks(volume, baseline.volume, base_lesions, registration)
            overlap = _overlaps(masks, base_lesions, annotated)
    centres = {_key(lesion): lesion.centre_mm(geometry) for lesion, _ in measured}
    observations = [
        Observation(
            key=_key(lesion),
            label=lesion.label,
            centre_mm=to_reference(centres[_key(lesion)]),
            long_axis_mm=b.longest_diameter_mm,
            short_axis_mm=b.short_axis_mm,
            volume_ml=b.volume_ml,
            organ=lesion.organ,
            is_node=lesion.is_node,
            in_field=lesion.in_field,
            tracking_uid=lesion.tracking_uid,
        )
        for lesion, b in measured
    ]
    unattributed = sum(1 for f in failures if f.tracking_uid not in known)
    update = track(
        state,
        observations,
        time=time,
        label=ref.study_uid,
        uid_root=f"{ref.study_uid}/{ref.series_uid}",
        overlap=overlap,
        not_evaluable=[
            f.tracking_uid
            for f in failures
            if f.tracking_uid in known and f.tracking_uid not in gone
        ],
        unattributed_failures=unattributed if is_follow_up else 0,
        nontarget_unequivocal_progression=nontarget_unequivocal_progression,
        frame_of_reference_uid=(baseline.frame_of_reference_uid if baseline else "")
        or ref.frame_of_reference_uid,
        reference_series_uid=(baseline.series_uid if baseline else "") or ref.series_uid,
        config=matching,
        recist=(irecist or IrecistConfig()).rules(),
    )
    machine = Irecist(config=irecist).fit_timepoints(update.state.timepoints)
    assessment = machine.assessments_[-1]

    # per-lesion results and features
    by_key = {_key(lesion): (lesion, b) for lesion, b in measured}
    tracked = update.state.by_uid()
    results: list[LesionResult] = []
    for a in update.assignments:
        t = tracked[a.tracking_uid]
        result = LesionResult(
            tracking_uid=a.tracking_uid,
            tracking_id=a.tracking_id,
            role=a.role,
            status=a.status,
            label=t.label,
            organ=t.organ,
            is_node=t.is_node,
            in_field=t.in_field,
            distance_mm=a.distance_mm,
            overlap=a.overlap,
        )
        if a.key in by_key:
            lesion, b = by_key[a.key]
            result.burden = b
            result.source = lesion.source
            result.number = lesion.number if lesion.source is not MaskSource.PROPAGATED else 0
            result.reference_uid = lesion.reference_uid
            result.mask = lesion.mask
            result.centre_mm = tuple(float(v) for v in centres[a.key])  # type: ignore[assignment]
            result.reference_centre_mm = next(o.centre_mm for o in observations if o.key == a.key)
            result.quality = quality.get(lesion.tracking_uid or lesion.label)
            options = {"config": config, "peritumoural": peritumoural, "enhancement": enhancement}
            try:
                result.features = lesion_features(
                    volume, lesion.mask, ref, radiomics=radiomics, **options
                )
            except InsufficientDataError as err:
                if not radiomics:
                    raise
                # a lesion too small for radiomics (a shrinking irradiated lesion, a new one) is
                # still measured; the models' inputs need no radiomics
                result.features = lesion_features(
                    volume, lesion.mask, ref, radiomics=False, **options
                )
                result.features_problem = str(err)
        results.append(result)
    results.sort(key=lambda r: int(r.tracking_id[1:]) if r.tracking_id[1:].isdigit() else 0)

    primary = _primary(results)
    primary_burden: Burden | None
    if primary is not None:
        assert primary.burden is not None and primary.mask is not None
        primary_burden, primary_mask = primary.burden, primary.mask
        features = burden_features(primary_burden, ref)
        features.update(primary.features)
        features.update(spectral_for(loaded, primary_mask, enhancement=enhancement))
    else:  # no lesion measured: every one gone (the primary measures 0), or not evaluable
        primary = _primary_unmeasured(results)
        primary_mask = np.zeros(geometry.shape, dtype=bool)
        if every_lesion_gone:
            primary_burden = Burden(0.0, 0.0, 0, 0, 0.0)
            features = burden_features(primary_burden, ref)
        else:  # no burden is known: none is made up
            assert nothing_evaluable
            primary_burden, features = None, {}
    tag = {"series_uid": ref.series_uid, "kev": None}
    study_features = _study_features(update, tag)

    provenance: dict[str, Any] = {
        "algorithm": ALGORITHM_NAME,
        "algorithm_version": ALGORITHM_VERSION,
        "lesion_algorithm": LESION_ALGORITHM,
        "study_uid": ref.study_uid,
        "frame_of_reference_uid": ref.frame_of_reference_uid,
        "reference_series_uid": ref.series_uid,
        "series_uids": sorted(loaded.series),
        "multi_energy": loaded.pcct.is_pcct,
        "kernel": ref.kernel,
        # every lesion gone: the 0 mm come from looking at each propagated site
        "mask_source": (primary.source or MaskSource.PROPAGATED).value,
        "mask_label": primary.label,
        "mask_reference_uid": primary.reference_uid,
        "primary_tracking_uid": primary.tracking_uid,
        "lesion_references": sorted({r.reference_uid for r in results if r.reference_uid}),
        "registration": None
        if registration is None
        else {
            **registration.quality(),
            "baseline_series_uid": baseline.series_uid if baseline else "",
        },
        "matching": "registered"
        if registration is not None
        else ("baseline" if not is_follow_up else "unregistered: no baseline images given"),
        "failures": [f.as_dict() for f in failures],
        "features_skipped": {
            r.tracking_id: r.features_problem for r in results if r.features_problem
        },
        "feature_config_version": config.version,
        "feature_config": config.as_dict(),
        "radiomics_library": mirp_version() if radiomics else None,
    }
    result = StudyResult(
        study_uid=ref.study_uid,
        series_uid=ref.series_uid,
        modality="PCCT" if loaded.pcct.is_pcct else "CT",
        burden=primary_burden,
        features=features,
        provenance=provenance,
        volume=volume,
        mask=primary_mask,
        headers=ref.headers,
        lesions=results,
        failures=failures,
        tracking=update.state,
        update=update,
        assessment=assessment,
        study_features=study_features,
        primary_uid=primary.tracking_uid,
    )
    if output_dir is not None:
        outputs = [
            LesionOutput(
                tracking_id=r.tracking_id,
                tracking_uid=r.tracking_uid,
                label=r.label,
                mask=r.mask,
                source=r.source or MaskSource.PROPAGATED,
                burden=r.burden,
                organ=r.organ,
                role=r.role,
                in_field=r.in_field,
            )
            for r in results
        ]
        timepoint = TimepointOutput(
            order=len(update.state.timepoints) - 1,
            irecist=assessment.state.label,
            recist=assessment.recist,
            target=assessment.target,
            nontarget=assessment.nontarget,
            # not evaluable: the sum of the lesions seen is no sum of diameters to report
            sum_mm=None
            if assessment.target is RecistResponse.NE or not np.isfinite(assessment.sum_mm)
            else assessment.sum_mm,
            new_lesions=assessment.new_lesions,
        )
        seg_path, sr_path = write_lesion_outputs(output_dir, ref.headers, outputs, timepoint)
        result.outputs = {"sr": str(sr_path)}
        if seg_path is not None:
            result.outputs["seg"] = str(seg_path)
    return result
