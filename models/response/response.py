"""The per-timepoint response model: P(non-response) from what is known at that time.

Inputs are :func:`models.response.history.response_inputs` (burden trajectory relative to
baseline and nadir, the CT virtual biopsy, the latest biopsy's signature, treatment context),
so the model never sees the future. It is an ensemble of small networks over patient-level
bootstrap samples, calibrated (beta calibration by default; Platt or isotonic on request)
on predictions made without the patient they are for: out-of-fold predictions of the
training patients (cross-fitted) by default, or a separate calibration split. The members'
spread, mapped through the same calibration, gives the interval stored with each score.

The same class fitted on a subset of inputs is a baseline (RECIST 1.1 over every target
lesion, the burden trajectory of every lesion, in field, out of field, PD-L1 TPS, baseline
pathology: :mod:`models.response.baselines`), so baselines and the full model are compared
like for like.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.exceptions import InsufficientDataError
from models.response.nets import (
    MlpConfig,
    Standardiser,
    bootstrap_patients,
    fit_mlp,
    load_checkpoint,
    load_members,
    state_to_lists,
)
from models.runtime import module_device

MODEL_NAME = "response"
WEIGHTS_FILE = "response.pt"
FORMAT = "irtmon-response/1"
PROBABILITY_FLOOR = 0.005


@dataclass(frozen=True)
class ResponseConfig:
    members: int = 7
    seed: int = 1
    interval: tuple[float, float] = (10.0, 90.0)  # member percentiles
    calibration: str = "beta"  # or "platt", "isotonic"
    calibration_folds: int = 5  # cross-fitted calibration when no calibration rows are given
    mlp: MlpConfig = field(
        default_factory=lambda: MlpConfig(hidden=16, dropout=0.1, weight_decay=1e-3)
    )


@dataclass
class Calibration:
    """A monotone map of raw to calibrated probability.

    ``beta`` (default; Kull, Silva Filho and Flach 2017): ``sigmoid(a * ln p - b * ln(1 - p)
    + c)`` with ``a, b >= 0``, fitted by logistic regression. It contains Platt scaling
    (``a == b``) and can also stretch one tail without the other: an ensemble that is
    over-confident near 0 (non-responders whose burden looks like a responder's) but not near 1.
    ``platt``: ``sigmoid(a * logit(p) + b)``, temperature scaling with a bias. Both keep the
    ranking (so the AUC) and need few calibration rows.
    ``isotonic``: isotonic regression's knots, interpolated; it needs far more rows (with a
    few dozen it becomes a staircase that ties many patients). ``identity`` leaves p as is.
    """

    method: str = "identity"
    params: list[float] = field(default_factory=list)
    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)

    def __call__(self, p: np.ndarray) -> np.ndarray:
        p = np.asarray(p, dtype=float)
        if self.method == "platt":
            a, b = self.params
            out = _sigmoid(a * _logit(p) + b)
        elif self.method == "beta":
            a, b, c = self.params
            out = _sigmoid(_beta_terms(p) @ np.array([a, b]) + c)
        elif self.method == "isotonic":
            out = np.interp(p, self.x, self.y)
        else:
            return p
        return np.clip(out, PROBABILITY_FLOOR, 1.0 - PROBABILITY_FLOOR)

    @classmethod
    def fit(cls, p: np.ndarray, y: np.ndarray, method: str = "platt") -> Calibration:
        y = np.asarray(y, dtype=float)
        if method == "isotonic":
            from sklearn.isotonic import IsotonicRegression

            iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, y)
            return cls(
                "isotonic",
                [],
                [float(v) for v in iso.X_thresholds_],
                [float(v) for v in iso.y_thresholds_],
            )
        if method not in ("platt", "beta"):
            raise ValueError(f"unknown calibration method {method!r}")
        if len(set(y.tolist())) < 2:
            return cls("identity")
        from sklearn.linear_model import LogisticRegression

        p = np.asarray(p, float)
        if method == "platt":
            lr = LogisticRegression(C=1e4).fit(_logit(p).reshape(-1, 1), y)
            return cls("platt", [float(lr.coef_[0, 0]), float(lr.intercept_[0])])
        terms = _beta_terms(p)
        lr = LogisticRegression(C=1e4).fit(terms, y)
        a, b = (float(v) for v in lr.coef_[0])
        c = float(lr.intercept_[0])
        if a < 0 or b < 0:
            # a negative slope would make the map non-monotone: drop that term (as the
            # reference implementation, betacal, does) and refit on the other
            keep = 1 if a < 0 else 0
            lr = LogisticRegression(C=1e4).fit(terms[:, [keep]], y)
            slope = max(float(lr.coef_[0, 0]), 0.0)
            a, b = (0.0, slope) if keep == 1 else (slope, 0.0)
            c = float(lr.intercept_[0])
        return cls("beta", [a, b, c])


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def _beta_terms(p: np.ndarray) -> np.ndarray:
    """``[ln p, -ln(1 - p)]`` per row: both increase with p."""
    p = np.clip(np.asarray(p, float), 1e-6, 1 - 1e-6)
    return np.column_stack([np.log(p), -np.log1p(-p)])


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


@dataclass(frozen=True)
class Prediction:
    """Calibrated P(non-response) with its interval."""

    p: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    raw: np.ndarray


class ResponseModel:
    """Ensemble + calibration over a named set of inputs."""

    def __init__(
        self,
        inputs: Sequence[str],
        standardiser: Standardiser,
        members: list[Any],
        calibration: Calibration,
        config: ResponseConfig,
    ) -> None:
        self.inputs = list(inputs)
        self.standardiser = standardiser
        self.members = members
        self.calibration = calibration
        self.config = config

    def _member_probs(self, rows: Sequence[Mapping[str, float]]) -> np.ndarray:
        import torch

        x = np.array([[r[k] for k in self.inputs] for r in rows], dtype=np.float64)
        xt = torch.as_tensor(self.standardiser.transform(x), device=module_device(self.members[0]))
        with torch.no_grad():
            return np.array([torch.sigmoid(m(xt)[:, 0]).cpu().numpy() for m in self.members])

    def predict(self, rows: Sequence[Mapping[str, float]]) -> Prediction:
        members = self._member_probs(rows)
        raw = members.mean(axis=0)
        lo, hi = np.percentile(members, self.config.interval, axis=0)
        p = self.calibration(raw)
        lower = np.minimum(self.calibration(lo), p)
        upper = np.maximum(self.calibration(hi), p)
        return Prediction(p, lower, upper, raw)


def _fit_members(
    rows: Sequence[Mapping[str, float]],
    labels: Sequence[bool],
    patients: Sequence[str],
    inputs: Sequence[str],
    config: ResponseConfig,
    device: str = "cpu",
) -> ResponseModel:
    """The uncalibrated ensemble: members on patient-level bootstrap samples of ``rows``,
    trained on ``device`` (and returned on the CPU)."""
    import torch

    y = np.asarray(labels, dtype=np.float32)
    x = np.array([[r[k] for k in inputs] for r in rows], dtype=np.float64)
    std = Standardiser.fit(x, inputs, [False] * len(inputs))
    z = std.transform(x)
    yy = y.reshape(-1, 1)
    bce = torch.nn.BCEWithLogitsLoss()
    rng = np.random.default_rng(config.seed)
    members = []
    for k in range(config.members):
        bag, oob = bootstrap_patients(patients, rng)
        model, _, _ = fit_mlp(
            z[bag],
            yy[bag],
            z[oob],
            yy[oob],
            1,
            bce,
            config.mlp,
            config.seed * 1000 + k,
            device=device,
        )
        members.append(model)
    return ResponseModel(inputs, std, members, Calibration(), config)


def cross_fitted_raw(
    rows: Sequence[Mapping[str, float]],
    labels: Sequence[bool],
    patients: Sequence[str],
    inputs: Sequence[str],
    config: ResponseConfig,
    device: str = "cpu",
) -> np.ndarray:
    """Out-of-fold raw ensemble probabilities of every row: ``config.calibration_folds``
    ensembles, each fitted on the other folds' patients (never a row of its own patient)."""
    people = sorted(set(patients))
    order = list(np.random.default_rng(config.seed + 13).permutation(people))
    folds = min(config.calibration_folds, len(people))
    raw = np.full(len(rows), np.nan)
    pats = np.asarray(patients)
    y = np.asarray(labels, dtype=float)
    for k in range(folds):
        held = np.isin(pats, order[k::folds])
        keep = ~held
        if y[keep].min() == y[keep].max():
            raise InsufficientDataError(
                f"calibration fold {k + 1} of {folds} trains on one class only; "
                "too few patients for cross-fitted calibration"
            )
        idx = np.flatnonzero(keep)
        model = _fit_members(
            [rows[i] for i in idx], y[idx], [patients[i] for i in idx], inputs, config, device
        )
        held_idx = np.flatnonzero(held)
        raw[held_idx] = model.predict([rows[i] for i in held_idx]).raw
    return raw


def fit_response(
    rows: Sequence[Mapping[str, float]],
    labels: Sequence[bool],
    patients: Sequence[str],
    inputs: Sequence[str],
    calibration_rows: Sequence[Mapping[str, float]] | None = None,
    calibration_labels: Sequence[bool] | None = None,
    config: ResponseConfig | None = None,
    *,
    device: str = "cpu",
) -> ResponseModel:
    """Fit the ensemble on ``rows`` and calibrate it (the networks train on ``device``,
    :func:`models.runtime.device`, and come back on the CPU).

    With ``calibration_rows`` (other patients' rows), the calibration is fitted on the
    ensemble's predictions for them. Without, it is cross-fitted: fitted on out-of-fold
    predictions for every training row (:func:`cross_fitted_raw`), so every patient serves
    both to fit the members and to calibrate, and no prediction used to calibrate comes from
    a member that saw its patient.
    """
    config = config or ResponseConfig()
    y = np.asarray(labels, dtype=np.float32)
    if len(rows) < 10 or y.min() == y.max():
        raise InsufficientDataError(
            f"{len(rows)} training timepoints with labels {sorted(set(y.tolist()))}: "
            "the response model needs 10+ and both classes"
        )
    model = _fit_members(rows, labels, patients, inputs, config, device)
    if calibration_rows is None:
        raw = cross_fitted_raw(rows, labels, patients, inputs, config, device)
        cal_y = np.asarray(labels, dtype=float)
    else:
        if len(calibration_rows) < 10 or calibration_labels is None:
            raise InsufficientDataError(
                f"only {len(calibration_rows)} calibration timepoints; need 10+"
            )
        raw = model.predict(calibration_rows).raw
        cal_y = np.asarray(calibration_labels, dtype=float)
    model.calibration = Calibration.fit(raw, cal_y, config.calibration)
    return model


def save_response(model: ResponseModel, path: Path, extra: dict[str, Any] | None = None) -> Path:
    import torch

    torch.save(
        {
            "format": FORMAT,
            "inputs": model.inputs,
            "standardiser": model.standardiser.to_dict(),
            "calibration": asdict(model.calibration),
            "config": {**asdict(model.config), "mlp": asdict(model.config.mlp)},
            "members": [state_to_lists(m) for m in model.members],
            "extra": extra or {},
        },
        path,
    )
    return path


def load_response(
    folder: Path | str, expected_sha256: str | None = None, *, device: str = "cpu"
) -> ResponseModel:
    """Load a verified ``response`` artefact (hash and version checked by the registry); its
    networks are read onto the CPU and run on ``device``."""
    ckpt = load_checkpoint(folder, expected_sha256, MODEL_NAME, FORMAT)
    config = ResponseConfig(
        **{**ckpt.config, "interval": tuple(ckpt.config["interval"]), "mlp": ckpt.mlp}
    )
    members = load_members(ckpt, 1, device=device)
    calibration = Calibration(**ckpt.data["calibration"])
    return ResponseModel(ckpt.data["inputs"], ckpt.standardiser, members, calibration, config)
