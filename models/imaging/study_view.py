"""A study as a person looks at it: its preferred image series in HU with the lesion labels.

The monitoring app's Images page draws this; it reads with the same readers and checks as the
workers (:func:`models.imaging.series.index_folder`, :func:`read_series`, the PCCT series
finder and :func:`models.imaging.lesion.read_lesion`), so a file the workers refuse is refused
here too, with the same message.

Lesion labels, by priority: the virtual clinic's ``labels.npz`` beside the series (array
``labels``: slices x rows x cols, 0 background, ``n`` lesion ``n``), when its shape matches; else
the lesion reference (a SEG or RTSTRUCT path) or a ``SEG.dcm`` in the study folder.

Every lesion of given annotations (``annotations``: irtmon's own lesion SEG, or the study's SEG
or RTSTRUCT) is read too, each as an :class:`Outline` with what the annotation says of it
(segment or ROI number, the SOP Instance UID it came from, and its tracking identifier when the
annotation carries one), so a viewer can name each outline by its tracked lesion.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.exceptions import UnreadableInputError
from models.imaging.annotations import read_lesions
from models.imaging.lesion import read_lesion
from models.imaging.pcct import find_pcct_series
from models.imaging.series import CtSeries, SeriesIndex, index_folder, read_series

__all__ = ["Outline", "StudyView", "preferred_series", "read_study"]


@dataclass(frozen=True)
class Outline:
    """One lesion of an annotation on the viewed series' grid."""

    mask: np.ndarray = field(repr=False)
    label: str
    number: int
    """Segment or ROI number in its annotation."""
    reference_uid: str
    """SOP Instance UID of the SEG or RTSTRUCT it was read from."""
    tracking_id: str = ""
    tracking_uid: str = ""
    source: str = ""
    """The annotation's file name."""


@dataclass(frozen=True)
class StudyView:
    """A CT volume in HU (slices x rows x cols, int16) with its lesion labels, when found, and
    the lesions of the given annotations (:class:`Outline`)."""

    volume: np.ndarray
    labels: np.ndarray | None
    series: str
    pixel_mm: float
    label_source: str
    outlines: tuple[Outline, ...] = ()
    outline_problems: tuple[str, ...] = ()
    """Why an annotation or one of its lesions could not be drawn."""


def preferred_series(index: SeriesIndex) -> str:
    """The series a reader looks at first: a conventional CT, else the virtual monoenergetic
    image nearest 70 keV, else the first image series (by UID)."""
    if not index.images:
        raise UnreadableInputError(f"no image series under {index.root}")
    pcct = find_pcct_series(index)
    if pcct.other:
        return pcct.other[0]
    kev = pcct.reference_kev(70.0)
    if kev is not None:
        return pcct.vmi[kev]
    return sorted(index.images)[0]


def _labels(
    study: Path, series: CtSeries, lesion_path: str | None
) -> tuple[np.ndarray | None, str]:
    shape = series.volume.array.shape
    npz = study / "labels.npz"
    if npz.is_file():
        with np.load(npz) as z:
            candidate = z["labels"]
        if candidate.shape == shape:
            return candidate, "labels.npz"
    reference = Path(lesion_path) if lesion_path else study / "SEG.dcm"
    if reference.is_file():
        lesion = read_lesion(
            reference, series.volume, frame_of_reference=series.frame_of_reference_uid
        )
        return lesion.mask.astype(np.uint8), str(lesion.source).upper()
    return None, "none"


def _outlines(
    series: CtSeries, annotations: Sequence[str | Path]
) -> tuple[tuple[Outline, ...], tuple[str, ...]]:
    outlines: list[Outline] = []
    problems: list[str] = []
    for path in annotations:
        try:
            found = read_lesions(path, series.volume, series.frame_of_reference_uid)
        except UnreadableInputError as err:
            problems.append(str(err))
            continue
        problems.extend(f.message for f in found.failures)
        outlines.extend(
            Outline(
                mask=lesion.mask,
                label=lesion.label,
                number=lesion.number,
                reference_uid=lesion.reference_uid,
                tracking_id=lesion.tracking_id,
                tracking_uid=lesion.tracking_uid,
                source=Path(path).name,
            )
            for lesion in found.lesions
        )
        if found.lesions:
            break  # the first annotation with lesions is the one shown
    return tuple(outlines), tuple(problems)


def read_study(
    study: str | Path, lesion_path: str | None = None, annotations: Sequence[str | Path] = ()
) -> StudyView:
    """Read the preferred series of a study folder, its lesion labels, and every lesion of
    the first of ``annotations`` that has one.

    Raises
    ------
    UnreadableInputError
        The folder holds no readable image series (the message names the file or series).
    """
    folder = Path(study)
    index = index_folder(folder)
    uid = preferred_series(index)
    series = read_series(folder, uid, index=index)
    labels, source = _labels(folder, series, lesion_path)
    outlines, problems = _outlines(series, annotations)
    volume = np.round(series.volume.array).clip(-32768, 32767).astype(np.int16)
    name = series.description or uid
    return StudyView(
        volume,
        labels,
        name,
        float(series.volume.geometry.spacing[2]),
        source,
        outlines,
        problems,
    )
