"""Bayesian online change-point detection (Adams and MacKay 2007).

Model
-----
The series is split into segments; within a segment each signal is i.i.d. Normal with unknown
mean and variance, with a conjugate Normal-Gamma prior ``(mu0, kappa0, alpha0, beta0)``:
precision ``~ Gamma(alpha0, rate=beta0)``, mean ``| precision ~ N(mu0, 1 / (kappa0 precision))``.
The posterior predictive of the next value, given the ``r`` values of the current run, is a
Student-t with ``2 alpha_r`` degrees of freedom, location ``mu_r`` and squared scale
``beta_r (kappa_r + 1) / (alpha_r kappa_r)``. Several signals are modelled as independent given
the run length, so their predictive densities multiply (one shared change point).

Hazard
------
Constant hazard ``H = 1 / expected_run`` (a memoryless, geometric prior on segment lengths,
in timepoints).

Recursion
---------
Run length ``L_t`` = number of values in the current segment, including ``x_t``. For each new
value::

    P(L_t = 1,     x_1..t) = H     * sum_r P(L_{t-1} = r, x_1..t-1) * p(x_t | prior)
    P(L_t = r + 1, x_1..t) = (1-H) *       P(L_{t-1} = r, x_1..t-1) * p(x_t | run r)

i.e. a value that starts a new segment is scored under the prior predictive (the variant that
lets the posterior of a change at ``t`` rise above ``H``). The estimated change is the start of
the most probable current run; its strength is the posterior probability that the current
segment began there or later. ``recent_change_probability`` (``P(L_t <= window)``, a change
within the last ``window`` timepoints) is kept per update for online use.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import gammaln

from models.changepoint.result import ChangeResult, signal_names


def _student_t_logpdf(x: np.ndarray, df: np.ndarray, loc: np.ndarray, scale2: np.ndarray):
    z = (x - loc) ** 2 / (df * scale2)
    return (
        gammaln((df + 1) / 2)
        - gammaln(df / 2)
        - 0.5 * np.log(np.pi * df * scale2)
        - (df + 1) / 2 * np.log1p(z)
    )


class Bocpd:
    """Online Bayesian change-point detector with a Normal-Gamma / Student-t model.

    Parameters
    ----------
    expected_run:
        Expected segment length in timepoints; the hazard is ``1 / expected_run``.
    mu0, kappa0, alpha0, beta0:
        Normal-Gamma prior, a scalar or one value per signal. The prior variance of a value is
        about ``beta0 / (alpha0 - 1)``; the prior spread of a segment mean is that over
        ``kappa0``.
    window:
        A change within the last ``window`` timepoints counts as recent (the strength).
    threshold:
        ``detected`` when the strength reaches it and a change is estimated.
    names:
        Signal names, one per column.
    """

    def __init__(
        self,
        *,
        expected_run: float = 10.0,
        mu0: float | ArrayLike = 0.0,
        kappa0: float | ArrayLike = 0.1,
        alpha0: float | ArrayLike = 2.0,
        beta0: float | ArrayLike = 0.01,
        window: int = 2,
        threshold: float = 0.5,
        names: list[str] | tuple[str, ...] | None = None,
    ) -> None:
        if expected_run <= 1:
            raise ValueError(f"expected_run must exceed 1 timepoint, got {expected_run}")
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        if not 0 < threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        self.expected_run = float(expected_run)
        self.mu0, self.kappa0, self.alpha0, self.beta0 = mu0, kappa0, alpha0, beta0
        if np.any(np.asarray(kappa0) <= 0) or np.any(np.asarray(alpha0) <= 0):
            raise ValueError("kappa0 and alpha0 must be positive")
        if np.any(np.asarray(beta0) <= 0):
            raise ValueError("beta0 must be positive")
        self.window = int(window)
        self.threshold = float(threshold)
        self.names = names
        self.reset()

    @property
    def hazard(self) -> float:
        return 1.0 / self.expected_run

    def reset(self) -> Self:
        """Forget every value seen."""
        self.n_ = 0
        self.log_joint_: np.ndarray = np.empty(0)  # log P(L_t = r + 1, x_1..t), r = 0..t-1
        self.values_: list[np.ndarray] = []
        self.times_: list[Any] = []
        self.strength_history_: list[float] = []
        self._params: tuple[np.ndarray, ...] | None = None
        self._dim: int | None = None
        return self

    def _prior(self, d: int) -> tuple[np.ndarray, ...]:
        return tuple(
            np.broadcast_to(np.asarray(p, dtype=float), (d,)).copy()
            for p in (self.mu0, self.kappa0, self.alpha0, self.beta0)
        )

    def update(self, x: float | ArrayLike, time: Any = None) -> Self:
        """Take one timepoint (a scalar or one value per signal)."""
        xv = np.atleast_1d(np.asarray(x, dtype=float))
        if not np.all(np.isfinite(xv)):
            raise ValueError(f"values must be finite, got {xv}")
        if self._dim is None:
            self._dim = xv.size
        elif xv.size != self._dim:
            raise ValueError(f"expected {self._dim} values per timepoint, got {xv.size}")
        d = self._dim
        mu0, k0, a0, b0 = self._prior(d)
        prior_lp = float(_student_t_logpdf(xv, 2 * a0, mu0, b0 * (k0 + 1) / (a0 * k0)).sum())
        if self.n_ == 0:
            self.log_joint_ = np.array([prior_lp])
            mu, k, a, b = (p[None, :] for p in (mu0, k0, a0, b0))
        else:
            mu, k, a, b = self._params  # one row per current run length 1..n
            pred = _student_t_logpdf(xv[None, :], 2 * a, mu, b * (k + 1) / (a * k)).sum(axis=1)
            h = self.hazard
            grow = self.log_joint_ + np.log1p(-h) + pred
            new = np.logaddexp.reduce(self.log_joint_) + np.log(h) + prior_lp
            self.log_joint_ = np.concatenate([[new], grow])
            # posterior update of every run, then prepend the new run's prior
            b = b + k * (xv[None, :] - mu) ** 2 / (2 * (k + 1))
            mu = (k * mu + xv[None, :]) / (k + 1)
            k = k + 1
            a = a + 0.5
            mu = np.vstack([mu0, mu])
            k = np.vstack([k0, k])
            a = np.vstack([a0, a])
            b = np.vstack([b0, b])
        if self.n_ == 0:
            # the first value: update the prior with it (run length 1)
            b = b + k * (xv[None, :] - mu) ** 2 / (2 * (k + 1))
            mu = (k * mu + xv[None, :]) / (k + 1)
            k = k + 1
            a = a + 0.5
        else:
            # row 0 is the new run; give it its first value
            b[0] = b[0] + k[0] * (xv - mu[0]) ** 2 / (2 * (k[0] + 1))
            mu[0] = (k[0] * mu[0] + xv) / (k[0] + 1)
            k[0] = k[0] + 1
            a[0] = a[0] + 0.5
        self._params = (mu, k, a, b)
        self.n_ += 1
        self.values_.append(xv)
        self.times_.append(time)
        self.strength_history_.append(self._recent_change_probability())
        return self

    def fit(self, signal: ArrayLike, times: ArrayLike | None = None) -> Self:
        """Run over a whole series (rows = timepoints), one :meth:`update` at a time."""
        arr = np.asarray(signal, dtype=float)
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2:
            raise ValueError(f"signal must be 1-D or 2-D (timepoints x signals), got {arr.ndim}-D")
        ts = list(times) if times is not None else [None] * len(arr)
        if len(ts) != len(arr):
            raise ValueError(f"{len(ts)} times for {len(arr)} timepoints")
        self.reset()
        for row, t in zip(arr, ts, strict=True):
            self.update(row, t)
        return self

    @property
    def run_length_posterior(self) -> np.ndarray:
        """``P(L_t = r + 1 | x_1..t)`` for r = 0..t-1 (index 0: a run of one value)."""
        if self.n_ == 0:
            return np.empty(0)
        lj = self.log_joint_ - np.logaddexp.reduce(self.log_joint_)
        return np.exp(lj)

    def _recent_change_probability(self) -> float:
        post = self.run_length_posterior
        # a run shorter than the whole series means a change; recent: within `window` values
        return float(post[: min(self.window, self.n_ - 1)].sum()) if self.n_ > 1 else 0.0

    def change_probability(self, index: int) -> float:
        """Posterior probability that the current segment starts at ``index``."""
        run = self.n_ - index
        if not 1 <= run < self.n_ + 1 or index == 0:
            return 0.0
        return float(self.run_length_posterior[run - 1])

    def predict(self) -> ChangeResult:
        """The most probable change of the current run, its strength and the moved signals."""
        if self.n_ == 0:
            raise ValueError("no values seen: call update() or fit() first")
        names = signal_names(self.names, self._dim or 1)
        post = self.run_length_posterior
        # most probable change among runs shorter than the series
        index = None
        strength = 0.0
        if self.n_ > 1:
            r = int(np.argmax(post[: self.n_ - 1])) + 1  # run length of the best change
            index = self.n_ - r
            strength = float(post[:r].sum())  # P(the current segment began at index or later)
        shifts: dict[str, float] = {}
        moved: list[str] = []
        if index is not None:
            values = np.vstack(self.values_)
            before, after = values[:index], values[index:]
            _, _, a0, b0 = self._prior(values.shape[1])
            noise_sd = np.sqrt(b0 / np.maximum(a0 - 1, 0.5))
            for j, name in enumerate(names):
                shift = float(after[:, j].mean() - before[:, j].mean())
                shifts[name] = shift
                if abs(shift) > 2 * noise_sd[j]:
                    moved.append(name)
        detected = index is not None and strength >= self.threshold and bool(moved)
        return ChangeResult(
            detector="bocpd",
            detected=detected,
            index=index,
            time=self.times_[index] if index is not None else None,
            strength=strength,
            signals=tuple(moved) if detected else (),
            shifts=shifts,
            detail={
                "hazard": self.hazard,
                "run_length_posterior": post.tolist(),
                "recent_change_probability": list(self.strength_history_),
            },
        )
