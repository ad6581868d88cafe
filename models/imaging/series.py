"""Read a CT series (a folder of DICOM files, or datasets from DICOMweb) into a :class:`Volume`.

Slices are ordered by their position along the slice normal, never by file name; stored values
are rescaled to HU with Rescale Slope / Intercept; compressed transfer syntaxes are decoded by
pydicom's pixel handlers (pylibjpeg with its libjpeg, openjpeg and rle plugins; pyjpegls).
A series that is not CT, has missing or duplicate slices, inconsistent spacing or geometry, or no
pixel data is refused with :class:`~models.exceptions.UnreadableInputError` naming the series
and the problem.

Reading is bounded by :class:`~models.limits.ReadLimits` (``limits=``; its defaults otherwise):
the number of DICOM files of a folder (``dicom_max_files``), Rows and Columns
(``dicom_max_matrix``) and frames (``dicom_max_frames``) of an instance, and the decoded pixel
bytes of a series (``dicom_max_series_bytes``) and of a whole folder (``dicom_max_study_bytes``),
all taken from the headers and checked before any pixel data is decoded. A refusal is a
:class:`~models.exceptions.LimitExceededError` naming the limit and the value.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileDataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_deferred_data_element

from models.exceptions import LimitExceededError, UnreadableInputError
from models.imaging.volume import Geometry, Volume
from models.limits import DEFAULT_LIMITS, ReadLimits, human_bytes

__all__ = [
    "CtSeries",
    "SeriesIndex",
    "check_instance",
    "decoded_bytes",
    "index_folder",
    "read_series",
    "volume_from_datasets",
]

log = logging.getLogger(__name__)

_IMAGE_MODALITIES = {"CT"}
_CONTOUR_MODALITIES = {"RTSTRUCT", "SEG"}
_SPACING_TOL = 0.02  # relative tolerance on slice gaps
_ORIENT_TOL = 1e-3
AIR_HU = np.float32(-1024.0)
"""Floor of CT values: padding and out-of-field values are read as air."""
MAX_MATRIX = DEFAULT_LIMITS.dicom_max_matrix
"""Largest Rows or Columns read by default (CT is 512 to 2048; a header claiming more is refused
before its pixel data is decoded, so a forged header cannot make a decoder allocate gigabytes).
The limits, frames and bytes included, are :class:`~models.limits.ReadLimits`."""


@dataclass
class CtSeries:
    """A CT series read into a volume, with the attributes provenance needs."""

    volume: Volume
    series_uid: str
    study_uid: str
    frame_of_reference_uid: str
    sop_instance_uids: list[str]
    modality: str
    manufacturer: str
    model: str
    description: str
    kernel: str
    image_type: tuple[str, ...]
    headers: list[Dataset] = field(repr=False, default_factory=list)
    """One header per slice (no pixel data), ordered like the volume: SEG/SR writers use them."""


@dataclass
class SeriesIndex:
    """DICOM files of a folder grouped by series: images and contour objects apart."""

    root: Path
    images: dict[str, list[Path]] = field(default_factory=dict)
    contours: dict[str, list[Path]] = field(default_factory=dict)
    modality: dict[str, str] = field(default_factory=dict)
    headers: dict[str, Dataset] = field(default_factory=dict, repr=False)
    """First header (no pixel data) of each series."""
    decoded_bytes: dict[str, int] = field(default_factory=dict)
    """Decoded pixel bytes of each series, from its headers."""
    instances: dict[Path, Dataset] = field(default_factory=dict, repr=False)
    """Each file's dataset as :func:`index_folder` parsed it, its pixel data left in the file
    (deferred): :func:`read_series` reads only the pixel data, not every header a second time."""


def _is_dicom_file(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def decoded_bytes(ds: Dataset) -> int:
    """Bytes pydicom allocates to decode an instance's pixel data, from its header alone.

    ``Rows x Columns x frames x Samples per Pixel x ceil(Bits Allocated / 8)`` (1-bit frames
    are unpacked to a byte per pixel). Raises :class:`UnreadableInputError` when the header has
    no valid dimensions.
    """
    rows, cols, frames = _dimensions(ds, "")
    samples = _int(ds.get("SamplesPerPixel", 1), 1)
    bits = _int(ds.get("BitsAllocated", 16), 16)
    return rows * cols * frames * max(samples, 1) * max(1, math.ceil(bits / 8))


def _int(value: object, default: int) -> int:
    try:
        return int(value) if value not in (None, "") else default  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return default


def _dimensions(ds: Dataset, where: str) -> tuple[int, int, int]:
    rows, cols = ds.get("Rows"), ds.get("Columns")
    frames = ds.get("NumberOfFrames", 1) or 1
    try:
        rows, cols, frames = int(rows), int(cols), int(frames)
    except (TypeError, ValueError):
        raise UnreadableInputError(
            f"{where}instance {ds.get('SOPInstanceUID')} has no valid Rows/Columns/frames"
        ) from None
    if rows <= 0 or cols <= 0 or frames <= 0:
        raise UnreadableInputError(
            f"{where}instance {ds.get('SOPInstanceUID')} claims absurd dimensions "
            f"{rows} x {cols} x {frames} frames"
        )
    return rows, cols, frames


def check_instance(ds: Dataset, where: str = "", limits: ReadLimits | None = None) -> int:
    """Check one header against the limits before its pixel data is decoded; its decoded bytes.

    ``where`` prefixes messages (for example ``"series 1.2.3: "``). Headers without pixel data
    attributes (no Rows) count as 0 bytes.

    Raises
    ------
    LimitExceededError
        Rows or Columns over ``limits.dicom_max_matrix``, or frames over
        ``limits.dicom_max_frames``; the message names the limit and the value.
    UnreadableInputError
        Dimensions that are not positive integers.
    """
    limits = limits or DEFAULT_LIMITS
    if ds.get("Rows") is None and ds.get("Columns") is None:
        return 0
    rows, cols, frames = _dimensions(ds, where)
    uid = ds.get("SOPInstanceUID")
    if max(rows, cols) > limits.dicom_max_matrix:
        raise LimitExceededError(
            f"{where}instance {uid} claims {rows} x {cols} pixels, more than the limit "
            f"dicom_max_matrix of {limits.dicom_max_matrix} rows or columns"
        )
    if frames > limits.dicom_max_frames:
        raise LimitExceededError(
            f"{where}instance {uid} claims {frames} frames, more than the limit "
            f"dicom_max_frames of {limits.dicom_max_frames}"
        )
    return decoded_bytes(ds)


def _over_bytes(what: str, total: int, limit: int, name: str) -> LimitExceededError:
    return LimitExceededError(
        f"{what} holds {human_bytes(total)} ({total:,} bytes) of decoded pixel data, more than "
        f"the limit {name} of {human_bytes(limit)} ({limit:,} bytes); refused before decoding"
    )


def index_folder(folder: str | Path, *, limits: ReadLimits | None = None) -> SeriesIndex:
    """Group the DICOM files under ``folder`` (recursively) by Series Instance UID.

    Files without the DICOM preamble (a manifest, a README) are skipped; a file with the
    preamble that cannot be parsed is refused. Only headers are read (values over
    ``_DEFER_BYTES``, the pixel data, stay in the file until :func:`read_series` needs them);
    the folder's file count, each instance's size and the decoded bytes of the whole folder
    are checked against ``limits`` (default :class:`~models.limits.ReadLimits`).

    Raises
    ------
    UnreadableInputError
        The folder does not exist, holds no DICOM file, or holds a corrupt one.
    LimitExceededError
        More than ``dicom_max_files`` DICOM files, an instance past ``dicom_max_matrix`` or
        ``dicom_max_frames``, or more than ``dicom_max_study_bytes`` of decoded pixel data.
    """
    limits = limits or DEFAULT_LIMITS
    root = Path(folder)
    if not root.is_dir():
        raise UnreadableInputError(f"DICOM folder {root} does not exist or is not a folder")
    index = SeriesIndex(root=root)
    n_files = total = 0
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if not _is_dicom_file(path):
            continue
        n_files += 1
        if n_files > limits.dicom_max_files:
            raise LimitExceededError(
                f"DICOM folder {root} holds more than {limits.dicom_max_files:,} DICOM files "
                f"(limit dicom_max_files); refused before reading them"
            )
        try:
            ds = pydicom.dcmread(path, defer_size=_DEFER_BYTES)
        except (InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError) as err:
            raise UnreadableInputError(f"corrupt DICOM file {path}: {err}") from err
        uid = str(ds.get("SeriesInstanceUID", ""))
        if not uid:
            raise UnreadableInputError(f"DICOM file {path} has no Series Instance UID")
        modality = str(ds.get("Modality", ""))
        target = index.contours if modality in _CONTOUR_MODALITIES else index.images
        target.setdefault(uid, []).append(path)
        index.modality.setdefault(uid, modality)
        index.headers.setdefault(uid, ds)
        index.instances[path] = ds
        size = check_instance(ds, f"series {uid} ({path}): ", limits)
        index.decoded_bytes[uid] = index.decoded_bytes.get(uid, 0) + size
        total += size
        if total > limits.dicom_max_study_bytes:
            raise _over_bytes(
                f"DICOM folder {root}", total, limits.dicom_max_study_bytes, "dicom_max_study_bytes"
            )
    if not index.images and not index.contours:
        raise UnreadableInputError(f"no DICOM files under {root}")
    return index


def read_series(
    folder: str | Path,
    series_uid: str | None = None,
    index: SeriesIndex | None = None,
    *,
    limits: ReadLimits | None = None,
) -> CtSeries:
    """Read one CT series of ``folder`` into a volume in HU.

    Parameters
    ----------
    folder
        Folder holding the series (other series, RTSTRUCT and SEG files may sit beside it).
    series_uid
        Which series; may be left out when the folder holds exactly one image series.
    index
        A :func:`index_folder` result to reuse.
    limits
        Reading limits (default :class:`~models.limits.ReadLimits`).

    Raises
    ------
    UnreadableInputError
        Naming the series and the problem (see :func:`volume_from_datasets`).
    LimitExceededError
        The series (or its folder) is past a reading limit; checked on the headers before any
        pixel data is read.
    """
    limits = limits or DEFAULT_LIMITS
    index = index or index_folder(folder, limits=limits)
    if series_uid is None:
        if len(index.images) != 1:
            found = ", ".join(f"{u} ({index.modality[u]})" for u in index.images) or "none"
            raise UnreadableInputError(
                f"{index.root} holds {len(index.images)} image series; name one (found: {found})"
            )
        series_uid = next(iter(index.images))
    if series_uid not in index.images:
        raise UnreadableInputError(f"series {series_uid} is not in {index.root}")
    n = len(index.images[series_uid])
    if n > limits.dicom_max_files:
        raise LimitExceededError(
            f"series {series_uid} has {n:,} files, more than the limit dicom_max_files of "
            f"{limits.dicom_max_files:,}"
        )
    size = index.decoded_bytes.get(series_uid, 0)
    if size > limits.dicom_max_series_bytes:
        raise _over_bytes(
            f"series {series_uid}", size, limits.dicom_max_series_bytes, "dicom_max_series_bytes"
        )
    datasets = []
    for path in index.images[series_uid]:
        try:
            indexed = index.instances.get(path)
            datasets.append(
                pydicom.dcmread(path) if indexed is None else _with_pixel_data(indexed, path)
            )
        except (InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError) as err:
            raise UnreadableInputError(
                f"series {series_uid}: corrupt DICOM file {path}: {err}"
            ) from err
    return volume_from_datasets(datasets, source=str(index.root), limits=limits)


_DEFER_BYTES = 4096
"""Values longer than this stay in the file when a folder is indexed (in practice only the
pixel data), so indexing reads headers only and reading a series parses nothing twice."""


def _with_pixel_data(indexed: Dataset, path: Path) -> Dataset:
    """``indexed``'s elements with its deferred values (the pixel data) read from ``path``, as a
    new dataset: the index keeps no pixel data.

    pydicom's own deferred read (``read_deferred_data_element``) re-opens the file and reads the
    one value. A file modified since it was indexed (another modification time) is read again
    whole instead, as if it had not been indexed."""
    if not isinstance(indexed, FileDataset) or os.stat(path).st_mtime != indexed.timestamp:
        return pydicom.dcmread(path)
    keys = indexed.keys()  # iterating the Dataset itself would decode every element
    elements = {tag: indexed.get_item(tag, keep_deferred=True) for tag in keys}
    for tag, raw in elements.items():
        if isinstance(raw, RawDataElement) and raw.value is None and raw.length:
            elements[tag] = read_deferred_data_element(
                indexed.fileobj_type, indexed.filename, indexed.timestamp, raw
            )
    ds = Dataset(elements)
    if hasattr(indexed, "file_meta"):
        ds.file_meta = indexed.file_meta
    return ds


def _vec(ds: Dataset, keyword: str, n: int) -> np.ndarray | None:
    value = ds.get(keyword)
    if value is None or len(value) != n:
        return None
    return np.asarray([float(v) for v in value], float)


_NATIVE_LITTLE_ENDIAN = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"})
"""Implicit and Explicit VR Little Endian: pixel data stored uncompressed, as CT is written."""


def _native_pixels(ds: Dataset) -> np.ndarray | None:
    """The stored values of an uncompressed 16-bit greyscale single-frame slice, as a view on
    its Pixel Data; ``None`` for anything else (compressed, another bit depth, several frames
    or samples, a dataset without file meta), which pydicom's ``pixel_array`` decodes.

    The same values as ``pixel_array``, which for native data also takes the buffer as it is
    (its ``correct_unused_bits`` is off by default), without its decoder's per-call set-up:
    about 1 ms a slice, a fifth of a second for a 200-slice series."""
    meta = getattr(ds, "file_meta", None)
    syntax = None if meta is None else meta.get("TransferSyntaxUID")
    if syntax not in _NATIVE_LITTLE_ENDIAN:
        return None
    if ds.get("BitsAllocated") != 16 or ds.get("SamplesPerPixel", 1) != 1:
        return None
    if int(ds.get("NumberOfFrames", 1) or 1) != 1 or ds.get("PixelRepresentation") not in (0, 1):
        return None
    data = ds.get("PixelData")
    rows, cols = int(ds.Rows), int(ds.Columns)
    if not isinstance(data, bytes) or len(data) != rows * cols * 2:
        return None
    dtype = "<i2" if ds.PixelRepresentation == 1 else "<u2"
    return np.frombuffer(data, dtype=dtype).reshape(rows, cols)


def _hu(ds: Dataset, series: str, out: np.ndarray) -> None:
    """One slice in HU, written into ``out`` (no temporary slices); its header was checked
    against the limits before (``check_instance``)."""
    if "PixelData" not in ds and "FloatPixelData" not in ds:
        raise UnreadableInputError(
            f"series {series}: instance {ds.get('SOPInstanceUID')} has no pixel data"
        )
    try:
        stored = _native_pixels(ds)
        if stored is None:
            stored = ds.pixel_array
    except (ValueError, RuntimeError, NotImplementedError, AttributeError, TypeError) as err:
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "unknown")
        raise UnreadableInputError(
            f"series {series}: pixel data of instance {ds.get('SOPInstanceUID')} cannot be "
            f"decoded (transfer syntax {getattr(syntax, 'name', syntax)}): {err}"
        ) from err
    if stored.ndim != 2:
        raise UnreadableInputError(
            f"series {series}: instance {ds.get('SOPInstanceUID')} is multi-frame or colour "
            f"(shape {stored.shape}); only single-frame greyscale CT is read"
        )
    if stored.shape != (int(ds.Rows), int(ds.Columns)):
        raise UnreadableInputError(
            f"series {series}: instance {ds.get('SOPInstanceUID')} decodes to {stored.shape}, "
            f"not the {ds.Rows} x {ds.Columns} its header declares"
        )
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    np.multiply(stored, np.float32(slope), out=out, dtype=np.float32, casting="unsafe")
    out += np.float32(intercept)
    rtype = str(ds.get("RescaleType", "HU") or "HU").upper()
    if rtype in ("HU", "US"):
        # outside the reconstruction field of view (Pixel Padding Value, or the artefacts of
        # lossy compression around it) lies below air: read it as air
        padding = ds.get("PixelPaddingValue")
        if padding is not None:
            out[stored == padding] = AIR_HU
        np.maximum(out, AIR_HU, out=out)


def volume_from_datasets(
    datasets: Sequence[Dataset], source: str = "", *, limits: ReadLimits | None = None
) -> CtSeries:
    """Assemble the slices of one CT series into a :class:`CtSeries`.

    Parameters
    ----------
    datasets
        The slice datasets, in any order, pixel data included (not yet decoded).
    source
        Where they came from (a folder or URL), for messages.
    limits
        Reading limits (default :class:`~models.limits.ReadLimits`), checked on the headers
        before any pixel data is decoded.

    Raises
    ------
    UnreadableInputError
        Empty, mixed series, not CT, missing geometry, inconsistent orientation or size,
        duplicate slices, missing slices, irregular spacing, or undecodable pixel data.
    LimitExceededError
        More than ``dicom_max_files`` instances, an instance past ``dicom_max_matrix`` or
        ``dicom_max_frames``, or more than ``dicom_max_series_bytes`` of decoded pixel data.
    """
    limits = limits or DEFAULT_LIMITS
    if not datasets:
        raise UnreadableInputError(f"no DICOM instances in {source or 'the request'}")
    uids = {str(ds.get("SeriesInstanceUID", "")) for ds in datasets}
    series = next(iter(uids)) if len(uids) == 1 else f"{sorted(uids)} from {source}"
    where = f"{series}" + (f" ({source})" if source else "")
    if len(uids) != 1:
        raise UnreadableInputError(f"instances of several series mixed: {where}")
    modalities = {str(ds.get("Modality", "")) for ds in datasets}
    if not modalities <= _IMAGE_MODALITIES:
        raise UnreadableInputError(
            f"series {where} is not CT (Modality {', '.join(sorted(modalities)) or 'missing'})"
        )
    first = datasets[0]
    orient = _vec(first, "ImageOrientationPatient", 6)
    spacing = _vec(first, "PixelSpacing", 2)
    if orient is None or spacing is None:
        raise UnreadableInputError(
            f"series {where}: missing Image Orientation (Patient) or Pixel Spacing"
        )
    row_dir, col_dir = orient[:3], orient[3:]
    normal = np.cross(row_dir, col_dir)
    size = (first.get("Rows"), first.get("Columns"))
    positions = []
    for ds in datasets:
        pos = _vec(ds, "ImagePositionPatient", 3)
        o = _vec(ds, "ImageOrientationPatient", 6)
        s = _vec(ds, "PixelSpacing", 2)
        if pos is None:
            raise UnreadableInputError(
                f"series {where}: instance {ds.get('SOPInstanceUID')} "
                "has no Image Position (Patient)"
            )
        if o is None or not np.allclose(o, orient, atol=_ORIENT_TOL):
            raise UnreadableInputError(f"series {where}: slices have different orientations")
        if s is None or not np.allclose(s, spacing, rtol=1e-3):
            raise UnreadableInputError(f"series {where}: slices have different pixel spacings")
        if (ds.get("Rows"), ds.get("Columns")) != size:
            raise UnreadableInputError(f"series {where}: slices have different sizes")
        positions.append(float(np.dot(pos, normal)))
    order = np.argsort(positions, kind="stable")
    z = np.asarray(positions)[order]
    datasets = [datasets[i] for i in order]
    if len(datasets) > 1:
        gaps = np.diff(z)
        if np.any(gaps < 1e-3):
            k = int(np.argmin(gaps))
            raise UnreadableInputError(
                f"series {where}: duplicate slices at position {z[k]:.2f} mm "
                f"(instances {datasets[k].get('SOPInstanceUID')} and "
                f"{datasets[k + 1].get('SOPInstanceUID')})"
            )
        step = float(np.median(gaps))
        ratio = gaps / step
        if np.any(np.abs(ratio - np.round(ratio)) > _SPACING_TOL) or np.any(ratio < 0.5):
            raise UnreadableInputError(
                f"series {where}: inconsistent slice spacing "
                f"(gaps {np.unique(np.round(gaps, 3)).tolist()} mm)"
            )
        if np.any(np.round(ratio) > 1):
            missing = int(np.sum(np.round(ratio) - 1))
            k = int(np.argmax(ratio))
            raise UnreadableInputError(
                f"series {where}: {missing} missing slice(s) (gap of {gaps[k]:.2f} mm after "
                f"position {z[k]:.2f} mm; slice spacing {step:.2f} mm)"
            )
    else:
        step = float(first.get("SpacingBetweenSlices", 0) or first.get("SliceThickness", 0) or 1.0)
    if len(datasets) > limits.dicom_max_files:
        raise LimitExceededError(
            f"series {where} has {len(datasets):,} instances, more than the limit "
            f"dicom_max_files of {limits.dicom_max_files:,}"
        )
    total = 0
    for ds in datasets:
        if ds.get("Rows") is None:
            raise UnreadableInputError(
                f"series {where}: instance {ds.get('SOPInstanceUID')} has no valid Rows/Columns"
            )
        total += check_instance(ds, f"series {where}: ", limits)
        if total > limits.dicom_max_series_bytes:
            raise _over_bytes(
                f"series {where}", total, limits.dicom_max_series_bytes, "dicom_max_series_bytes"
            )
    array = np.empty((len(datasets), int(size[0]), int(size[1])), dtype=np.float32)
    for k, ds in enumerate(datasets):
        _hu(ds, series, array[k])
    origin = _vec(datasets[0], "ImagePositionPatient", 3)
    geometry = Geometry(
        origin=tuple(float(v) for v in origin),  # type: ignore[union-attr]
        row_direction=tuple(float(v) for v in row_dir),
        column_direction=tuple(float(v) for v in col_dir),
        normal=tuple(float(v) for v in normal),
        spacing=(step, float(spacing[0]), float(spacing[1])),
        shape=tuple(int(v) for v in array.shape),  # type: ignore[arg-type]
    )
    unit = "HU"
    rtype = str(first.get("RescaleType", "") or "")
    if rtype and rtype.upper() not in ("HU", "US"):
        unit = rtype
    headers = [_header(ds) for ds in datasets]
    return CtSeries(
        volume=Volume(array, geometry, unit=unit),
        series_uid=series,
        study_uid=str(first.get("StudyInstanceUID", "")),
        frame_of_reference_uid=str(first.get("FrameOfReferenceUID", "")),
        sop_instance_uids=[str(ds.get("SOPInstanceUID", "")) for ds in datasets],
        modality=str(first.get("Modality", "")),
        manufacturer=str(first.get("Manufacturer", "") or ""),
        model=str(first.get("ManufacturerModelName", "") or ""),
        description=str(first.get("SeriesDescription", "") or ""),
        kernel=_kernel(first),
        image_type=tuple(str(v) for v in (first.get("ImageType") or ())),
        headers=headers,
    )


def _kernel(ds: Dataset) -> str:
    value = ds.get("ConvolutionKernel", "")
    if isinstance(value, str):
        return value
    return "\\".join(str(v) for v in value) if value else ""


_PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)


def _header(ds: Dataset) -> Dataset:
    """A copy of ``ds`` without its pixel data: enough for SEG and SR source references.

    The elements are taken as stored (``get_item``), not decoded on the way: iterating the
    dataset decoded every element of every slice, a sixth of a full-size cohort's CPU."""
    keys = ds.keys()  # iterating the Dataset itself would decode every element
    copy = Dataset({tag: ds.get_item(tag) for tag in keys if tag not in _PIXEL_TAGS})
    if hasattr(ds, "file_meta"):
        copy.file_meta = ds.file_meta
    return copy
