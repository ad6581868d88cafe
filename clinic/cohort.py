"""Generate a virtual cohort: DICOM studies, slides, ground truth, manifest and event stream.

Two generative stories: ``story="v1"`` (:mod:`clinic.story`, one irradiated target measured)
and ``story="v2"`` (:mod:`clinic.story_v2`: several lesions in several organs, new lesions, a
reader's SEG at every study, every parameter sourced). Layout of ``out_dir``::

    cohort.json                      seed, size, story version, patient count, the folder
    manifest.csv, manifest.parquet   one row per artefact, with ground-truth labels
    events.jsonl                     the time-ordered event stream (clinic.events)
    ground_truth/identities.csv      clear id -> pseudonym (the ONLY place clear ids appear)
    .parts/                          only while a generation runs: each finished patient's
                                     result, so a killed run resumes (:func:`generate_cohort`)
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
import hashlib
import json
import os
import pickle
import shutil
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from clinic.acquisitions import (
    SeriesFolders,
    file_rows,
    nearest_til,
    open_series,
    rng,
    series_rows,
    study_event,
    study_info,
    timepoint_row,
    timepoint_truth,
    write_biopsy,
    write_slice,
)
from clinic.contours import (
    ROI_NAME,
    StructureRoi,
    neoplasm_segment,
    slice_contours,
    write_seg,
    write_structure_set,
)
from clinic.dicomio import StudyInfo, uid
from clinic.events import EVENTS_FILE, treatment_events, write_events
from clinic.phantom import Geometry, LesionTexture, render_slice
from clinic.story import Patient, Timepoint, lesion_truth, sample_patient
from clinic.story_v2.variants import BASE
from clinic.story_v2.variants import variant as story_variant
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


def _write_study(
    folder: Path,
    patient: Patient,
    number: int,
    seed: int,
    tp: Timepoint,
    study: StudyInfo,
    geometry: Geometry,
    textures: list[LesionTexture],
) -> tuple[SeriesFolders, list[np.ndarray], dict, list]:
    """Render one study slice by slice and write every series. Returns series, labels, contours."""
    series = open_series(folder, seed, tp, study)
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
        headers.append(write_slice(series, comps, study, geometry, tp, k, seed=seed, number=number))
    return series, labels, contours, headers


def generate_patient(
    out_dir: Path, number: int, seed: int, size: str, key: str | bytes, n_timepoints: int
) -> tuple[list[dict[str, object]], list[Event], dict[str, object]]:
    """Generate patient ``number`` (1-based); return its manifest rows, events and identity."""
    clinic_size = SIZES[size]
    geometry = clinic_size.geometry
    patient = sample_patient(rng(seed, number, 0), number, n_timepoints)
    psn = pseudonymise(patient.clear_id, key)
    root = out_dir / "patients" / psn
    textures = [
        LesionTexture(patient, les, rng(seed, number, 1, les.index)) for les in patient.lesions
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
        slide, event, row = write_biopsy(
            out_dir,
            psn,
            b,
            patient.timepoints,
            patient.phenotype,
            seed=seed,
            number=number,
            slide_px=clinic_size.slide_px,
        )
        biopsy_truth.append(
            {"index": b.index, "days": b.days, **asdict(slide), "pd_l1_tps": b.pd_l1_tps}
        )
        events.append(event)
        rows.append({**base, **row})

    for tp in patient.timepoints:
        folder = root / f"tp{tp.index}-{tp.label}"
        study = study_info(seed, psn, tp, sex=patient.sex, birth_year=patient.birth_year)
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
        rts_path, seg_path = folder / "RTSTRUCT.dcm", folder / "SEG.dcm"
        if tp.index == 0:
            write_structure_set(
                rts_path,
                study,
                headers,
                [StructureRoi(ROI_NAME, contours)],
                uid(seed, psn, "rtss"),
                uid(seed, psn, "rtss", 1),
                description=f"RTSTRUCT {ROI_NAME}",
                name="Planning target",
            )
            seg_uid = uid(seed, psn, "seg", 1)
            write_seg(
                seg_path,
                headers,
                label_map == 1,
                [neoplasm_segment(1, ROI_NAME)],
                uid(seed, psn, "seg"),
                seg_uid,
                study,
                content_label="GTV",
                content_description="Planning target (ground truth)",
                creator="VirtualClinic^Planner",
            )
            lesion_ref = LesionReference(
                kind="seg",
                sop_instance_uid=seg_uid,
                path=str(seg_path.resolve()),
                roi_name=ROI_NAME,
            )
        events.append(study_event(seed, psn, tp, study, series, folder, lesion_ref))
        tp_row = {
            **timepoint_row(base, tp, study),
            "lesion_volume_ml": target["volume_ml"],
            "longest_axial_diameter_mm": target["longest_axial_diameter_mm"],
            "total_lesion_volume_ml": sum(t["volume_ml"] for t in lesions_truth),
            "sum_of_diameters_mm": sum(t["longest_axial_diameter_mm"] for t in lesions_truth),
            "til_density_per_mm2": nearest_til(biopsy_truth, tp.days),
        }
        rows.extend(series_rows(tp_row, tp, series, out_dir))
        if tp.index == 0:
            rows.extend(file_rows(tp_row, [("rtstruct", rts_path), ("seg", seg_path)], out_dir))
        truth_tps.append({**timepoint_truth(tp, study, folder, out_dir), "lesions": lesions_truth})

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
    variant: str = BASE,
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
        Each finished patient's result is kept in ``out_dir/.parts/``; a rerun with the same
        seed, story, size, key and timepoints (and the same clinic code) reuses them, so a
        killed generation continues where it stopped and writes the same files as an
        uninterrupted one. ``generated_at`` in ``cohort.json`` is then when the generation
        first started. ``.parts/`` is removed once the cohort is complete; parts of another
        run (other parameters or code) are discarded.
    progress
        Called with the number of patients finished so far.
    story
        ``"v1"`` (default) or ``"v2"``; written into ``cohort.json``, the manifest and the
        ground truth. The same seed and story give the same files.
    variant
        Story v2 only: a variant of :mod:`clinic.story_v2.variants` (default ``"base"``, story
        v2 as published), written into ``cohort.json`` as ``story_variant``. The same seed
        gives the same patients, changed in that one way (see the module for the one
        exception: a course an immune variant changes).

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
    story_variant(variant)  # a clear error for an unknown name
    if story == "v1" and variant != BASE:
        raise ValueError(f"story variants are of story v2; story v1 has none (got {variant!r})")
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    key = key if key is not None else demo_key(seed)
    parts = out / PARTS_DIR
    # the protocol's stamp: when this generation (first) started
    generated_at = _open_parts(
        parts, _run_fingerprint(story, seed, size, key, n_timepoints, variant)
    )
    kept = {i: r for i in range(1, n_patients + 1) if (r := _read_part(parts, i)) is not None}
    args = [
        (story, out, i, seed, size, key, n_timepoints, variant, parts)
        for i in range(1, n_patients + 1)
        if i not in kept
    ]
    done = len(kept)
    if progress and done:
        progress(done)
    if workers > 1 and len(args) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for a, result in zip(args, pool.map(_generate_and_keep, args), strict=True):
                kept[a[2]] = result
                done += 1
                if progress:
                    progress(done)
    else:
        for a in args:
            kept[a[2]] = _generate_and_keep(a)
            done += 1
            if progress:
                progress(done)
    results = [kept[i] for i in range(1, n_patients + 1)]
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
        **({"story_variant": variant} if story == "v2" else {}),
        "generated_at": generated_at,
    }
    (out / "cohort.json").write_text(json.dumps(meta, indent=1))
    shutil.rmtree(parts, ignore_errors=True)
    return out


PARTS_DIR = ".parts"
"""Folder of a running generation's finished patients (removed when the cohort is done)."""
_RUN_FILE = "run.json"


def _run_fingerprint(
    story: str, seed: int, size: str, key: str | bytes, n_timepoints: int, variant: str = BASE
) -> str:
    """What a patient's result depends on: the parameters (the key only as a hash) and the
    clinic's source code, so parts written by other code are never mixed in."""
    digest = hashlib.sha256()
    raw_key = key.encode() if isinstance(key, str) else key
    digest.update(
        json.dumps(
            {
                "story": story,
                "seed": seed,
                "size": size,
                "key_sha256": hashlib.sha256(raw_key).hexdigest(),
                "n_timepoints": n_timepoints,
                **({"variant": variant} if variant != BASE else {}),
            },
            sort_keys=True,
        ).encode()
    )
    for path in sorted(Path(__file__).parent.rglob("*.py")):
        digest.update(path.relative_to(Path(__file__).parent).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _open_parts(parts: Path, fingerprint: str) -> str:
    """Prepare ``parts`` for a run with ``fingerprint``; return when the run started (the
    earlier run's start when its parts are reused)."""
    run_file = parts / _RUN_FILE
    if run_file.is_file():
        try:
            run = json.loads(run_file.read_text())
        except (OSError, ValueError):
            run = {}
        if run.get("fingerprint") == fingerprint and run.get("started_at"):
            return str(run["started_at"])
    if parts.exists():
        shutil.rmtree(parts)  # another run's parts (other parameters or code)
    parts.mkdir(parents=True)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    run = {"fingerprint": fingerprint, "started_at": started}
    _write_atomic(run_file, json.dumps(run).encode())
    return started


def _part_path(parts: Path, number: int) -> Path:
    return parts / f"patient-{number:06d}.pickle"


def _read_part(parts: Path, number: int) -> tuple | None:
    """A finished patient's result from this run's parts folder (None: generate it)."""
    path = _part_path(parts, number)
    if not path.is_file():
        return None
    try:
        with path.open("rb") as fh:
            # only parts this run's fingerprint admitted, in the folder being written
            return pickle.load(fh)
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError):
        return None  # a damaged part: generate the patient again


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _generate_and_keep(a: tuple) -> tuple:
    """Generate one patient, then keep its result in the parts folder (after every file of
    the patient is written, so a kept part always has its files)."""
    *args, parts = a
    result = _generate_star(tuple(args))
    data = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
    _write_atomic(_part_path(parts, args[2]), data)
    return result


def _generate_star(a: tuple) -> tuple:
    story, out, number, seed, size, key, n_timepoints, variant = a
    if story == "v1":
        return generate_patient(out, number, seed, size, key, n_timepoints)
    from clinic.story_v2.writer import generate_patient as generate_patient_v2

    clinic_size = SIZES[size]
    return generate_patient_v2(
        out,
        number,
        seed,
        clinic_size.geometry,
        clinic_size.slide_px,
        key,
        n_timepoints,
        story_variant(variant),
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
