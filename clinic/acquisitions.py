"""What the clinic acquires of a virtual patient, written the same way by both stories.

A biopsy (:func:`write_biopsy`): its slide, its ``biopsy.acquired`` event and its manifest row.
A CT or PCCT study per timepoint: the study's DICOM identity (:func:`study_info`), its series
folders (:func:`open_series`), each rendered slice written to every series with its own noise
(:func:`write_slice`), the ``imaging.acquired`` event (:func:`study_event`), the manifest rows
(:func:`timepoint_row`, :func:`series_rows`, :func:`file_rows`) and the part of the
timepoint's truth that both stories share (:func:`timepoint_truth`). What a story draws,
annotates and measures stays in :mod:`clinic.cohort` (v1) and :mod:`clinic.story_v2.writer` (v2).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from clinic.ct import SeriesSpec, ct_slice, slice_uid
from clinic.dicomio import StudyInfo, uid
from clinic.events import BIOPSY_SITE, biopsy_event, imaging_event
from clinic.pcct import IODINE_SLOPE, PCCT_MANUFACTURER, PCCT_MODEL, pcct_series
from clinic.phantom import (
    CONVENTIONAL_KEV,
    Geometry,
    SliceComponents,
    add_noise,
    hounsfield,
    noise_hu,
)
from clinic.slides import SlideTruth, write_biopsy_slide
from clinic.story import Biopsy, Timepoint
from clinic.story_v2.patient import BiopsyV2
from schemas.enums import ImmunePhenotype, Modality
from schemas.events import BiopsyAcquired, ImagingAcquired, LesionReference

SeriesFolders = dict[str, tuple[SeriesSpec, float | None, Path]]
"""Series Instance UID -> (spec, keV or None, folder), in the order the series are written."""


def rng(seed: int, *parts: int) -> np.random.Generator:
    """The generator of one draw of a cohort: ``seed`` and the parts that name the draw."""
    return np.random.default_rng([seed, *parts])


def write_biopsy(
    out_dir: Path,
    psn: str,
    biopsy: Biopsy | BiopsyV2,
    timepoints: Sequence[Timepoint],
    phenotype: ImmunePhenotype,
    *,
    seed: int,
    number: int,
    slide_px: int,
    site: str = BIOPSY_SITE,
) -> tuple[SlideTruth, BiopsyAcquired, dict[str, object]]:
    """Write a biopsy's slide (``patients/<psn>/biopsy<i>/``) showing ``phenotype``.

    Returns the slide's truth, the ``biopsy.acquired`` event and the manifest row's own columns
    (the patient's columns are the caller's); the row's timepoint is the number of scans before.
    """
    path, truth = write_biopsy_slide(
        out_dir / "patients" / psn / f"biopsy{biopsy.index}",
        rng(seed, number, 3, biopsy.index),
        phenotype,
        biopsy.til_intratumoral_per_mm2,
        biopsy.til_stromal_per_mm2,
        slide_px,
    )
    event = biopsy_event(
        seed,
        psn,
        biopsy.index,
        biopsy.at,
        path.resolve(),
        biopsy.pd_l1_tps,
        truth.til_intratumoral_per_mm2,
        site=site,
    )
    row = {
        "timepoint": sum(tp.days < biopsy.days for tp in timepoints),
        "timepoint_label": f"biopsy{biopsy.index}",
        "days_from_rt_start": biopsy.days,
        "acquired_at": biopsy.at.isoformat(),
        "modality": "WSI",
        "series_kind": "he_slide",
        "path": str(path.relative_to(out_dir)),
        "til_density_per_mm2": truth.til_intratumoral_per_mm2,
    }
    return truth, event, row


def modality(tp: Timepoint) -> Modality:
    """The modality of the study at ``tp``."""
    return Modality.PCCT if tp.pcct else Modality.CT


def study_info(seed: int, psn: str, tp: Timepoint, *, sex: str, birth_year: int) -> StudyInfo:
    """Patient, study and equipment attributes of the study at ``tp``."""
    return StudyInfo(
        patient_id=psn,
        patient_sex=sex,
        patient_birth_date=f"{birth_year}0101",
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


def open_series(folder: Path, seed: int, tp: Timepoint, study: StudyInfo) -> SeriesFolders:
    """The study's series and their folders (created): ``CT``, or the PCCT's
    ``VMI_<keV>keV`` images and ``IODINE`` map."""
    if tp.pcct:
        specs = [(spec, kev) for kev, spec in pcct_series(seed, study.study_uid, study.acquired)]
    else:
        specs = [(SeriesSpec(uid(seed, study.study_uid, "ct"), 2, "Thorax 3.0 Br40 CE"), None)]
    series: SeriesFolders = {}
    for spec, kev in specs:
        name = "CT" if not tp.pcct else (f"VMI_{kev:g}keV" if kev is not None else "IODINE")
        (folder / name).mkdir(parents=True, exist_ok=True)
        series[spec.series_uid] = (spec, kev, folder / name)
    return series


def write_slice(
    series: SeriesFolders,
    comps: SliceComponents,
    study: StudyInfo,
    geometry: Geometry,
    tp: Timepoint,
    k: int,
    *,
    seed: int,
    number: int,
) -> Dataset:
    """Write slice ``k`` of every series (each with its own noise draw) from the same anatomy.

    Returns the first series' dataset without its pixel data (the header SEGs and RTSTRUCTs
    reference).
    """
    written = []
    for n, (series_uid, (spec, kev, sfolder)) in enumerate(series.items()):
        noise = rng(seed, number, 2, tp.index, n, k)
        if tp.pcct and kev is None:
            image = np.clip(add_noise(comps.iodine, 0.25, noise), 0.0, 650.0 * IODINE_SLOPE * 100)
        else:
            energy = kev if kev is not None else CONVENTIONAL_KEV
            image = add_noise(hounsfield(comps, energy), noise_hu(energy), noise)
        ds = ct_slice(image, study, spec, geometry, k, slice_uid(series_uid, k))
        ds.save_as(sfolder / f"IM-{k + 1:04d}.dcm", enforce_file_format=True)
        written.append(ds)
    header = written[0]
    del header.PixelData
    return header


def study_event(
    seed: int,
    psn: str,
    tp: Timepoint,
    study: StudyInfo,
    series: SeriesFolders,
    folder: Path,
    lesion: LesionReference | None,
) -> ImagingAcquired:
    """The study's ``imaging.acquired`` event, 20 minutes after the scan."""
    return imaging_event(
        seed,
        psn,
        tp.index,
        modality(tp),
        study.study_uid,
        list(series),
        folder.resolve(),
        tp.at + timedelta(minutes=20),
        f"{'PCCT' if tp.pcct else 'CT'} thorax {tp.label}",
        lesion,
    )


def nearest_til(biopsy_truth: Sequence[dict[str, object]], days: float) -> float:
    """Intratumoral TIL density of the last biopsy up to ``days`` (else of the first one)."""
    before = [bt for bt in biopsy_truth if bt["days"] <= days] or biopsy_truth
    return float(before[-1]["til_intratumoral_per_mm2"])


def timepoint_row(base: dict[str, object], tp: Timepoint, study: StudyInfo) -> dict[str, object]:
    """``base`` (the patient's manifest columns) and the timepoint's own columns."""
    return {
        **base,
        "timepoint": tp.index,
        "timepoint_label": tp.label,
        "days_from_rt_start": tp.days,
        "acquired_at": tp.at.isoformat(),
        "study_uid": study.study_uid,
    }


def series_rows(
    tp_row: dict[str, object], tp: Timepoint, series: SeriesFolders, out_dir: Path
) -> list[dict[str, object]]:
    """One manifest row per image series of the study."""
    return [
        {
            **tp_row,
            "modality": str(modality(tp)),
            "series_kind": "ct" if not tp.pcct else ("vmi" if kev is not None else "iodine"),
            "energy_kev": kev,
            "path": str(sfolder.relative_to(out_dir)),
            "series_uid": series_uid,
        }
        for series_uid, (_spec, kev, sfolder) in series.items()
    ]


def file_rows(
    tp_row: dict[str, object], files: Iterable[tuple[str, Path]], out_dir: Path
) -> list[dict[str, object]]:
    """One manifest row per annotation file, given as (kind, path): ``("seg", .../SEG.dcm)``."""
    return [
        {
            **tp_row,
            "modality": kind.upper(),
            "series_kind": kind,
            "path": str(path.relative_to(out_dir)),
        }
        for kind, path in files
    ]


def timepoint_truth(
    tp: Timepoint, study: StudyInfo, folder: Path, out_dir: Path
) -> dict[str, object]:
    """The keys both stories write first in a timepoint's ground truth."""
    return {
        "timepoint": tp.index,
        "label": tp.label,
        "days_from_rt_start": tp.days,
        "acquired_at": tp.at.isoformat(),
        "modality": str(modality(tp)),
        "study_uid": study.study_uid,
        "folder": str(folder.relative_to(out_dir)),
        "pose": asdict(tp.pose),
    }
