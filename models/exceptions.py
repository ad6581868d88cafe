"""Errors the science raises, by how a caller must route them (see :mod:`schemas.errors`).

- :class:`UnreadableInputError`: a file or series that cannot be read or is not what it claims
  (corrupt, truncated, wrong modality, missing slices). Permanent: a worker dead-letters the
  event with the message, which names the file or series and the problem.
- :class:`InsufficientDataError`: readable, but not enough to compute a result (for example a
  slide with almost no tissue, a lesion mask that is empty). Permanent, reported as such.
- :class:`LesionError`: one lesion of an annotation (a segment of a DICOM SEG, an ROI of an
  RTSTRUCT) cannot be used: empty, overlapping another, on another frame of reference, outside
  the image. It names the segment or ROI; a study reader records it per lesion and measures the
  rest (:class:`NoLesionMeasuredError` when nothing is left).
- :class:`LimitExceededError` (an :class:`UnreadableInputError`): the input is larger or
  slower than a configured reading limit allows (pixel count, decoded bytes, file count, frames,
  resolution range, time; :mod:`models.limits`). Refused before the work is done; the message
  names the limit and the value. Permanent: dead-lettered.
- :class:`UnsuitableInputError`: readable, but not what the model was made for (a slide stained
  by immunohistochemistry where H&E is expected). Permanent: dead-lettered with the reason.
- :class:`ModelError`: a model file that is missing, has the wrong hash or version.
- :class:`DeclarationError`: an evaluation declaration that breaks its format.
- :class:`ProtocolError`: an evaluation the protocol forbids (see ``docs/evaluation``).
- :class:`DeviceError`: a torch device asked for that this machine does not have (``cuda``
  without a GPU torch can use) or cannot be named.

Transient failures (a DICOMweb server briefly down) are left as the library's own ``OSError``
and friends so a worker can retry them.
"""

from __future__ import annotations

from schemas.errors import DeadLetterError, IrtmonError, RefusedError


class UnreadableInputError(DeadLetterError, ValueError):
    """An input file or series cannot be read or is not what it claims to be."""


class InsufficientDataError(DeadLetterError, ValueError):
    """The input is readable but does not hold enough to compute a result."""


class LimitExceededError(UnreadableInputError):
    """The input exceeds a configured reading limit; the message names the limit and the value."""


class UnsuitableInputError(DeadLetterError, ValueError):
    """The input is readable but outside what the model was made for (stain, domain)."""


class ModelError(DeadLetterError, RuntimeError):
    """A model cannot be loaded: missing file, wrong hash, missing or unknown version."""


class DeclarationError(RefusedError, ValueError):
    """An evaluation declaration that cannot be read or breaks the declaration format."""


class ProtocolError(RefusedError, RuntimeError):
    """An evaluation the protocol does not allow (declaration not committed before the test
    cohort, already evaluated, changed since...): refuse and say why, never proceed."""


class DeviceError(RefusedError, ValueError):
    """A torch device that is unknown or not present here; the message says what to use."""


class LesionError(UnreadableInputError):
    """One lesion (a SEG segment or an RTSTRUCT ROI) cannot be used; the message names it.

    Attributes
    ----------
    label
        The segment label or ROI name.
    number
        The segment number or ROI number (0 when unknown).
    problem
        A short code of the problem (``models.imaging.annotations.LesionProblem`` values).
    """

    def __init__(
        self, message: str, *, label: str = "", number: int = 0, problem: str = ""
    ) -> None:
        super().__init__(message)
        self.label = label
        self.number = number
        self.problem = problem


class NoLesionMeasuredError(InsufficientDataError):
    """No lesion of a study could be measured; ``failures`` says why for each one."""

    def __init__(self, message: str, failures: tuple[object, ...] = ()) -> None:
        super().__init__(message)
        self.failures = failures


__all__ = [
    "DeclarationError",
    "InsufficientDataError",
    "IrtmonError",
    "LesionError",
    "LimitExceededError",
    "ModelError",
    "NoLesionMeasuredError",
    "ProtocolError",
    "UnreadableInputError",
    "UnsuitableInputError",
]
