"""Weighted classification metrics, computed for many row-weight vectors at once.

Every function takes row-aligned ``y`` and a score or prediction, and ``weights``: ``None``
(each row once), a ``(n,)`` vector, or a ``(B, n)`` array (one weight vector per bootstrap
resample, see :mod:`models.evaluation.resampling`). It returns a float for ``None`` or a
vector, and ``B`` values for a 2-D array. A value that is undefined for a weight vector (an
AUC without a positive row, say) is ``nan``.

Positive class: ``y == 1`` (``True``); a higher score means more likely positive.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

_EPS = 1e-12


def _w(weights: ArrayLike | None, n: int) -> tuple[np.ndarray, bool]:
    """Weights as ``(B, n)`` and whether the caller gave (or implied) a single vector."""
    if weights is None:
        return np.ones((1, n)), True
    w = np.asarray(weights, dtype=float)
    if w.ndim == 1:
        if w.shape[0] != n:
            raise ValueError(f"{w.shape[0]} weights for {n} rows")
        return w[None, :], True
    if w.ndim != 2 or w.shape[1] != n:
        raise ValueError(f"weights of shape {w.shape} for {n} rows")
    return w, False


def _out(values: np.ndarray, single: bool) -> Any:
    return float(values[0]) if single else values


def _binary(y: ArrayLike) -> np.ndarray:
    yy = np.asarray(y)
    if yy.dtype != bool:
        uniq = np.unique(yy)
        if not np.isin(uniq, [0, 1]).all():
            raise ValueError(f"a binary outcome must be 0/1 or bool, got values {uniq[:5]}")
        yy = yy.astype(bool)
    return yy


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(num.shape, np.nan)
    ok = den > _EPS
    out[ok] = num[ok] / den[ok]
    return out


def _levels(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stable sort order of ``x`` and the start of each run of equal values in it."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]]) if xs.size else np.array([], int)
    return order, starts


def auc(y: ArrayLike, score: ArrayLike, weights: ArrayLike | None = None) -> Any:
    """Area under the ROC curve (Mann-Whitney; ties count one half).

    With weights: the probability that a positive row drawn with probability proportional
    to its weight scores above a negative row drawn the same way.
    """
    yy = _binary(y)
    s = np.asarray(score, dtype=float)
    w, single = _w(weights, yy.shape[0])
    if yy.size == 0:
        return _out(np.full(w.shape[0], np.nan), single)
    order, starts = _levels(s)
    ws = w[:, order]
    pos = np.add.reduceat(ws * yy[order], starts, axis=1)
    neg = np.add.reduceat(ws * ~yy[order], starts, axis=1)
    neg_below = np.cumsum(neg, axis=1) - neg
    num = np.sum(pos * (neg_below + 0.5 * neg), axis=1)
    return _out(_ratio(num, pos.sum(axis=1) * neg.sum(axis=1)), single)


def balanced_accuracy(y: ArrayLike, pred: ArrayLike, weights: ArrayLike | None = None) -> Any:
    """Mean recall over the classes present in ``y`` (any number of classes).

    A prediction of a class absent from ``y`` counts as an error of the true class.
    """
    yy = np.asarray(y)
    pp = np.asarray(pred)
    w, single = _w(weights, yy.shape[0])
    classes = np.unique(yy)
    hit = (yy == pp).astype(float)
    recalls = np.full((w.shape[0], classes.size), np.nan)
    for k, c in enumerate(classes):
        mask = (yy == c).astype(float)
        recalls[:, k] = _ratio(w @ (mask * hit), w @ mask)
    with np.errstate(all="ignore"):
        counted = np.isfinite(recalls).sum(axis=1)
        total = np.where(np.isfinite(recalls), recalls, 0.0).sum(axis=1)
    return _out(_ratio(total, counted.astype(float)), single)


def sensitivity(
    y: ArrayLike, p: ArrayLike, weights: ArrayLike | None = None, *, threshold: float = 0.5
) -> Any:
    """Share of positives with ``p >= threshold``."""
    yy = _binary(y).astype(float)
    flag = (np.asarray(p, dtype=float) >= threshold).astype(float)
    w, single = _w(weights, yy.shape[0])
    return _out(_ratio(w @ (yy * flag), w @ yy), single)


def specificity(
    y: ArrayLike, p: ArrayLike, weights: ArrayLike | None = None, *, threshold: float = 0.5
) -> Any:
    """Share of negatives with ``p < threshold``."""
    neg = (~_binary(y)).astype(float)
    quiet = (np.asarray(p, dtype=float) < threshold).astype(float)
    w, single = _w(weights, neg.shape[0])
    return _out(_ratio(w @ (neg * quiet), w @ neg), single)


def brier(y: ArrayLike, p: ArrayLike, weights: ArrayLike | None = None) -> Any:
    """Mean squared difference between probability and outcome."""
    yy = _binary(y).astype(float)
    sq = (np.asarray(p, dtype=float) - yy) ** 2
    w, single = _w(weights, yy.shape[0])
    return _out(_ratio(w @ sq, w.sum(axis=1)), single)


def ece(y: ArrayLike, p: ArrayLike, weights: ArrayLike | None = None, *, n_bins: int = 10) -> Any:
    """Expected calibration error over equal-mass bins of ``p``.

    Rows are sorted by ``p`` and cut into ``n_bins`` bins of equal total weight (a run of
    equal ``p`` stays in one bin: it goes where its middle falls). ECE is the weighted mean
    over bins of ``|observed rate - mean p|``, i.e. ``sum over bins |sum w (y - p)| / sum w``.
    One row per patient is the caller's duty (see :mod:`models.evaluation.calibration`).
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    yy = _binary(y).astype(float)
    pp = np.asarray(p, dtype=float)
    w, single = _w(weights, yy.shape[0])
    if yy.size == 0:
        return _out(np.full(w.shape[0], np.nan), single)
    order, starts = _levels(pp)
    ws = w[:, order]
    level_w = np.add.reduceat(ws, starts, axis=1)
    level_gap = np.add.reduceat(ws * (yy - pp)[order], starts, axis=1)
    total = level_w.sum(axis=1, keepdims=True)
    mid = np.cumsum(level_w, axis=1) - level_w / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        bins = np.floor(mid / total * n_bins)
    bins = np.clip(np.nan_to_num(bins), 0, n_bins - 1).astype(np.int64)
    flat = (bins + (np.arange(w.shape[0]) * n_bins)[:, None]).ravel()
    gap = np.bincount(flat, weights=level_gap.ravel(), minlength=w.shape[0] * n_bins)
    gap = np.abs(gap.reshape(w.shape[0], n_bins)).sum(axis=1)
    return _out(_ratio(gap, total[:, 0]), single)


def _logit(p: ArrayLike) -> np.ndarray:
    pp = np.clip(np.asarray(p, dtype=float), 1e-6, 1.0 - 1e-6)
    return np.log(pp / (1.0 - pp))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def recalibration(
    y: ArrayLike,
    p: ArrayLike,
    weights: ArrayLike | None = None,
    *,
    max_iter: int = 100,
    tol: float = 1e-10,
) -> tuple[Any, Any]:
    """``(intercept, slope)`` of the logistic recalibration ``logit P(y) = a + b logit(p)``,
    by maximum likelihood (Newton-Raphson, unpenalised), for every weight vector at once.

    ``b`` is the calibration slope (1 ideal; below 1: predictions too extreme). A fit that
    does not converge (complete separation in a resample) gives ``nan``.
    """
    yy = _binary(y).astype(float)
    x = _logit(p)
    w, single = _w(weights, yy.shape[0])
    a = np.zeros(w.shape[0])
    b = np.ones(w.shape[0])
    done = np.zeros(w.shape[0], dtype=bool)
    for _ in range(max_iter):
        mu = _sigmoid(a[:, None] + b[:, None] * x)
        r = w * (yy - mu)
        v = w * mu * (1.0 - mu)
        g0, g1 = r.sum(axis=1), r @ x
        h00, h01, h11 = v.sum(axis=1), v @ x, v @ (x * x)
        det = h00 * h11 - h01 * h01
        ok = det > _EPS
        da = np.where(ok, (h11 * g0 - h01 * g1) / np.where(ok, det, 1.0), 0.0)
        db = np.where(ok, (h00 * g1 - h01 * g0) / np.where(ok, det, 1.0), 0.0)
        a, b = a + np.where(done, 0.0, da), b + np.where(done, 0.0, db)
        done |= (np.abs(da) < tol) & (np.abs(db) < tol) & ok
        if done.all():
            break
    bad = ~done | (np.abs(b) > 1e3)
    a = np.where(bad, np.nan, a)
    b = np.where(bad, np.nan, b)
    return _out(a, single), _out(b, single)


def calibration_slope(y: ArrayLike, p: ArrayLike, weights: ArrayLike | None = None) -> Any:
    """The slope ``b`` of :func:`recalibration` (1 ideal)."""
    return recalibration(y, p, weights)[1]


def calibration_intercept(
    y: ArrayLike,
    p: ArrayLike,
    weights: ArrayLike | None = None,
    *,
    max_iter: int = 100,
    tol: float = 1e-10,
) -> Any:
    """Calibration-in-the-large: ``a`` in ``logit P(y) = a + logit(p)`` (slope fixed at 1;
    0 ideal; above 0: the model under-predicts the outcome on average)."""
    yy = _binary(y).astype(float)
    x = _logit(p)
    w, single = _w(weights, yy.shape[0])
    a = np.zeros(w.shape[0])
    done = np.zeros(w.shape[0], dtype=bool)
    for _ in range(max_iter):
        mu = _sigmoid(a[:, None] + x)
        g = (w * (yy - mu)).sum(axis=1)
        h = (w * mu * (1.0 - mu)).sum(axis=1)
        step = np.where(h > _EPS, g / np.where(h > _EPS, h, 1.0), 0.0)
        a = a + np.where(done, 0.0, step)
        done |= (np.abs(step) < tol) & (h > _EPS)
        if done.all():
            break
    return _out(np.where(done & (np.abs(a) < 1e3), a, np.nan), single)


def mean(values: ArrayLike, weights: ArrayLike | None = None) -> Any:
    """Weighted mean (for example a rate over patients)."""
    v = np.asarray(values, dtype=float)
    w, single = _w(weights, v.shape[0])
    return _out(_ratio(w @ v, w.sum(axis=1)), single)


def ratio_of_sums(
    numerator: ArrayLike, denominator: ArrayLike, weights: ArrayLike | None = None
) -> Any:
    """``sum w * numerator / sum w * denominator`` (events per unit of exposure)."""
    num = np.asarray(numerator, dtype=float)
    den = np.asarray(denominator, dtype=float)
    w, single = _w(weights, num.shape[0])
    return _out(_ratio(w @ num, w @ den), single)


def weighted_median(values: ArrayLike, weights: ArrayLike | None = None) -> Any:
    """The smallest value at which the cumulative weight reaches half the total (the lower
    median; with unit weights and an odd count, the middle value; with an even count, the
    mean of the two middle values, as :func:`numpy.median`)."""
    v = np.asarray(values, dtype=float)
    w, single = _w(weights, v.shape[0])
    if v.size == 0:
        return _out(np.full(w.shape[0], np.nan), single)
    order = np.argsort(v, kind="stable")
    vs = v[order]
    cw = np.cumsum(w[:, order], axis=1)
    half = cw[:, -1:] / 2.0
    lo = np.argmax(cw >= half - 1e-9, axis=1)
    hi = np.argmax(cw > half + 1e-9, axis=1)
    exact = np.isclose(cw[np.arange(w.shape[0]), lo], half[:, 0])
    med = np.where(exact, (vs[lo] + vs[hi]) / 2.0, vs[lo])
    return _out(np.where(cw[:, -1] > _EPS, med, np.nan), single)
