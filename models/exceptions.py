"""Errors the science raises, by how a caller must route them (see :mod:`schemas.errors`).

- :class:`UnreadableInputError`: a file or series that cannot be read or is not what it claims
  (corrupt, truncated, wrong modality, missing slices). Permanent: a worker dead-letters the
  event with the message, which names the file or series and the problem.
- :class:`InsufficientDataError`: readable, but not enough to compute a result (for example a
  slide with almost no tissue, a lesion mask that is empty). Permanent, reported as such.
- :class:`ModelError`: a model file that is missing, has the wrong hash or version.
- :class:`DeclarationError`: an evaluation declaration that breaks its format.
- :class:`ProtocolError`: an evaluation the protocol forbids (see ``docs/evaluation``).

Transient failures (a DICOMweb server briefly down) are left as the library's own ``OSError``
and friends so a worker can retry them.
"""

from __future__ import annotations

from schemas.errors import DeadLetterError, IrtmonError, RefusedError


class UnreadableInputError(DeadLetterError, ValueError):
    """An input file or series cannot be read or is not what it claims to be."""


class InsufficientDataError(DeadLetterError, ValueError):
    """The input is readable but does not hold enough to compute a result."""


class ModelError(DeadLetterError, RuntimeError):
    """A model cannot be loaded: missing file, wrong hash, missing or unknown version."""


class DeclarationError(RefusedError, ValueError):
    """An evaluation declaration that cannot be read or breaks the declaration format."""


class ProtocolError(RefusedError, RuntimeError):
    """An evaluation the protocol does not allow (declaration not committed before the test
    cohort, already evaluated, changed since...): refuse and say why, never proceed."""


__all__ = [
    "DeclarationError",
    "InsufficientDataError",
    "IrtmonError",
    "ModelError",
    "ProtocolError",
    "UnreadableInputError",
]
