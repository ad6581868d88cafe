"""CUSUM tests for a structural break, from statsmodels (a second opinion to BOCPD).

For each signal, an OLS model ``y ~ 1`` (or ``y ~ 1 + time`` with ``trend=True``) is fitted to
the series and two classical tests are run on it:

* ``statsmodels.stats.diagnostic.breaks_cusumolsresid``: the CUSUM of OLS residuals (Ploberger
  and Kraemer 1992); its p-value is the evidence of a break anywhere in the series;
* ``statsmodels.stats.diagnostic.recursive_olsresiduals``: the recursive residuals and their
  CUSUM with its 95 per cent band (Brown, Durbin and Evans 1975), reported in ``detail``.

The break is located at the extreme of the cumulative OLS residuals (the point after which the
residuals change sign on balance); its direction is the mean after minus the mean before.
"""

from __future__ import annotations

import warnings
from typing import Any, Self

import numpy as np
from numpy.typing import ArrayLike
from statsmodels.regression.linear_model import OLS
from statsmodels.stats.diagnostic import breaks_cusumolsresid, recursive_olsresiduals

from models.changepoint.result import ChangeResult, signal_names


class Cusum:
    """CUSUM-of-residuals break test per signal.

    Parameters
    ----------
    alpha:
        Significance level: a signal has a break when its p-value is below it.
    trend:
        Fit a linear trend in time (``times`` as numbers) as the null model, not a constant.
    min_size:
        Fewest timepoints to test; fewer give no detection.
    names:
        Signal names, one per column.
    """

    def __init__(
        self,
        *,
        alpha: float = 0.05,
        trend: bool = False,
        min_size: int = 4,
        names: list[str] | tuple[str, ...] | None = None,
    ) -> None:
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        if min_size < 3:
            raise ValueError(f"min_size must be at least 3, got {min_size}")
        self.alpha = float(alpha)
        self.trend = bool(trend)
        self.min_size = int(min_size)
        self.names = names

    def fit(self, signal: ArrayLike, times: ArrayLike | None = None) -> Self:
        """Test each column of ``signal`` (rows = timepoints) for a break."""
        arr = np.asarray(signal, dtype=float)
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2:
            raise ValueError(f"signal must be 1-D or 2-D (timepoints x signals), got {arr.ndim}-D")
        if not np.all(np.isfinite(arr)):
            raise ValueError("signal must be finite (drop or impute missing timepoints first)")
        n = len(arr)
        self.times_ = list(times) if times is not None else list(range(n))
        if len(self.times_) != n:
            raise ValueError(f"{len(self.times_)} times for {n} timepoints")
        self.signal_ = arr
        self.tests_: list[dict[str, Any]] = []
        if self.trend:
            t = np.asarray([float(v) for v in self.times_])
            exog = np.column_stack([np.ones(n), (t - t.mean()) / (t.std() or 1.0)])
        else:
            exog = np.ones((n, 1))
        for j in range(arr.shape[1]):
            y = arr[:, j]
            if n < max(self.min_size, exog.shape[1] + 2) or np.ptp(y) == 0:
                self.tests_.append({"pvalue": 1.0, "stat": 0.0, "index": None, "shift": 0.0})
                continue
            res = OLS(y, exog).fit()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                stat, pvalue, _ = breaks_cusumolsresid(res.resid, ddof=exog.shape[1])
                rec = recursive_olsresiduals(res, skip=exog.shape[1])
            cum = np.cumsum(res.resid)
            k = int(np.argmax(np.abs(cum[:-1])))  # last value before the break
            index = k + 1
            shift = float(y[index:].mean() - y[:index].mean())
            self.tests_.append(
                {
                    "pvalue": float(pvalue),
                    "stat": float(stat),
                    "index": index,
                    "shift": shift,
                    "recursive_cusum": np.asarray(rec[5]).tolist(),
                    "recursive_cusum_band": np.asarray(rec[6]).tolist(),
                }
            )
        return self

    def predict(self) -> ChangeResult:
        """The break of the most significant signal, and every signal significant at alpha."""
        if not hasattr(self, "tests_"):
            raise ValueError("call fit() first")
        names = signal_names(self.names, self.signal_.shape[1])
        best = int(np.argmin([t["pvalue"] for t in self.tests_]))
        top = self.tests_[best]
        moved = tuple(
            sorted(
                (n for n, t in zip(names, self.tests_, strict=True) if t["pvalue"] < self.alpha),
                key=lambda n: self.tests_[names.index(n)]["pvalue"],
            )
        )
        index = top["index"]
        return ChangeResult(
            detector="cusum",
            detected=top["pvalue"] < self.alpha,
            index=index,
            time=self.times_[index] if index is not None else None,
            strength=1.0 - top["pvalue"],
            signals=moved,
            shifts={n: t["shift"] for n, t in zip(names, self.tests_, strict=True)},
            detail={"tests": dict(zip(names, self.tests_, strict=True))},
        )
