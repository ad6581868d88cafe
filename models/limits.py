"""Reading limits: how much of an input the science reads before it refuses the input.

Every reader that takes a file from outside (DICOM folders and DICOMweb studies, whole-slide
images) checks the input's declared size against these limits *before* it decodes pixel data,
and refuses what is larger with :class:`~models.exceptions.LimitExceededError`, whose message
names the limit and the value. A worker dead-letters that error like any unreadable input.

The defaults are documented here, once; the readers take a :class:`ReadLimits` keyword argument
(``limits=``) and fall back on ``ReadLimits()``. The service maps its settings onto one instance.

=============================  ===================  =============================================
field                          default              what it bounds
=============================  ===================  =============================================
``dicom_max_files``            20,000               DICOM files in one folder / study
``dicom_max_frames``           4,096                frames of one instance (Number of Frames)
``dicom_max_matrix``           8,192                Rows or Columns of one instance
``dicom_max_series_bytes``     2 GiB                decoded pixel bytes of one series
``dicom_max_study_bytes``      8 GiB                decoded pixel bytes of a folder / study
``slide_max_pixels``           40 gigapixels        width x height of a slide's level 0
``slide_max_read_pixels``      1 gigapixel          pixels of the pyramid level read to make the
                                                    tissue-mask thumbnail (read in bands)
``slide_max_tiles``            8,192                tiles read from one slide: the most
                                                    tissue-rich are kept past it (1.6 GB of
                                                    256-px RGB tiles), not a refusal
``slide_min_mpp``              0.1 µm/px            smallest credible resolution (a 100x scan is
                                                    0.1; anything finer is a broken header)
``slide_max_mpp``              10 µm/px             coarsest credible resolution (a 1x scan)
``task_time_limit_s``          600 s                one event's CPU work in the worker's process
                                                    pool (``streams.pool.CpuPool``)
=============================  ===================  =============================================

Decoded bytes of an instance are ``Rows x Columns x frames x Samples per Pixel x
ceil(Bits Allocated / 8)``, what pydicom allocates for its pixel array (1-bit SEG frames are
unpacked to one byte per pixel). A clinical CT series is 512 x 512 x 2 bytes per slice (0.5 MiB;
1,000 thin slices are 0.5 GiB); 2 GiB leaves room for ultra-high-resolution photon-counting
series (1,024 x 1,024 x 1,000 slices). A 40x whole-slide scan of a full 25 x 75 mm slide is about
100,000 x 300,000 = 3 x 10^10 pixels. Read at 0.5 µm/px in 256-px tiles (128 µm), a 1 x 15 mm
needle core is about 900 tiles, a 10 x 10 mm resection about 6,100, the virtual clinic's largest
slides (8,192 px) at most 1,024.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

GIB = 1 << 30


@dataclass(frozen=True)
class ReadLimits:
    """How much of an input is read before it is refused (see the module's table).

    Parameters
    ----------
    dicom_max_files
        Most DICOM files in one folder or study.
    dicom_max_frames
        Most frames of one DICOM instance.
    dicom_max_matrix
        Most Rows or Columns of one DICOM instance.
    dicom_max_series_bytes
        Most decoded pixel bytes of one series.
    dicom_max_study_bytes
        Most decoded pixel bytes of one folder or study (all its series together).
    slide_max_pixels
        Most pixels (width x height) of a slide's full-resolution level.
    slide_max_read_pixels
        Most pixels of the pyramid level read, in bands, to make the tissue-mask thumbnail; a
        slide whose smallest adequate level is larger (no pyramid) is refused.
    slide_max_tiles
        Most tiles read from one slide; past it the most tissue-rich are kept (not a refusal).
    slide_min_mpp, slide_max_mpp
        Range of credible slide resolutions, in µm per pixel.
    task_time_limit_s
        Longest one event's work may run in the worker's process pool, in seconds.
    """

    dicom_max_files: int = 20_000
    dicom_max_frames: int = 4_096
    dicom_max_matrix: int = 8_192
    dicom_max_series_bytes: int = 2 * GIB
    dicom_max_study_bytes: int = 8 * GIB
    slide_max_pixels: int = 40_000_000_000
    slide_max_read_pixels: int = GIB
    slide_max_tiles: int = 8_192
    slide_min_mpp: float = 0.1
    slide_max_mpp: float = 10.0
    task_time_limit_s: float = 600.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"ReadLimits.{f.name} must be a positive number, got {value!r}")
        if self.slide_min_mpp >= self.slide_max_mpp:
            raise ValueError(
                f"ReadLimits: slide_min_mpp {self.slide_min_mpp} must be below "
                f"slide_max_mpp {self.slide_max_mpp}"
            )


DEFAULT_LIMITS = ReadLimits()
"""The defaults of :class:`ReadLimits`."""


def human_bytes(n: float) -> str:
    """``1536 -> '1.5 KiB'``: sizes in messages."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


__all__ = ["DEFAULT_LIMITS", "GIB", "ReadLimits", "human_bytes"]
