"""Generate a virtual cohort: DICOM studies, slides, ground truth, manifest and event stream.

Two generative stories: ``story="v1"`` (:mod:`clinic.story`, one irradiated target measured)
and ``story="v2"`` (:mod:`clinic.story_v2`: several lesions in several organs, new lesions, a
reader's SEG at every study, every parameter sourced). Layout of ``out_dir``::

    cohort.json                      seed, size, story version, patient count, the folder
    manifest.csv, manifest.parquet   one row per artefact, with ground-truth labels
    events.jsonl                     the time-ordered event stream (clinic.events)
    ground_truth/identities.csv      clear id -> pseudonym (the ONLY place clear ids appear)
    ground_truth/<pseudonym>.json    the patient's story and per-timepoint lesion truth
    ground_truth/lesions.csv, .parquet   v2: one row per lesion per timepoint
    patients/<pseudonym>/tp<k>-<label>/<series>/IM-0001.dcm ...
                                     v1: + RTSTRUCT.dcm, SEG.dcm (the GTV) at planning;
                                     v2: + SEG.dcm (every lesion seen) in every study and
                                     RTSTRUCT.dcm (GTVs and the other lesions) at planning;
                                     labels.npz (the true label map) always
    patients/<pseudonym>/biopsy<i>/slide.tiff, slide.tiles.parquet
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from clinic.contours import ROI_NAME, slice_contours, write_rtstruct, write_seg
from clinic.ct import SeriesSpec, ct_slice, slice_uid
from clinic.dicomio import StudyInfo, uid
from clinic.events import EVENTS_FILE, biopsy_event, imaging_event, treatment_events, write_events
from clinic.pcct import IODINE_SLOPE, PCCT_MANUFACTURER, PCCT_MODEL, pcct_series
from clinic.phantom import (
    CONVENTIONAL_KEV,
    Geometry,
    LesionTexture,
    add_noise,
    hounsfield,
    noise_hu,
    render_slice,
)
from clinic.slides import render_slide, write_pyramid
from clinic.story import Patient, Timepoint, lesion_truth, sample_patient
from schemas.enums import Modality
from schemas.events import Event, LesionReference
from schemas.manifest import MANIFEST_COLUMNS, MANIFEST_COLUMNS_V2, write_manifest
from schemas.pseudonym import pseudonymise


@dataclass(frozen=True)
class ClinicSize:
    """Image sizes of a cohort."""

    geometry: Geometry
    slide_px: int


SIZES: dict[str, ClinicSize] = {
    "test": ClinicSize(Geometry(rows=128, cols=128, n_slices=40, pixel_mm=2.7, slice_mm=3.0), 2048),
    "small": ClinicSize(
        Geometry(rows=256, cols=256, n_slices=80, pixel_mm=1.4, slice_mm=1.5), 4096
    ),
    "realistic": ClinicSize(
        Geometry(rows=512, cols=512, n_slices=200, pixel_mm=0.7, slice_mm=1.5), 8192
    ),
}


STORIES: tuple[str, ...] = ("v1", "v2")
"""Story versions :func:`generate_cohort` can write."""


def demo_key(seed: int) -> str:
    """The pseudonym key used when none is given (synthetic patients only)."""
    return f"irtmon-virtual-clinic-demo-key-{seed}"


def _rng(seed: int, *parts: int) -> np.random.Generator:
    return np.random.default_rng([seed, *parts])


def _write_study(
    folder: Path,
    patient: Patient,
    number: int,
    seed: int,
    tp: Timepoint,
    study: StudyInfo,
    geometry: Geometry,
    textures: list[LesionTexture],
) -> tuple[dict[str, tuple[SeriesSpec, float | None, Path]], list[np.ndarray], dict, list]:
    """Render one study slice by slice and write every series. Returns series, labels, contours."""
    if tp.pcct:
        specs = [(spec, kev) for kev, spec in pcct_series(seed, study.study_uid, study.acquired)]
    else:
        spec = SeriesSpec(uid(seed, study.study_uid, "ct"), 2, "Thorax 3.0 Br40 CE")
        specs = [(spec, None)]
    series: dict[str, tuple[SeriesSpec, float | None, Path]] = {}
    for spec, kev in specs:
        name = "CT" if not tp.pcct else (f"VMI_{kev:g}keV" if kev is not None else "IODINE")
        (folder / name).mkdir(parents=True, exist_ok=True)
        series[spec.series_uid] = (spec, kev, folder / name)
    labels: list[np.ndarray] = []
    contours: dict[int, list[np.ndarray]] = {}
    headers: list = []
    for k in range(geometry.n_slices):
        comps = render_slice(patient, tp.days, tp.pose, geometry, k, textures)
        labels.append(comps.labels)
        if tp.index == 0:
            found = slice_contours(comps.target_fraction, geometry, k)
            if found:
                contours[k] = found
        for n, (series_uid, (spec, kev, sfolder)) in enumerate(series.items()):
            rng = _rng(seed, number, 2, tp.index, n, k)
            if tp.pcct and kev is None:
                image = np.clip(add_noise(comps.iodine, 0.25, rng), 0.0, 650.0 * IODINE_SLOPE * 100)
            else:
                energy = kev if kev is not None else CONVENTIONAL_KEV
                image = add_noise(hounsfield(comps, energy), noise_hu(energy), rng)
            ds = ct_slice(image, study, spec, geometry, k, slice_uid(series_uid, k))
            ds.save_as(sfolder / f"IM-{k + 1:04d}.dcm", enforce_file_format=True)
            if n == 0:
                del ds.PixelData
                headers.append(ds)
    return series, labels, contours, headers


def generate_patient(
    out_dir: Path, number: int, seed: int, size: str, key: str | bytes, n_timepoints: int
) -> tuple[list[dict[str, object]], list[Event], dict[str, object]]:
    """Generate patient ``number`` (1-based); return its manifest rows, events and identity."""
    clinic_size = SIZES[size]
    geometry = clinic_size.geometry
    patient = sample_patient(_rng(seed, number, 0), number, n_timepoints)
    psn = pseudonymise(patient.clear_id, key)
    root = out_dir / "patients" / psn
    textures = [
        LesionTexture(patient, les, _rng(seed, number, 1, les.index)) for les in patient.lesions
    ]
    cp = patient.change_point_days
    cp_at = None if cp is None else (patient.rt.start + timedelta(days=cp)).isoformat()
    base = {
        "patient": psn,
        "story_version": "v1",
        "phenotype": str(patient.phenotype),
        "response_class": str(patient.response),
        "responder": patient.responder,
        "pseudo_progression": patient.response.value == "pseudo_progression",
        "change_point_days": cp,
        "change_point_at": cp_at,
    }
    rows: list[dict[str, object]] = []
    events: list[Event] = list(treatment_events(patient, psn, seed))
    truth_tps: list[dict[str, object]] = []

    biopsy_truth = []
    for b in patient.biopsies:
        folder = root / f"biopsy{b.index}"
        image, tiles, truth = render_slide(
            _rng(seed, number, 3, b.index),
            patient.phenotype,
            b.til_intratumoral_per_mm2,
            b.til_stromal_per_mm2,
            clinic_size.slide_px,
        )
        slide = folder / "slide.tiff"
        write_pyramid(slide, image, description="irtmon virtual clinic H&E, synthetic")
        tiles.to_parquet(folder / "slide.tiles.parquet", index=False)
        biopsy_truth.append(
            {"index": b.index, "days": b.days, **asdict(truth), "pd_l1_tps": b.pd_l1_tps}
        )
        events.append(
            biopsy_event(
                seed,
                psn,
                b.index,
                b.at,
                slide.resolve(),
                b.pd_l1_tps,
                truth.til_intratumoral_per_mm2,
            )
        )
        rows.append(
            {
                **base,
                "timepoint": sum(tp.days < b.days for tp in patient.timepoints),
                "timepoint_label": f"biopsy{b.index}",
                "days_from_rt_start": b.days,
                "acquired_at": b.at.isoformat(),
                "modality": "WSI",
                "series_kind": "he_slide",
                "path": str(slide.relative_to(out_dir)),
                "til_density_per_mm2": truth.til_intratumoral_per_mm2,
            }
        )

    def nearest_til(days: float) -> float:
        before = [bt for bt in biopsy_truth if bt["days"] <= days] or biopsy_truth
        return float(before[-1]["til_intratumoral_per_mm2"])

    for tp in patient.timepoints:
        folder = root / f"tp{tp.index}-{tp.label}"
        study = StudyInfo(
            patient_id=psn,
            patient_sex=patient.sex,
            patient_birth_date=f"{patient.birth_year}0101",
            study_uid=uid(seed, psn, "study", tp.index),
            study_id=f"{tp.index + 1}",
            accession=f"A{uid(seed, psn, 'acc', tp.index)[-10:]}",
            acquired=tp.at,
            frame_of_reference_uid=uid(seed, psn, "for", tp.index),
            description="RT planning CT thorax" if tp.index == 0 else "CT thorax follow-up",
            manufacturer=PCCT_MANUFACTURER,
            model=PCCT_MODEL if tp.pcct else "SOMATOM Definition AS",
            station="VCLINIC-PCCT1" if tp.pcct else "VCLINIC-CT1",
        )
        series, labels, contours, headers = _write_study(
            folder, patient, number, seed, tp, study, geometry, textures
        )
        label_map = np.stack(labels)
        np.savez_compressed(folder / "labels.npz", labels=label_map)
        lesions_truth = []
        for les in patient.lesions:
            vol, diam = lesion_truth(les, tp.days)
            lesions_truth.append(
                {
                    "index": les.index,
                    "irradiated": les.irradiated,
                    "label": les.index + 1,
                    "volume_ml": vol,
                    "longest_axial_diameter_mm": diam,
                    "mask_volume_ml": float((label_map == les.index + 1).sum() * geometry.voxel_ml),
                }
            )
        target = lesions_truth[0]
        lesion_ref = None
        if tp.index == 0:
            rts_path, seg_path = folder / "RTSTRUCT.dcm", folder / "SEG.dcm"
            write_rtstruct(
                rts_path,
                study,
                headers,
                contours,
                uid(seed, psn, "rtss"),
                uid(seed, psn, "rtss", 1),
            )
            seg_uid = uid(seed, psn, "seg", 1)
            write_seg(seg_path, headers, label_map == 1, uid(seed, psn, "seg"), seg_uid, study)
            lesion_ref = LesionReference(
                kind="seg",
                sop_instance_uid=seg_uid,
                path=str(seg_path.resolve()),
                roi_name=ROI_NAME,
            )
        modality = Modality.PCCT if tp.pcct else Modality.CT
        image_series = list(series)
        events.append(
            imaging_event(
                seed,
                psn,
                tp.index,
                modality,
                study.study_uid,
                image_series,
                folder.resolve(),
                tp.at + timedelta(minutes=20),
                f"{'PCCT' if tp.pcct else 'CT'} thorax {tp.label}",
                lesion_ref,
            )
        )
        tp_base = {
            **base,
            "timepoint": tp.index,
            "timepoint_label": tp.label,
            "days_from_rt_start": tp.days,
            "acquired_at": tp.at.isoformat(),
            "study_uid": study.study_uid,
            "lesion_volume_ml": target["volume_ml"],
            "longest_axial_diameter_mm": target["longest_axial_diameter_mm"],
            "total_lesion_volume_ml": sum(t["volume_ml"] for t in lesions_truth),
            "sum_of_diameters_mm": sum(t["longest_axial_diameter_mm"] for t in lesions_truth),
            "til_density_per_mm2": nearest_til(tp.days),
        }
        for series_uid, (_spec, kev, sfolder) in series.items():
            kind = "ct" if not tp.pcct else ("vmi" if kev is not None else "iodine")
            rows.append(
                {
                    **tp_base,
                    "modality": str(modality),
                    "series_kind": kind,
                    "energy_kev": kev,
                    "path": str(sfolder.relative_to(out_dir)),
                    "series_uid": series_uid,
                }
            )
        if tp.index == 0:
            for kind, p in (("rtstruct", "RTSTRUCT.dcm"), ("seg", "SEG.dcm")):
                rows.append(
                    {
                        **tp_base,
                        "modality": kind.upper(),
                        "series_kind": kind,
                        "path": str((folder / p).relative_to(out_dir)),
                    }
                )
        truth_tps.append(
            {
                "timepoint": tp.index,
                "label": tp.label,
                "days_from_rt_start": tp.days,
                "acquired_at": tp.at.isoformat(),
                "modality": str(modality),
                "study_uid": study.study_uid,
                "folder": str(folder.relative_to(out_dir)),
                "pose": asdict(tp.pose),
                "lesions": lesions_truth,
            }
        )

    truth = {
        "story_version": "v1",
        "patient": psn,
        "phenotype": str(patient.phenotype),
        "immune_activity": patient.immune_activity,
        "response_class": str(patient.response),
        "change_point_days": cp,
        "change_point_at": cp_at,
        "rt": {
            "dose_gy": patient.rt.dose_gy,
            "fractions": patient.rt.fractions,
            "start": patient.rt.start.isoformat(),
        },
        "ici": {
            "agent": patient.ici.agent,
            "dose_mg": patient.ici.dose_mg,
            "interval_days": patient.ici.interval_days,
        },
        "ct_signals": {
            "heterogeneity_hu": patient.heterogeneity,
            "rim_enhancement_mgml": patient.rim_enhancement,
            "core_iodine_mgml": patient.core_iodine,
            "necrosis": patient.necrosis,
        },
        "lesions": [{k: v for k, v in asdict(les).items()} for les in patient.lesions],
        "biopsies": biopsy_truth,
        "timepoints": truth_tps,
    }
    gt = out_dir / "ground_truth"
    gt.mkdir(parents=True, exist_ok=True)
    (gt / f"{psn}.json").write_text(json.dumps(truth, indent=1, default=str))
    return rows, events, {"clear_id": patient.clear_id, "pseudonym": psn}


def generate_cohort(
    out_dir: Path | str,
    n_patients: int,
    seed: int,
    size: str = "test",
    *,
    key: str | bytes | None = None,
    n_timepoints: int = 5,
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
    story: str = "v1",
) -> Path:
    """Generate a cohort of ``n_patients`` virtual patients into ``out_dir``.

    Parameters
    ----------
    out_dir
        Folder to write (created; existing files of the same names are overwritten).
    n_patients
        Number of patients; patient ``i`` depends only on ``seed`` and ``i``.
    seed
        Seed of every random draw: the same seed gives the same pixel data, UIDs and event ids.
    size
        ``"test"`` (128 x 128 x 40 CT, 2048 px slides), ``"small"`` (256 x 256 x 80 CT, 4096 px
        slides) or ``"realistic"`` (512 x 512 x 200 CT, 8192 px slides).
    key
        Pseudonym key (at least 16 bytes); default :func:`demo_key` of the seed.
    n_timepoints
        CT sessions per patient, the planning CT included.
    workers
        Processes generating patients in parallel (output is identical for any value).
    progress
        Called with the number of patients finished so far.
    story
        ``"v1"`` (default) or ``"v2"``; written into ``cohort.json``, the manifest and the
        ground truth. The same seed and story give the same files.

    Returns
    -------
    Path
        The cohort folder.
    """
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {', '.join(SIZES)}")
    if story not in STORIES:
        raise ValueError(f"unknown story {story!r}; choose one of {', '.join(STORIES)}")
    if n_patients < 1:
        raise ValueError(f"n_patients must be at least 1, got {n_patients}")
    generated_at = datetime.now(UTC).isoformat(timespec="seconds")  # the protocol's stamp
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    key = key if key is not None else demo_key(seed)
    args = [(story, out, i, seed, size, key, n_timepoints) for i in range(1, n_patients + 1)]
    results = []
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for done, result in enumerate(pool.map(_generate_star, args), start=1):
                results.append(result)
                if progress:
                    progress(done)
    else:
        for done, a in enumerate(args, start=1):
            results.append(_generate_star(a))
            if progress:
                progress(done)
    rows = [r for res in results for r in res[0]]
    events = [e for res in results for e in res[1]]
    write_manifest(rows, out, MANIFEST_COLUMNS if story == "v1" else MANIFEST_COLUMNS_V2)
    if story == "v2":
        _write_lesion_table([r for res in results for r in res[3]], out / "ground_truth")
    write_events(out / EVENTS_FILE, events)
    with (out / "ground_truth" / "identities.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["clear_id", "pseudonym"])
        writer.writeheader()
        writer.writerows(res[2] for res in results)
    meta = {
        "seed": seed,
        "n_patients": n_patients,
        "size": size,
        "n_timepoints": n_timepoints,
        "root": str(out),
        "generator": "irtmon clinic 0.1",
        "story_version": story,
        "generated_at": generated_at,
    }
    (out / "cohort.json").write_text(json.dumps(meta, indent=1))
    return out


def _generate_star(a: tuple) -> tuple:
    story, out, number, seed, size, key, n_timepoints = a
    if story == "v1":
        return generate_patient(out, number, seed, size, key, n_timepoints)
    from clinic.story_v2.writer import generate_patient as generate_patient_v2

    clinic_size = SIZES[size]
    return generate_patient_v2(
        out, number, seed, clinic_size.geometry, clinic_size.slide_px, key, n_timepoints
    )


LESION_TABLE = "lesions"
"""``ground_truth/lesions.csv`` and ``.parquet`` (story v2): one row per lesion per timepoint."""


def _write_lesion_table(rows: list[dict[str, object]], folder: Path) -> None:
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame = frame.sort_values(["patient", "timepoint", "track_id"], kind="stable")
    frame = frame.reset_index(drop=True)
    frame.to_csv(folder / f"{LESION_TABLE}.csv", index=False)
    frame.to_parquet(folder / f"{LESION_TABLE}.parquet", index=False)
