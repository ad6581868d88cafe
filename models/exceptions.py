"""Errors the science raises, by how a caller must route them.

- :class:`UnreadableInputError`: a file or series that cannot be read or is not what it claims
  (corrupt, truncated, wrong modality, missing slices). Permanent: a worker dead-letters the
  event with the message, which names the file or series and the problem.
- :class:`InsufficientDataError`: readable, but not enough to compute a result (for example a
  slide with almost no tissue, a lesion mask that is empty). Permanent, reported as such.
- :class:`LimitExceededError` (an :class:`UnreadableInputError`): the input is larger or
  slower than a configured reading limit allows (pixel count, decoded bytes, file count, frames,
  resolution range, time; :mod:`models.limits`). Refused before the work is done; the message
  names the limit and the value. Permanent: dead-lettered.
- :class:`UnsuitableInputError`: readable, but not what the model was made for (a slide stained
  by immunohistochemistry where H&E is expected). Permanent: dead-lettered with the reason.
- :class:`ModelError`: a model file that is missing, has the wrong hash or version.

Transient failures (a DICOMweb server briefly down) are left as the library's own ``OSError``
and friends so a worker can retry them.
"""

from __future__ import annotations


class IrtmonError(Exception):
    """Base of irtmon's own errors."""


class UnreadableInputError(IrtmonError, ValueError):
    """An input file or series cannot be read or is not what it claims to be."""


class InsufficientDataError(IrtmonError, ValueError):
    """The input is readable but does not hold enough to compute a result."""


class LimitExceededError(UnreadableInputError):
    """The input exceeds a configured reading limit; the message names the limit and the value."""


class UnsuitableInputError(IrtmonError, ValueError):
    """The input is readable but outside what the model was made for (stain, domain)."""


class ModelError(IrtmonError, RuntimeError):
    """A model cannot be loaded: missing file, wrong hash, missing or unknown version."""
