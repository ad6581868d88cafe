"""Rows and patients: the unit of every interval here is the patient.

Several metrics (AUC with DeLong, calibration, ECE) assume one row per patient: rows of one
patient are not independent, and pooling them weights patients by their number of scans.
:func:`one_row_per_patient` enforces it: it refuses several rows per patient unless told how
to aggregate them.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

import numpy as np
from numpy.typing import ArrayLike


class Aggregate(StrEnum):
    """How to turn a patient's several rows into one score."""

    MEAN = "mean"
    MAX = "max"
    MIN = "min"
    FIRST = "first"
    LAST = "last"


def group_codes(groups: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Integer code of each row's patient (0..G-1, in order of first appearance) and the
    patient ids in code order."""
    g = np.asarray(groups)
    if g.ndim != 1:
        raise ValueError(f"groups must be one id per row, got shape {g.shape}")
    uniq, first, codes = np.unique(g, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[codes], uniq[order]


def one_row_per_patient(
    y: ArrayLike,
    scores: ArrayLike | Sequence[ArrayLike],
    groups: ArrayLike | None,
    aggregate: Aggregate | str | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One row per patient: the outcome and the score(s) of each patient.

    Parameters
    ----------
    y
        Outcome per row; must be the same on all rows of a patient.
    scores
        One score per row (shape ``(n,)``) or several paired scores (shape ``(k, n)`` or a
        sequence of ``k`` arrays of length ``n``).
    groups
        Patient id per row; ``None`` means every row is its own patient.
    aggregate
        How to combine several rows of one patient. ``None`` (the default) refuses them:
        select one row per patient first (for example the first follow-up), or say how.

    Returns
    -------
    y, scores, patients
        Per patient, in order of first appearance; ``scores`` keeps the input's shape
        convention (``(G,)`` or ``(k, G)``).

    Raises
    ------
    ValueError
        Several rows of one patient and no ``aggregate``; an outcome that differs between
        rows of a patient; lengths that do not match.
    """
    yy = np.asarray(y)
    s = np.asarray(scores, dtype=float)
    single = s.ndim == 1
    s2 = s[None, :] if single else s
    if s2.ndim != 2 or s2.shape[1] != yy.shape[0]:
        raise ValueError(f"{yy.shape[0]} outcomes but scores of shape {s.shape}")
    if groups is None:
        return yy, s, np.arange(yy.shape[0])
    codes, patients = group_codes(groups)
    if codes.shape[0] != yy.shape[0]:
        raise ValueError(f"{yy.shape[0]} outcomes but {codes.shape[0]} patient ids")
    n_groups = len(patients)
    counts = np.bincount(codes, minlength=n_groups)
    if (counts > 1).any():
        if aggregate is None:
            first = patients[int(np.argmax(counts > 1))]
            raise ValueError(
                f"{int((counts > 1).sum())} patients have several rows (first: {first}); this "
                "metric assumes one row per patient. Select one row per patient (for example "
                "the first follow-up) or pass aggregate= one of "
                f"{', '.join(a.value for a in Aggregate)}"
            )
        aggregate = Aggregate(aggregate)
    first_row = _first_row(codes, n_groups)
    y_first = yy[first_row]
    if (yy != y_first[codes]).any():
        bad = patients[int(codes[np.argmax(yy != y_first[codes])])]
        raise ValueError(f"patient {bad} has different outcomes on different rows")
    if (counts == 1).all():
        out = np.empty((s2.shape[0], n_groups))
        out[:, codes] = s2
    else:
        out = _aggregate(s2, codes, n_groups, counts, Aggregate(aggregate))
    return y_first, (out[0] if single else out), patients


def _first_row(codes: np.ndarray, n_groups: int) -> np.ndarray:
    first = np.full(n_groups, codes.shape[0])
    np.minimum.at(first, codes, np.arange(codes.shape[0]))
    return first


def _last_row(codes: np.ndarray, n_groups: int) -> np.ndarray:
    last = np.full(n_groups, -1)
    np.maximum.at(last, codes, np.arange(codes.shape[0]))
    return last


def _aggregate(
    s: np.ndarray, codes: np.ndarray, n_groups: int, counts: np.ndarray, how: Aggregate
) -> np.ndarray:
    out = np.empty((s.shape[0], n_groups))
    for k in range(s.shape[0]):
        row = s[k]
        if how is Aggregate.MEAN:
            out[k] = np.bincount(codes, weights=row, minlength=n_groups) / counts
        elif how is Aggregate.MAX:
            out[k] = -np.inf
            np.maximum.at(out[k], codes, row)
        elif how is Aggregate.MIN:
            out[k] = np.inf
            np.minimum.at(out[k], codes, row)
        elif how is Aggregate.FIRST:
            out[k] = row[_first_row(codes, n_groups)]
        else:  # LAST
            out[k] = row[_last_row(codes, n_groups)]
    return out
